"""Walking, changing and removing trees through directory file descriptors.

In a store others can write to, `lstat(path)` followed by `chmod(path)` is a
race a group member wins by swapping a directory for a symlink in between,
or by renaming another file to its name: root's `fix-permissions` then
chmods whatever the link points at, or gives a file of root's the mode meant
for a directory. So every tree operation here works from a directory
descriptor opened with O_NOFOLLOW|O_DIRECTORY, and every change to an entry
goes through a descriptor of that entry itself (`pin`: O_PATH|O_NOFOLLOW,
checked to be the inode the listing showed), so it happens to what was
looked at or not at all; a directory's own mode is set last, once everything
in it is done. Removal unlinks whatever it finds under a name, never
following a link, and empties a directory refilled meanwhile again. And
nothing recurses: trees come from archives and builds, whose depth is
someone else's choice (a 1000-deep archive made Python's own recursive
`os.walk` and `shutil.rmtree` fail with RecursionError), so each walk keeps
its own stack, holding descriptors for the current branch only. Linux:
changes by descriptor go through /proc/self/fd, as glibc's lchmod does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import StoreError
from ..oserrors import naming

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(top: Path | str) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk(top)` without recursion: (dirpath, dirnames, filenames), top-down.

    Pruning `dirnames` in place stops the walk going there, as with os.walk.
    Symlinks to directories are listed as files and never followed.
    """
    stack = [str(top)]
    while stack:
        dirpath = stack.pop()
        try:
            entries = list(os.scandir(dirpath))
        except OSError:
            continue
        dirnames: list[str] = []
        filenames: list[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            (dirnames if is_dir else filenames).append(entry.name)
        yield dirpath, dirnames, filenames
        stack.extend(os.path.join(dirpath, d) for d in reversed(dirnames))


def open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    """A directory descriptor; OSError (ELOOP/ENOTDIR) if the name is a symlink."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


def open_dirs(base: Path | str, parts: Iterable[str]) -> int:
    """A descriptor of the directory `base/parts...`, no component after `base` followed
    if it is a symlink (OSError ELOOP/ENOTDIR/ENOENT): what a store path names, never
    where a link a group member planted on the way leads."""
    fd = open_dir(base)
    try:
        for part in parts:
            nfd = open_dir(part, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_file_at(dir_fd: int, name: str) -> int | None:
    """A read descriptor of the regular file `name` in the open directory, or None (gone,
    a link, a FIFO or anything else): opened without following a link or blocking."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    return regular_or_close(fd)


def regular_or_close(fd: int) -> int | None:
    """`fd` if it is open on a regular file; else it is closed and None."""
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def open_file_below(root_fd: int, rel: str) -> int | None:
    """`open_file_at` of `rel` below the open directory `root_fd`, each directory on the
    way opened without following a link; None if any of it is not what it should be."""
    *dirs, name = rel.split("/")
    if not name or any(p in ("", ".", "..") for p in [*dirs, name]):
        return None
    fd = os.dup(root_fd)
    try:
        for part in dirs:
            nfd = open_dir(part, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return open_file_at(fd, name)
    except OSError:
        return None
    finally:
        os.close(fd)


def same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def pin(dir_fd: int, name: str, expect: os.stat_result | None = None) -> int | None:
    """An O_PATH descriptor of the entry `name` itself (a symlink stays the link), or None
    when it is gone or is no longer the inode `expect` (its lstat when it was listed).

    Everything done to an entry goes through such a descriptor, so it happens to the
    inode that was looked at: a member who swaps the name for a symlink, or renames
    another file (one of yours) to it, between the look and the change, gets nothing
    changed at all.
    """
    try:
        fd = os.open(name, PATH_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if expect is not None and not same_inode(os.fstat(fd), expect):
        os.close(fd)
        return None
    return fd


def proc_path(fd: int) -> str:
    """The inode open as `fd` by name: /proc/self/fd/N (as glibc's lchmod does)."""
    return f"/proc/self/fd/{fd}"


def chmod_pinned(fd: int, mode: int) -> None:
    """chmod the inode `pin` opened (a symlink's mode cannot change: EOPNOTSUPP)."""
    os.chmod(proc_path(fd), mode)


def chown_pinned(fd: int, gid: int) -> None:
    """chgrp the inode `pin` opened; a symlink's own group, never its target's."""
    os.chown(proc_path(fd), -1, gid)


def _set_at(dir_fd: int, name: str, expect: os.stat_result, mode: int | None,
            gid: int | None = None) -> bool:
    """Give the entry listed as `expect` that mode and group; False if it was replaced."""
    fd = pin(dir_fd, name, expect)
    if fd is None:
        return False
    try:
        if gid is not None:
            chown_pinned(fd, gid)
        if mode is not None and not stat.S_ISLNK(expect.st_mode):
            chmod_pinned(fd, mode)
    finally:
        os.close(fd)
    return True


def _open_listed(dir_fd: int, name: str, expect: os.stat_result | None, add: int = 0
                 ) -> int | None:
    """A readable descriptor of the directory `name` that was listed as `expect`, or None
    (gone, replaced, not a directory, or not ours to read).

    `add` owner bits (u+rx to list, u+rwx to empty) are added first where missing
    and the directory is ours: a build may leave a mode-000 directory.
    """
    try:  # most directories can be read as they are: one open, no O_PATH detour
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a link or a file: not a directory
            return None
        fd = -1  # not ours to read as it is (mode 000, ...): through `pin` below
    if fd >= 0:
        try:
            st = os.fstat(fd)
            if expect is not None and not same_inode(st, expect):
                os.close(fd)
                return None
            if add and st.st_mode & add != add and st.st_uid == os.geteuid():
                with contextlib.suppress(PermissionError):
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) | add)
        except BaseException:
            os.close(fd)
            raise
        return fd
    pinned = pin(dir_fd, name, expect)
    if pinned is None:
        return None
    fd = pinned
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            return None
        if add and st.st_mode & add != add and st.st_uid == os.geteuid():
            with contextlib.suppress(PermissionError):
                chmod_pinned(fd, stat.S_IMODE(st.st_mode) | add)
        try:
            return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        except PermissionError:
            return None
    finally:
        os.close(fd)


def _entries(fd: int) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(fd))
    except OSError:
        return []


Leave = Callable[[str, int, os.stat_result], None]


def walk_at(root_fd: int, root_st: os.stat_result | None = None, *,
            descend: Callable[[str, os.stat_result], bool] = lambda _rel, _st: True,
            leave: Leave | None = None, add: int = stat.S_IRUSR | stat.S_IXUSR,
            unopened: Callable[[int, str, str, os.stat_result], None] | None = None,
            ) -> Iterator[tuple[int, str, str, os.stat_result]]:
    """(directory fd, name, relative path, lstat) of every entry below the directory open
    as `root_fd` (which stays open), depth first, without recursion.

    A directory is entered, after it was yielded, when `descend(rel, lstat)` says
    so, through a descriptor checked to be the inode it was listed as (`pin`), so
    a directory swapped for a link or for another one is not entered; `leave(rel,
    fd, lstat)` runs once everything below a directory (the root: rel "") was
    yielded, while its descriptor is open (post-order: where a directory's own
    mode is set last); `unopened(fd, name, rel, lstat)` hears of a directory that
    could not be entered (not ours to read, or replaced). Only the current
    branch's descriptors are open.
    """
    if root_st is None:
        root_st = os.fstat(root_fd)
    frames: list[tuple[int, str, os.stat_result, Iterator[os.DirEntry[str]]]] = [
        (root_fd, "", root_st, iter(_entries(root_fd)))]
    try:
        while frames:
            fd, rel, st, entries = frames[-1]
            for entry in entries:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                yield fd, entry.name, sub, est
                if stat.S_ISDIR(est.st_mode) and descend(sub, est):
                    child = _open_listed(fd, entry.name, est, add)
                    if child is None and unopened is not None:
                        unopened(fd, entry.name, sub, est)
                    if child is not None:
                        if len(frames) >= _DEEP:
                            more_descriptors()
                        frames.append((child, sub, est, iter(_entries(child))))
                        break
            else:
                frames.pop()
                try:
                    if leave is not None:
                        leave(rel, fd, st)
                finally:
                    if frames:
                        os.close(fd)
    finally:
        for fd, *_rest in frames[1:]:
            os.close(fd)


_DEEP = 256


def more_descriptors() -> None:
    """A deep branch holds one descriptor per level: allow as many as the hard limit
    lets (a 1,000-deep tree must not fail at the usual soft limit of 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def change_modes(root: Path | str, new_mode: Callable[[str, os.stat_result], int | None],
                 *, skip: Callable[[str], bool] = lambda _rel: False,
                 group: int | None = None, changed: list[str] | None = None) -> list[str]:
    """Give each directory and file under `root` (and `root`) `new_mode(rel, lstat)`.

    `new_mode` returns None to leave an entry alone; symlinks are never passed
    to it. A directory gets its mode once everything in it is done, so a walk
    that opens directories to others (fix-permissions making a store shared)
    never works in one they can already change; a mode-000 directory is made
    readable for its owner first. `skip(rel)` prunes a directory (its own mode
    still changes). With `group`, every entry (symlinks included) gets that
    group too. Each change goes through a descriptor of the inode that was
    listed (`pin`). Returns the relative paths whose change was refused (EPERM:
    not ours); `changed` collects those changed.
    """
    root = Path(root)
    parent = open_dir(root.parent)
    try:
        top = os.stat(root.name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(top.st_mode):
            raise OSError(errno.ELOOP, "is a symlink, not followed", str(root))
        if not stat.S_ISDIR(top.st_mode):
            refused: list[str] = []
            _change(parent, root.name, "", top, new_mode, refused, group, changed)
            return refused
        root_fd = _open_listed(parent, root.name, top, stat.S_IRUSR | stat.S_IXUSR)
        if root_fd is None:
            raise OSError(errno.EACCES, "cannot open the directory", str(root))
    finally:
        os.close(parent)
    try:
        return _change_tree(root_fd, top, new_mode, skip, group, changed)
    finally:
        os.close(root_fd)


def change_modes_at(root_fd: int, new_mode: Callable[[str, os.stat_result], int | None]
                    ) -> list[str]:
    """`change_modes` of the directory open as `root_fd` (it stays open): for a tree
    whose name someone else could swap, such as an artifact being registered."""
    return _change_tree(root_fd, os.fstat(root_fd), new_mode, lambda _rel: False, None, None)


def _change_tree(root_fd: int, root_st: os.stat_result,
                 new_mode: Callable[[str, os.stat_result], int | None],
                 skip: Callable[[str], bool], group: int | None,
                 changed: list[str] | None) -> list[str]:
    refused: list[str] = []

    def leave(rel: str, fd: int, st: os.stat_result) -> None:
        _change_dir(fd, rel, st, new_mode, refused, group, changed)

    def unopened(fd: int, name: str, rel: str, st: os.stat_result) -> None:
        _change(fd, name, rel, st, new_mode, refused, group, changed)

    for fd, name, rel, st in walk_at(root_fd, root_st, descend=lambda rel, _st: not skip(rel),
                                     leave=leave, unopened=unopened):
        if not stat.S_ISDIR(st.st_mode) or skip(rel):  # a directory walked: in `leave`
            _change(fd, name, rel, st, new_mode, refused, group, changed)
    return refused


def _change(dir_fd: int, name: str, rel: str, st: os.stat_result,
            new_mode: Callable[[str, os.stat_result], int | None], refused: list[str],
            group: int | None, changed: list[str] | None) -> None:
    gid = group if group is not None and st.st_gid != group else None
    mode = None if stat.S_ISLNK(st.st_mode) else new_mode(rel, st)
    if mode == stat.S_IMODE(st.st_mode):
        mode = None
    if gid is None and mode is None:
        return
    try:
        if _set_at(dir_fd, name, st, mode, gid) and changed is not None:
            changed.append(rel or ".")
    except PermissionError:
        refused.append(rel or ".")


def _change_dir(fd: int, rel: str, st: os.stat_result,
                new_mode: Callable[[str, os.stat_result], int | None], refused: list[str],
                group: int | None, changed: list[str] | None) -> None:
    """A walked directory's own group and mode, through the descriptor it was read by."""
    now = os.fstat(fd)
    mode = new_mode(rel, st)
    try:
        done = False
        if group is not None and now.st_gid != group:
            os.fchown(fd, -1, group)
            done = True
        if mode is not None and mode != stat.S_IMODE(now.st_mode):
            os.fchmod(fd, mode)
            done = True
        if done and changed is not None:
            changed.append(rel or ".")
    except PermissionError:
        refused.append(rel or ".")


def remove_tree(path: Path | str) -> None:
    """Remove `path` and everything below it; missing is fine; no link is followed.

    Read-only directories (an artifact) are made writable on the way down,
    through their descriptors; each directory is removed once it is empty.
    """
    path = Path(path)
    try:
        parent = open_dir(path.parent)
    except FileNotFoundError:
        return
    try:
        remove_at(parent, path.name, path)
    finally:
        os.close(parent)


ROUNDS = 5  # a directory found refilled this often is someone else's doing


class Tally:
    """Allocated bytes of what `remove_at` removed below a directory, as `size_at`
    counts them (hard links once): gc measures and deletes in one pass."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: set[tuple[int, int]] = set()

    def add(self, st: os.stat_result) -> None:
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in self._seen:
                return
            self._seen.add((st.st_dev, st.st_ino))
        self.total += st.st_blocks * 512


def remove_at(parent: int, name: str, where: Path | None = None,
              tally: Tally | None = None, is_dir: bool = False) -> None:
    """`remove_tree` of the entry `name` of the open directory `parent`.

    Whatever is at a name when it is removed goes, as it is found: a file
    swapped for a directory is emptied and removed, a directory swapped for a
    link loses the link (its target is never entered), a directory someone
    refills is emptied again. Only one that keeps being refilled is an error
    (StoreError naming `where`): someone else is writing in it. `tally` adds up
    the size of everything below `name` as it goes (not `name` itself).
    `is_dir` (the caller's lstat just showed a directory) skips the unlink that
    would fail first; if it is something else by now, the next round unlinks it.
    """
    unlink_first = not is_dir
    for _ in range(ROUNDS):
        if unlink_first:
            try:
                os.unlink(name, dir_fd=parent)
                return
            except FileNotFoundError:
                return
            except (IsADirectoryError, PermissionError) as e:  # EPERM: a directory elsewhere
                if isinstance(e, PermissionError) and not _is_dir(parent, name):
                    raise
        unlink_first = True
        fd = _open_listed(parent, name, None, stat.S_IRWXU)
        if fd is None:
            if _is_dir(parent, name):
                raise PermissionError(errno.EACCES, "cannot open to empty it",
                                      str(where if where is not None else name))
            continue  # replaced by a file or a link meanwhile: look again
        try:
            _empty(fd, tally)
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=parent)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
    raise StoreError(f"{where if where is not None else name}: cannot be removed: it keeps"
                     " changing while it is emptied (another user is writing in it)")


def _empty(top: int, tally: Tally | None = None) -> None:
    """Remove everything in the directory open as `top`, depth first, without recursion;
    with a `tally`, each entry's lstat is counted before it goes."""
    # frames: (descriptor, its name in the parent frame, names left, rounds so far)
    frames: list[tuple[int, str, Iterator[str], int]] = [(top, "", iter(_names(top)), 0)]
    try:
        while frames:
            fd, name, names, rounds = frames[-1]
            for entry in names:
                looked = None
                if tally is not None:
                    try:
                        looked = os.stat(entry, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    tally.add(looked)
                if looked is None or not stat.S_ISDIR(looked.st_mode):
                    try:
                        os.unlink(entry, dir_fd=fd)
                        continue
                    except FileNotFoundError:
                        continue
                    except (IsADirectoryError, PermissionError) as e:
                        if isinstance(e, PermissionError) and not _is_dir(fd, entry):
                            raise
                child = _open_listed(fd, entry, None, stat.S_IRWXU)
                if child is None:
                    if _is_dir(fd, entry):
                        raise PermissionError(errno.EACCES, "cannot open to empty", entry)
                    continue  # replaced by a file or a link meanwhile: the next round
                if len(frames) >= _DEEP:
                    more_descriptors()
                frames.append((child, entry, iter(_names(child)), 0))
                break
            else:
                frames.pop()
                if not frames:
                    return
                parent = frames[-1][0]
                try:
                    os.rmdir(name, dir_fd=parent)
                    os.close(fd)
                except FileNotFoundError:
                    os.close(fd)
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or rounds >= ROUNDS:
                        os.close(fd)
                        raise
                    frames.append((fd, name, iter(_names(fd)), rounds + 1))  # refilled
    finally:
        for fd, *_rest in frames[1:]:
            os.close(fd)


def _names(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError:
        return []


def _is_dir(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def size(root: Path | str) -> int:
    """Allocated bytes below `root`, as `du -sB1` counts them (hard links once)."""
    try:
        fd = open_dir(root)
    except OSError:
        return 0
    try:
        return size_at(fd)
    finally:
        os.close(fd)


def size_at(root_fd: int) -> int:
    """`size` of the directory open as `root_fd` (it stays open)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for _fd, _name, _rel, st in walk_at(root_fd, add=0):
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
    return total


def make_dirs(base: Path | str, parts: list[str]) -> int:
    """A descriptor of `base/parts...`, each part made if missing and none followed if it
    is a symlink (StoreError-worthy: OSError ELOOP/ENOTDIR names the path)."""
    fd = open_dir(base)
    where = Path(base)
    try:
        for part in parts:
            where = where / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, dir_fd=fd)
            try:
                nfd = open_dir(part, dir_fd=fd)
            except OSError as e:
                raise OSError(e.errno, "not a directory but a symlink or a file",
                              str(where)) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_at(dir_fd: int, name: str, data: bytes, mode: int = 0o644,
             where: Path | None = None, sync: bool = True) -> None:
    """Write `name` in an open directory atomically (a temp name, then a rename there);
    `where` (the directory's path) names the file in an error such as a full disk.
    `sync=False` for a file that only counts once another, synced after it, exists (an
    artifact's metadata before its artifact.json): a power cut leaves it as durable as
    the artifact's own files, which `verify` checks."""
    with naming(where / name if where is not None else name):
        _write_at(dir_fd, name, data, mode, sync)


def _write_at(dir_fd: int, name: str, data: bytes, mode: int, sync: bool = True) -> None:
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise

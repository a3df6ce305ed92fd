"""Walking, changing and removing trees through directory file descriptors.

In a store others can write to, `lstat(path)` followed by `chmod(path)` is a
race a group member wins by swapping a directory for a symlink in between:
root's `fix-permissions` then chmods whatever the link points at. So every
tree operation here works from a directory descriptor opened with
O_NOFOLLOW|O_DIRECTORY, and names each entry relative to it
(`fchmodat`/`unlinkat`/`fstatat` without following links): a name swapped for
a symlink is at worst skipped, never followed. And nothing recurses: trees
come from archives and builds, whose depth is someone else's choice (a
1000-deep archive made Python's own recursive `os.walk` and `shutil.rmtree`
fail with RecursionError), so each walk keeps its own stack.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from ..oserrors import naming

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Entry = tuple[str, os.stat_result]  # a path relative to the walk's root, its lstat


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


def _chmod_at(dir_fd: int, name: str, mode: int) -> None:
    """chmod one entry of `dir_fd` without following a symlink put there meanwhile."""
    try:
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
    except NotImplementedError:  # pragma: no cover - a libc without fchmodat(NOFOLLOW)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP):  # it became a symlink: skip it
            raise


class _Dirs:
    """Open directory descriptors of a walk, each closed once its entries are all handled.

    A stack of (parent, name) pairs rather than of open descriptors: a
    directory with 5,000 subdirectories must not need 5,000 descriptors at
    once, and a deep tree keeps only its current branch open.
    """

    def __init__(self, root_fd: int):
        self.fds: dict[str, int] = {"": root_fd}
        self.pending: dict[str, int] = {"": 0}
        self.listed: set[str] = set()
        self.parent: dict[str, str] = {}
        self.done: Callable[[str, int], None] = lambda _rel, _fd: None

    def child(self, parent: str, rel: str) -> None:
        self.pending[parent] += 1
        self.parent[rel] = parent

    def open(self, rel: str, name: str) -> int | None:
        parent = self.parent[rel]
        try:
            fd = open_dir(name, dir_fd=self.fds[parent])
        except OSError:  # gone, or swapped for a symlink: not followed
            del self.parent[rel]
            self.pending[parent] -= 1
            self._close_finished(parent)
            return None
        self.fds[rel], self.pending[rel] = fd, 0
        return fd

    def finished_listing(self, rel: str) -> None:
        self.listed.add(rel)
        self._close_finished(rel)

    def _close_finished(self, rel: str) -> None:
        while rel in self.listed and self.pending.get(rel) == 0:
            fd = self.fds.pop(rel)
            self.done(rel, fd)
            os.close(fd)
            del self.pending[rel]
            if rel == "":
                return
            parent = self.parent.pop(rel)
            self.pending[parent] -= 1
            rel = parent

    def close_all(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def chmod_entry(path: Path | str, mode: int) -> None:
    """chmod `path` itself, never what a symlink swapped in under its name points at."""
    path = Path(path)
    parent = open_dir(path.parent)
    try:
        _chmod_at(parent, path.name, mode)
    finally:
        os.close(parent)


def _make_searchable(dir_fd: int, name: str, mode: int) -> None:
    """u+rwx on a directory about to be emptied; not ours to chmod (another member's,
    group-writable already) is fine: the removal itself says if access is missing."""
    if mode & stat.S_IRWXU != stat.S_IRWXU:
        with contextlib.suppress(PermissionError):
            _chmod_at(dir_fd, name, mode | stat.S_IRWXU)


def change_modes(root: Path | str, new_mode: Callable[[str, os.stat_result], int | None],
                 *, skip: Callable[[str], bool] = lambda _rel: False,
                 group: int | None = None, changed: list[str] | None = None) -> list[str]:
    """Give each directory and file under `root` (and `root`) `new_mode(rel, lstat)`.

    `new_mode` returns None to leave an entry alone; symlinks are never passed
    to it. A directory is changed before it is opened, so a mode-000
    directory a build left becomes readable; `skip(rel)` prunes a directory.
    With `group`, every entry (symlinks included) gets that group too. Returns
    the relative paths whose change was refused (EPERM: not ours); `changed`
    collects those changed.
    """
    refused: list[str] = []
    done = changed if changed is not None else []
    root = Path(root)
    parent = open_dir(root.parent)
    try:
        top = os.stat(root.name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(top.st_mode):
            raise OSError(errno.ELOOP, "is a symlink, not followed", str(root))
        _set(parent, root.name, "", top, new_mode, refused, group, done)
        if not stat.S_ISDIR(top.st_mode):
            return refused
        root_fd = open_dir(root.name, dir_fd=parent)
    finally:
        os.close(parent)
    _change_below(root_fd, new_mode, skip, group, refused, done)
    return refused


def change_modes_at(root_fd: int, new_mode: Callable[[str, os.stat_result], int | None]
                    ) -> list[str]:
    """`change_modes` of the directory open as `root_fd` (it stays open): for a tree
    whose name someone else could swap, such as an artifact being registered."""
    refused: list[str] = []
    top = os.fstat(root_fd)
    mode = new_mode("", top)
    if mode is not None and mode != stat.S_IMODE(top.st_mode):
        os.fchmod(root_fd, mode)
    _change_below(os.dup(root_fd), new_mode, lambda _rel: False, None, refused, [])
    return refused


def _below(dirs: _Dirs, descend: Callable[[str, os.stat_result], bool]
           ) -> Iterator[tuple[int, str, str, os.stat_result]]:
    """(directory fd, entry name, relative path, lstat) of every entry under `dirs`' root,
    top-down; a directory is entered after it was yielded (so it can be made searchable
    first) when `descend(rel, lstat)` says so. Closes every descriptor it opened."""
    stack: list[tuple[str, str]] = [("", "")]  # (rel, name in its parent)
    try:
        while stack:
            rel, name = stack.pop()
            fd = dirs.fds[""] if rel == "" else dirs.open(rel, name)
            if fd is None:
                continue
            for entry in _entries(fd):
                sub = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                yield fd, entry.name, sub, st
                if stat.S_ISDIR(st.st_mode) and descend(sub, st):
                    dirs.child(rel, sub)
                    stack.append((sub, entry.name))
            dirs.finished_listing(rel)
    finally:
        dirs.close_all()


def _change_below(root_fd: int, new_mode: Callable[[str, os.stat_result], int | None],
                  skip: Callable[[str], bool], group: int | None, refused: list[str],
                  done: list[str]) -> None:
    for fd, name, rel, st in _below(_Dirs(root_fd), lambda rel, _st: not skip(rel)):
        _set(fd, name, rel, st, new_mode, refused, group, done)


def _entries(fd: int) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(fd))
    except OSError:
        return []


def _set(dir_fd: int, name: str, rel: str, st: os.stat_result,
         new_mode: Callable[[str, os.stat_result], int | None], refused: list[str],
         group: int | None = None, changed: list[str] | None = None) -> None:
    try:
        if group is not None and st.st_gid != group:
            os.chown(name, -1, group, dir_fd=dir_fd, follow_symlinks=False)
            if changed is not None:
                changed.append(rel or ".")
        if stat.S_ISLNK(st.st_mode):
            return
        mode = new_mode(rel, st)
        if mode is None or mode == stat.S_IMODE(st.st_mode):
            return
        _chmod_at(dir_fd, name, mode)
        if changed is not None:
            changed.append(rel or ".")
    except PermissionError:
        refused.append(rel or ".")
    except FileNotFoundError:
        pass


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
        remove_at(parent, path.name)
    finally:
        os.close(parent)


def remove_at(parent: int, name: str) -> None:
    """`remove_tree` of the entry `name` of the open directory `parent`."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    _make_searchable(parent, name, stat.S_IMODE(st.st_mode))
    dirs = _Dirs(open_dir(name, dir_fd=parent))
    names: dict[str, str] = {}

    def rmdir(rel: str, _fd: int) -> None:
        if rel:  # the top is removed below, from `parent`
            os.rmdir(names[rel], dir_fd=dirs.fds[dirs.parent[rel]])

    dirs.done = rmdir
    for fd, entry, rel, est in _below(dirs, lambda _rel, _st: True):
        if stat.S_ISDIR(est.st_mode):
            _make_searchable(fd, entry, stat.S_IMODE(est.st_mode))
            names[rel] = entry
        else:
            os.unlink(entry, dir_fd=fd)
    os.rmdir(name, dir_fd=parent)


def size(root: Path | str) -> int:
    """Allocated bytes below `root`, as `du -sB1` counts them (hard links once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    try:
        dirs = _Dirs(open_dir(root))
    except OSError:
        return 0
    for _fd, _name, _rel, st in _below(dirs, lambda _rel, _st: True):
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
             where: Path | None = None) -> None:
    """Write `name` in an open directory atomically (a temp name, then a rename there);
    `where` (the directory's path) names the file in an error such as a full disk."""
    with naming(where / name if where is not None else name):
        _write_at(dir_fd, name, data, mode)


def _write_at(dir_fd: int, name: str, data: bytes, mode: int) -> None:
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise

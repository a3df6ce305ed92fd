"""Small filesystem helpers with crash-safe semantics.

Everything the store writes goes through `atomic_write` (temp file + fsync +
rename) so a kill at any moment leaves either the old content or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import DamagedFile, StoreError
from ..oserrors import naming
from . import fdtree
from .sharing import SPECIAL_BITS, read_only_mode


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: readers (`hdenv show`, `list`) never pay for it

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with naming(path), os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def pending_file(directory: Path, prefix: str,
                 suffix: str = ".tmp") -> Iterator[tuple[IO[bytes], Path]]:
    """A new file in `directory` for content whose final name comes later.

    The caller writes, then renames it into place; if anything fails first
    (or the caller never renames it), the file is removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: readers (`hdenv show`, `list`) never pay for it

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_json(path: Path, obj: Any, mode: int = 0o644) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    """The JSON in `path`; DamagedFile (one line, exit 1) if it is not valid JSON."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise DamagedFile(f"damaged file ({e}); `hdenv verify` checks the whole store",
                              file=str(path)) from None


def make_writable(root: Path) -> None:
    """Undo `make_read_only` so a tree can be deleted or repaired (rwx for the owner:
    a build may leave a mode-000 directory); through descriptors, see fdtree."""
    with contextlib.suppress(OSError):
        fdtree.change_modes(root, lambda _rel, st: (
            stat.S_IMODE(st.st_mode) | stat.S_IRWXU if stat.S_ISDIR(st.st_mode) else None))


def make_read_only(root: Path, *, shared: bool = False) -> list[str]:
    """Give every file and directory its `sharing.read_only_mode` (symlinks have none).

    No write bits, no setuid, setgid or sticky bit on files (a root build's
    `chmod 4755` must not hand every user a setuid-root program); in a store
    shared by a group, directories keep the group's write bit so any member
    can remove the tree later (see sharing.py). Returns the relative paths of
    files that lost a setuid, setgid or sticky bit, so the caller can say so.
    Each directory is changed before it is opened (a mode-000 directory a
    build left becomes readable), and nothing is reached through a symlink.
    """
    stripped: list[str] = []

    def mode(rel: str, st: os.stat_result) -> int:
        is_dir = stat.S_ISDIR(st.st_mode)
        if rel and st.st_mode & SPECIAL_BITS and not is_dir:
            stripped.append(rel)
        return read_only_mode(st.st_mode, True if not rel else is_dir, shared)

    refused = fdtree.change_modes(root, mode)
    if refused:
        raise PermissionError(errno.EPERM, "cannot make read-only", str(root / refused[0]))
    return sorted(stripped)


def lock_is_held(path: Path) -> bool:
    """Whether someone holds the lock file `path` now, without creating or changing anything."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        lock_fd(fd, shared=True, blocking=False)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def remove_tree(path: Path) -> None:
    """Remove a tree even if it was made read-only; missing is fine; no recursion and no
    link followed, whatever depth and shape a build or an archive gave it (fdtree)."""
    fdtree.remove_tree(path)


LOCK_FILE_MODE = 0o664  # less the umask; a shared store opens it to the group (sharing.adopt)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir_nofollow(path: Path, dir_fd: int | None = None) -> int:
    """An fd on the directory `path` itself; StoreError if it is a symlink or not a directory.

    Other users who can write to a shared store could replace a directory by a
    symlink to redirect hdenv's writes; opening with O_NOFOLLOW and working
    relative to the fd (openat) rules that out for the last component.
    """
    try:
        return os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StoreError(f"{path} is not a directory but a symlink or a file; something"
                             " other than hdenv put it there: look at it, remove it, retry"
                             ) from None
        raise


def open_lock_file(path: Path) -> int:
    """Open (creating it if needed) the lock file `path`; the one place lock files are opened.

    Contract: the fd is close-on-exec (build processes never inherit it);
    neither `path` nor its directory is followed if it is a symlink; the file
    must be a regular file with a single link. Anything else is a StoreError
    naming the path: a lock file is where a planted symlink would make hdenv
    (perhaps root) create or open any file. New lock files get
    `LOCK_FILE_MODE` (less the umask); a shared store may widen it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    dfd = open_dir_nofollow(path.parent)
    try:
        return open_lock_at(dfd, path.name, path.parent)
    finally:
        os.close(dfd)


def open_lock_at(dir_fd: int, name: str, where: Path) -> int:
    """`open_lock_file` of `name` in the open directory `dir_fd` (whose path is `where`)."""
    path = where / name
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, LOCK_FILE_MODE, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"lock file {path} is a symlink; hdenv never made it (another user"
                             " may be trying to redirect its writes): remove it and retry"
                             ) from None
        raise OSError(e.errno, e.strerror, str(path)) from None  # name it whole, not dir-relative
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "a hard link"
        raise StoreError(f"lock file {path} is {what}; hdenv never made it: remove it and retry")
    return fd


# struct flock for fcntl(2): l_type, l_whence, l_start, l_len (0: to the end), l_pid
_FLOCK = "hhqqi"


def lock_fd(fd: int, *, shared: bool = False, blocking: bool = True) -> None:
    """Lock the whole file open on `fd`; BlockingIOError if not `blocking` and taken.

    Linux: an open file description (OFD) lock, i.e. fcntl(2) byte-range
    locking owned by the open file rather than the process. Like flock, two
    threads (two open files) exclude each other and closing another fd on the
    same file does not drop it; like POSIX locks it goes to the server on NFS
    (v4, and v3 with lockd), so hdenv on two machines sharing one store
    exclude each other (README, "Locks and NFS"). Elsewhere: flock.
    """
    if hasattr(fcntl, "F_OFD_SETLKW"):
        cmd = fcntl.F_OFD_SETLKW if blocking else fcntl.F_OFD_SETLK
        kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
        request = struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)
        try:
            fcntl.fcntl(fd, cmd, request)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise BlockingIOError(e.errno, "lock is held") from e
            raise
        return
    flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX  # pragma: no cover - not Linux
    try:  # pragma: no cover
        fcntl.flock(fd, flags | (0 if blocking else fcntl.LOCK_NB))
    except OSError as e:  # pragma: no cover
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise BlockingIOError(e.errno, "lock is held") from e
        raise


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[int]:
    """A lock on `path` (see `open_lock_file`), held while the block runs.

    The fd is close-on-exec: build processes never hold hdenv's locks, so a
    stray background process of a failed build cannot keep the next run
    waiting (orphans of a killed run are waited for through the build guard,
    see `builder`).
    """
    fd = open_lock_file(path)
    try:
        try:
            lock_fd(fd, shared=shared, blocking=blocking)
        except BlockingIOError:
            raise BlockingIOError(str(path)) from None
        yield fd
    finally:
        os.close(fd)


def tree_size(root: Path) -> int:
    """Allocated bytes of everything below `root`, as `du -sB1` counts them.

    Subdirectories and symlinks take blocks too (a profile's symlink farm is
    nearly all directories), and a file hard-linked twice is stored once, so
    both are counted the way `du` does; the root's own blocks are the caller's.
    """
    return fdtree.size(root)

"""The store's directories, opened and made through descriptors from the store root.

In a group store every member may rename what is in the store root, so a
member can swap `specs/`, `profiles/`, `names/NAME` or `locks/` for a symlink
to a directory of the victim's at any moment: a check by path (`lstat`, then
`mkdir` or a write by the same path) loses that race, and the victim's hdenv
then writes its specs, profiles and links into the victim's own files. So
every writer reaches a store directory here: the root is opened once, each
component below it is made with `mkdirat` and opened with
O_NOFOLLOW|O_DIRECTORY relative to its parent's descriptor, and the write
happens relative to the last descriptor (`openat`, `renameat`, `unlinkat`).
A symlink (or a file) where a directory should be is refused in one line that
names it, and nothing is created in whatever it points at. The root itself
is reached by its path, which `safeio.check_owned` vouched for (nobody else
owns it or a directory above it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import StoreError
from ..oserrors import naming

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TOP_DIRS = ("src", "specs", "artifacts", "profiles", "names", "pins", "tmp", "locks", "logs")
"""Every top-level directory of a store (the ones `Store.ensure` makes, and pins/, logs/)."""


def not_a_directory(path: Path | str, what: str = "a symlink") -> str:
    """The one line for a symlink or file found where the store needs a directory."""
    return (f"{path} is not a directory but {what}; hdenv never made it (another user of the"
            " store may be trying to redirect hdenv's writes): remove it and retry"
            " (`hdenv verify` lists what else is wrong)")


def _what(dir_fd: int, name: str) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "a symlink or a file"
    return "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"


def open_root(root: Path) -> int:
    """A descriptor of the store root (its path was checked by `safeio.check_owned`)."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_below(dir_fd: int, where: Path, parts: Sequence[str], *, create: bool = True,
               mode: int = 0o777) -> int:
    """A new descriptor of `parts` below the open directory `dir_fd` (whose path is `where`).

    Each component is made if missing (with `create`; `mode` less the umask)
    and opened without following a symlink; StoreError naming the first
    component that is a symlink or a file. FileNotFoundError (naming the
    path) when a component is missing and `create` is false.
    """
    fd = os.dup(dir_fd)
    try:
        for part in parts:
            if not part or part in (".", "..") or "/" in part:
                raise ValueError(f"not one path component: {part!r}")
            where = where / part
            try:
                try:
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    # made only when missing: the store's directories nearly always exist,
                    # and a failed mkdir cost as much as the open
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, mode, dir_fd=fd)
                    nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise StoreError(not_a_directory(where, _what(fd, part))) from None
                raise OSError(e.errno, e.strerror, str(where)) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_dir(root: Path, parts: Sequence[str], *, create: bool = True, mode: int = 0o777) -> int:
    """A descriptor of `root/parts...` reached from the root through descriptors (see
    `open_below`); the caller closes it."""
    try:
        root_fd = open_root(root)
    except FileNotFoundError:
        if not create:
            raise
        root.mkdir(parents=True, exist_ok=True)  # a new store (Store.ensure checks first)
        root_fd = open_root(root)
    try:
        return open_below(root_fd, root, parts, create=create, mode=mode)
    finally:
        os.close(root_fd)


@contextlib.contextmanager
def opened(root: Path, parts: Sequence[str], *, create: bool = True) -> Iterator[int]:
    """`open_dir` as a context manager: the descriptor is closed when the block ends."""
    fd = open_dir(root, parts, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def write_at(dir_fd: int, name: str, data: bytes, mode: int = 0o644,
             where: Path | None = None, sync: bool = True) -> None:
    """Write `name` in the open directory atomically: a new file under a name nobody else
    uses (O_EXCL|O_NOFOLLOW), synced (unless `sync=False`), then renamed over `name`
    there. `where` (the directory's path) names the file in an error such as a full disk."""
    import secrets  # here: `hdenv show` and `list` never write

    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    with naming(where / name if where is not None else name):
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


def read_own_at(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The bytes of `name` in the open directory if it is a regular file of this user's
    of at most `limit` bytes, else None (missing, a symlink, a FIFO, another user's,
    too big). For caches other members could have planted or written: opened without
    following a link or blocking, and believed only if this user wrote it."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > limit:  # it grew meanwhile
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def symlink_at(dir_fd: int, target: str, name: str) -> None:
    """Point `name` in the open directory at `target`, replacing it with one rename there."""
    import secrets  # here: `hdenv show` and `list` never write

    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    os.symlink(target, tmp, dir_fd=dir_fd)
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def problems(root: Path) -> list[str]:
    """One line per top-level store directory that is a symlink or a file (for verify)."""
    out: list[str] = []
    try:
        root_fd = open_root(root)
    except OSError:
        return out
    try:
        for name in TOP_DIRS:
            try:
                st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"
                out.append(f"{root / name}: not a directory but {what}, which hdenv never"
                           " made (another user of the store may be trying to redirect its"
                           " writes): remove it")
    finally:
        os.close(root_fd)
    return out

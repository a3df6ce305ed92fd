"""Files in the user's own cache directory: read whole or not at all, written privately.

What hdenv keeps between runs to save time (the names `avail` shows, stack
files already parsed) lives under `$XDG_CACHE_HOME/hdenv`, never in a store
others can write to: a planted cache would name packages wrongly, or build
what a stack file does not say. A file is written to a private temporary file
and renamed, so a reader sees a whole file or none; anything unreadable is a
miss, and failing to write costs the next run time, never an error. Only
`posix`, so the load fast path can use it.
"""

from __future__ import annotations

import posix

from .xdg import user_dir

_PRIVATE = 0o600


def cache_file(name: str) -> str:
    """The path of `name` in the user's cache directory."""
    return f"{user_dir('cache')}/{name}"


def read(path: str) -> bytes | None:
    """The whole file, or None if it is missing, a symlink, not a regular file of this
    user's (`sudo` keeps `$HOME`: root would read what the invoking user planted) or
    unreadable."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = posix.fstat(fd)
        if st.st_uid != posix.geteuid() or st.st_mode & 0o170000 != 0o100000:  # S_IFREG
            return None
        chunks = []
        while chunk := posix.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        posix.close(fd)


def write(path: str, body: bytes) -> None:
    """Replace the file with `body` whole, or do nothing."""
    directory = path.rpartition("/")[0]
    temp = f"{path}.{posix.getpid()}.tmp"
    try:
        _make_dirs(directory)
        fd = posix.open(temp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW
                        | posix.O_CLOEXEC, _PRIVATE)
    except OSError:
        return
    try:
        view = memoryview(body)
        while view:
            view = view[posix.write(fd, view):]
        posix.close(fd)
        fd = -1
        posix.rename(temp, path)
    except OSError:
        if fd >= 0:
            posix.close(fd)
        try:  # noqa: SIM105 - contextlib costs the fast path an import
            posix.unlink(temp)
        except OSError:
            pass


def _make_dirs(directory: str) -> None:
    parent = directory.rpartition("/")[0]
    try:
        posix.mkdir(directory, 0o700)
    except FileExistsError:
        return
    except FileNotFoundError:
        if not parent:
            raise
        _make_dirs(parent)
        try:  # noqa: SIM105 - as above
            posix.mkdir(directory, 0o700)
        except FileExistsError:
            pass

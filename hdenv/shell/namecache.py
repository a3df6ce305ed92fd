"""The distinguishing names of loadable packages, kept between runs (`avail`, completion).

Naming a package (`zlib/1.2.13-gcc`) means reading the spec of every build
that shares its NAME/VERSION: at 1,000 named profiles of 30 packages that is
30,000 files per `hdenv avail`, slower than Lmod's walk of 1,000 modulefiles.
Lmod answers with a spider cache that a timestamp makes stale; this cache is
never stale instead, because what it holds is a function of its key alone:
the names follow from the artifacts the profiles list, a profile's hash fixes
what it lists, and an artifact's id fixes its spec. The key is every profile
hash of every generation in the store roots, which `avail` reads anyway (one
readlink each).

The file lives in the user's own cache directory (`$XDG_CACHE_HOME/hdenv`),
never in a store others can write to: a planted cache would name packages
wrongly for everyone. It is written to a private temporary file and renamed,
so a reader sees a whole file or none; anything unreadable or malformed is a
miss. Only `posix` and the fast path's JSON, so `avail` stays on the fast path.
"""

from __future__ import annotations

import binascii
import posix

from ..fastjson import json_dumps, json_loads
from ..xdg import user_dir

FORMAT = 1
_PRIVATE = 0o600


def cache_path(roots: list[str]) -> str:
    """One file per list of store roots: switching `HDENV_STORE` does not evict another's."""
    tag = binascii.crc32("\0".join(roots).encode("utf-8", "surrogateescape"))
    return f"{user_dir('cache')}/names-{tag:08x}.json"


def read(roots: list[str], key: str) -> dict[str, str] | None:
    """The names saved for exactly these roots and profiles, else None."""
    try:
        fd = posix.open(cache_path(roots), posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := posix.read(fd, 1 << 20):
            chunks.append(chunk)
        data = json_loads(b"".join(chunks).decode("utf-8"))
    except (OSError, ValueError):
        return None
    finally:
        posix.close(fd)
    if not (isinstance(data, dict) and data.get("format") == FORMAT
            and data.get("roots") == roots and data.get("profiles") == key):
        return None
    names = data.get("names")
    if not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        return None
    return names


def write(roots: list[str], key: str, names: dict[str, str]) -> None:
    """Save, or do nothing: a read-only or full home costs the next run time, not an error."""
    path = cache_path(roots)
    directory = path.rpartition("/")[0]
    temp = f"{path}.{posix.getpid()}.tmp"
    body = json_dumps({"format": FORMAT, "roots": roots, "profiles": key,
                       "names": names}).encode("utf-8", "surrogateescape")
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

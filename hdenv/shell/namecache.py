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

The file lives in the user's own cache directory (usercache.py: never in a
store others can write to, where a planted cache would name packages wrongly
for everyone; whole or not at all); anything malformed is a miss too. Only
`posix` and the fast path's JSON, so `avail` stays on the fast path.
"""

from __future__ import annotations

import binascii

from .. import usercache
from ..fastjson import json_dumps, json_loads

FORMAT = 1


def cache_path(roots: list[str]) -> str:
    """One file per list of store roots: switching `HDENV_STORE` does not evict another's."""
    tag = binascii.crc32("\0".join(roots).encode("utf-8", "surrogateescape"))
    return usercache.cache_file(f"names-{tag:08x}.json")


def read(roots: list[str], key: str) -> dict[str, str] | None:
    """The names saved for exactly these roots and profiles, else None."""
    body = usercache.read(cache_path(roots))
    if body is None:
        return None
    try:
        data = json_loads(body.decode("utf-8"))
    except ValueError:
        return None
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
    usercache.write(cache_path(roots), json_dumps(
        {"format": FORMAT, "roots": roots, "profiles": key,
         "names": names}).encode("utf-8", "surrogateescape"))

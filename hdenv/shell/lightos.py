"""The few file tests and the environment the fast load path needs, without `os`.

`import os` costs about 2 ms under `python -I -S` (it pulls in `stat`,
`posixpath` and `_collections_abc`): a tenth of a whole `hdenv load`, paid
twice per load + unload. The built-in `posix` module has everything needed
here. Paths that need real normalisation (`~`, relative, `..`) still go
through `os.path`, imported only then.
"""

from __future__ import annotations

import posix
import sys

_FORMAT = 0o170000
_REGULAR = 0o100000
_DIRECTORY = 0o040000
_MAX_LINKS = 40  # as the kernel's ELOOP limit


def environ() -> dict[str, str]:
    """The environment decoded as `os.environ` decodes it (surrogateescape)."""
    encoding = sys.getfilesystemencoding()
    return {key.decode(encoding, "surrogateescape"): value.decode(encoding, "surrogateescape")
            for key, value in posix.environ.items()}


def _file_type(path: str, follow: bool = True) -> int:
    try:
        return (posix.stat(path) if follow else posix.lstat(path)).st_mode & _FORMAT
    except (OSError, ValueError):
        return 0


def is_file(path: str) -> bool:
    return _file_type(path) == _REGULAR


def is_dir(path: str) -> bool:
    return _file_type(path) == _DIRECTORY


def exists(path: str) -> bool:
    return _file_type(path) != 0


def lexists(path: str) -> bool:
    return _file_type(path, follow=False) != 0


def listdir(path: str) -> list[str]:
    return posix.listdir(path)


def join(*parts: str) -> str:
    """Join parts that are names, not absolute paths (the store's own layout)."""
    return "/".join(parts)


def basename(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


def readlink(path: str) -> str | None:
    """The target of a symlink, or None (not a link, or gone)."""
    try:
        return posix.readlink(path)
    except (OSError, ValueError):
        return None


def final_target(link: str) -> str:
    """Follow `link` through every symlink; return the last path (not normalised).

    Only its last component is used (a profile's hash), so resolving the
    directories above it, as `realpath` would, is work the load does not need.
    A loop ends at a link, which then fails the caller's `is_file` test.
    """
    path = link
    for _ in range(_MAX_LINKS):
        try:
            target = posix.readlink(path)
        except OSError:  # not a link (EINVAL) or gone: this is the end of the chain
            return path
        path = target if target.startswith("/") else f"{path.rpartition('/')[0]}/{target}"
    return path


def absolute(path: str) -> str:
    """`os.path.abspath(os.path.expanduser(path))`, cheap for clean absolute paths."""
    parts = path.split("/")
    if path.startswith("/") and all(p not in ("", ".", "..") for p in parts[1:]):
        return path
    import os

    return os.path.abspath(os.path.expanduser(path))

"""Operating-system errors a user can cause, as one line that names the path and the way out.

A full disk, a read-only or someone else's directory, a name the file system
cannot hold: none is a bug in hdenv, so none may end in "internal error" or a
traceback. `describe` turns such an OSError into the message and exit code
the command line prints (1 when the machine is the problem, 2 when the path
the user chose is); anything else stays an internal error, because then it is
a bug.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

_SPACE = "free some space (`hdenv gc` removes what no profile needs) and run it again"
_ACCESS = ("check who owns it and its mode (`ls -ld`), or use a store of your own"
           " (--store, HDENV_STORE)")
KNOWN: dict[int, tuple[str, str, int]] = {
    errno.ENOSPC: ("no space left on the device", _SPACE, 1),
    errno.EDQUOT: ("disk quota exceeded", _SPACE, 1),
    errno.EIO: ("input/output error", "the disk or network file system may be failing", 1),
    errno.EACCES: ("permission denied", _ACCESS, 2),
    errno.EPERM: ("operation not permitted", _ACCESS, 2),
    errno.EROFS: ("read-only file system", "use a store on a writable file system"
                  " (--store, HDENV_STORE)", 2),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter store path or file name", 2),
}


def describe(e: OSError) -> tuple[str, int] | None:
    """(one-line message, exit code) for an OSError a user can cause, else None."""
    known = KNOWN.get(e.errno or 0)
    if known is None:
        return None
    what, advice, code = known
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    where = f" ({' -> '.join(paths)})" if paths else ""
    return f"{what}{where}: {advice}", code


@contextlib.contextmanager
def naming(path: object) -> Iterator[None]:
    """Give an OSError raised without a file name (a `write` on a full disk) the path."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None

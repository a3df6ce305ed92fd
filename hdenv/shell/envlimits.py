"""The kernel's limits on the environment, checked before a load is evaluated.

Every command a shell runs receives its environment through execve(2), which
refuses (E2BIG, "Argument list too long") a single string over 128 KiB on
Linux (MAX_ARG_STRLEN) and arguments plus environment over ARG_MAX. A load
that crossed either limit would leave a shell in which `ls`, and `hdenv
unload` itself, no longer start. So `run` checks the environment a command
would leave and refuses, with one line and before anything is evaluated, a
change that grows it past a limit. Only growth is refused: an environment
that was already too large is not made worse by an unload.
"""

from __future__ import annotations

import posix
import sys

from ..errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

ONE_STRING = 32 * 4096 if sys.platform.startswith("linux") else None  # MAX_ARG_STRLEN
POINTER = 8


def _arg_max() -> int:
    try:
        value = posix.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        value = -1
    return value if value > 0 else 1 << 21


def _size(key: str, value: str) -> int:
    """Bytes of `KEY=VALUE\\0`, as execve counts them."""
    return len(key.encode("utf-8", "surrogateescape")) + \
        len(value.encode("utf-8", "surrogateescape")) + 2


def check(before: Mapping[str, str], after: Mapping[str, str], what: str) -> None:
    """UserError if `after` has a variable, or a total, over a limit that `before` was under."""
    for key, value in after.items():
        if ONE_STRING is not None and before.get(key) != value:
            size = _size(key, value)
            if size > ONE_STRING and size > _size(key, before.get(key, "")):
                raise UserError(
                    f"{what} would make {key} {size} bytes long, over the {ONE_STRING}-byte"
                    " limit for one environment variable (every command would then fail with"
                    " 'Argument list too long'); nothing was changed")
    total = sum(_size(k, v) + POINTER for k, v in after.items())
    budget = _arg_max() // 2  # the other half stays for commands' arguments
    if total > budget and total > sum(_size(k, v) + POINTER for k, v in before.items()):
        raise UserError(
            f"{what} would make the environment {total} bytes, over half the {_arg_max()}"
            " bytes the system allows for a command's arguments and environment; nothing"
            " was changed")

"""Per-shell quoting and statement syntax; see base.py.

`get_shell(name)` is the registry. Only the stdlib is imported here because
the fast load path needs it.
"""

from __future__ import annotations

from ..errors import UserError
from .base import Shell
from .fish import Fish
from .posix import Bash, Zsh
from .tcsh import Tcsh

SHELLS: dict[str, type[Shell]] = {"bash": Bash, "zsh": Zsh, "fish": Fish, "tcsh": Tcsh}


def supported() -> list[str]:
    return list(SHELLS)


def get_shell(name: str) -> Shell:
    """The Shell for `name`, or a UserError that lists the supported shells."""
    try:
        return SHELLS[name]()
    except KeyError:
        raise UserError(
            f"unsupported shell {name!r}; supported: {', '.join(SHELLS)}"
        ) from None


__all__ = ["SHELLS", "Shell", "get_shell", "supported"]

"""Per-shell quoting and statement syntax; see base.py.

`get_shell(name)` is the registry. It imports only the module of the shell
asked for: the fast load path runs once per `hdenv load`, and every module
imported there is time a user waits.
"""

from __future__ import annotations

from ...errors import UserError
from .base import Shell

# shell name -> (module in this package, class)
SHELLS: dict[str, tuple[str, str]] = {"bash": ("posix", "Bash"), "zsh": ("posix", "Zsh"),
                                      "fish": ("fish", "Fish"), "tcsh": ("tcsh", "Tcsh")}


def supported() -> list[str]:
    return list(SHELLS)


def get_shell(name: str) -> Shell:
    """The Shell for `name`, or a UserError that lists the supported shells."""
    try:
        module_name, class_name = SHELLS[name]
    except KeyError:
        raise UserError(
            f"unsupported shell {name!r}; supported: {', '.join(SHELLS)}"
        ) from None
    module = __import__(f"{__name__}.{module_name}", fromlist=[class_name])
    shell: Shell = getattr(module, class_name)()
    return shell


__all__ = ["SHELLS", "Shell", "get_shell", "supported"]

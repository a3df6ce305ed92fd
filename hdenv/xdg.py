"""Where a user's hdenv files live: the XDG base directories, one rule for every path.

`$XDG_CONFIG_HOME/hdenv` (config.toml, signing keys), `$XDG_DATA_HOME/hdenv`
(the default store, init files, collections), `$XDG_CACHE_HOME/hdenv` (recipe
repositories); a relative or empty value is ignored, as the XDG specification
says, and `$HOME/.config`, `$HOME/.local/share`, `$HOME/.cache` are used.

One module, because the load fast path (`python -I -S`, no `os`) and the
click commands must agree on every path: when they used platformdirs on one
side and this rule on the other, a macOS user's `hdenv load` and `hdenv
build` read different config files. Only `posix` and `pwd`, so the fast path
can import it.
"""

from __future__ import annotations

import posix

TYPE_CHECKING = False
if TYPE_CHECKING:  # collections.abc costs the load path ~3 ms under `python -I -S`
    from collections.abc import Mapping

KINDS = {"config": ("XDG_CONFIG_HOME", ".config"),
         "data": ("XDG_DATA_HOME", ".local/share"),
         "cache": ("XDG_CACHE_HOME", ".cache")}


def home(env: Mapping[str, str]) -> str:
    """$HOME if absolute, else the password database's home directory."""
    found = env.get("HOME") or ""
    if found.startswith("/"):
        return found
    import pwd

    return pwd.getpwuid(posix.getuid()).pw_dir


def user_dir(kind: str, env: Mapping[str, str] | None = None) -> str:
    """`$XDG_<KIND>_HOME/hdenv`, else `$HOME/<default>/hdenv`."""
    var, under_home = KINDS[kind]
    if env is None:  # posix.environ has bytes keys and values
        env = {k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
               for k, v in posix.environ.items() if k in (var.encode(), b"HOME")}
    base = env.get(var) or ""
    if not base.startswith("/"):
        base = home(env).rstrip("/") + "/" + under_home
    return base.rstrip("/") + "/hdenv"

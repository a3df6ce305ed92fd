"""The hook of a `python-usage = true` profile: which distributions a Python process used.

Installed into the profile's virtual environment (usage/pyinstall.py) as the
package `_hdenv_usage`, a copy of the few hdenv modules it needs laid out as
they are in hdenv, so it works in the profile's own interpreter whether or
not hdenv is importable there, plus `_hdenv_usage.pth`, which `site` runs at
each start of that interpreter. `start` only registers an exit handler: a
process pays nothing until it ends, and then (as NOAA's PyRats does) sends
one `python` line listing the distributions its imported top-level modules
belong to, looked up in `modules.json` (module -> distribution, written when
the profile was made). Interactive sessions (the REPL, `python -i`,
IPython/Jupyter), multiprocessing workers and `HDENV_NO_USAGE=1` send nothing.
The sink is the `usage-log` of the user's and the site's config files, read
at exit, so a site changing it never needs to rebuild a profile.
"""

from __future__ import annotations

import sys

from .. import usage

MODULES_FILE = "modules.json"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


_started: list[bool] = []  # `site` may run a .pth twice (Debian 3.11 in a venv does)


def start() -> None:
    if _started:
        return
    _started.append(True)
    import atexit

    atexit.register(_at_exit)


def _at_exit() -> None:
    import contextlib

    with contextlib.suppress(Exception):  # a usage log must never disturb the user's program
        _report()


def interactive() -> bool:
    """The REPL (it sets sys.ps1), `python -i`, IPython and Jupyter kernels."""
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return True
    return "IPython" in sys.modules or "ipykernel" in sys.modules


def _worker() -> bool:
    """A multiprocessing child: its parent is the process that counts."""
    process = sys.modules.get("multiprocessing.process")
    return process is not None and process.parent_process() is not None


def _report() -> None:
    import os

    if usage.disabled(os.environ) or interactive() or _worker():
        return
    sink = usage_log(os.environ)
    if not sink:
        return
    from ..fastjson import json_loads

    with open(os.path.join(os.path.dirname(__file__), MODULES_FILE), encoding="utf-8") as f:
        data = json_loads(f.read())
    known: dict[str, str] = data["modules"]
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    used = sorted({known[m] for m in tops if m in known})
    hash_ = str(data["hash"])
    name, generation = loaded_as(os.environ.get("HDENV_LOADED", ""), hash_)
    event = usage.event("python", True, usage.profile_fields(name, generation, hash_))
    event["packages"] = used
    event["python"] = f"{sys.version_info[0]}.{sys.version_info[1]}"
    usage.emit([event], os.environ, sink)


def loaded_as(loaded: str, hash_: str) -> tuple[str | None, int | None]:
    """The name and generation this profile was loaded as (`HDENV_LOADED`: `NAME/N:HASH ...`)."""
    for entry in loaded.split():
        ref, _, loaded_hash = entry.rpartition(":")
        if loaded_hash == hash_ and ref:
            name, _, number = ref.partition("/")
            return name, int(number) if number.isdigit() else None
    return None, None


def user_config(environ: Mapping[str, str]) -> str:
    """The user's config file by hdenv's XDG rule (hdenv/xdg.py), which this copy
    cannot import: `$XDG_CONFIG_HOME` if absolute, else `~/.config`."""
    import os

    base = environ.get("XDG_CONFIG_HOME") or ""
    if not base.startswith("/"):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "hdenv", "config.toml")


def usage_log(environ: Mapping[str, str]) -> str | None:
    import os

    from ..configfiles import lookup, read_layers

    found = lookup(read_layers(environ, user_config(environ), os.path.exists), "usage-log")
    return str(found[0]) if found and found[0] else None

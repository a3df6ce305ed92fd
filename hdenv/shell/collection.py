"""Collections: `save`, `restore`, `savelist`, `describe`, `disable` (Lmod's names).

A collection is what was loaded, in load order, by exact profile hash (with
the NAME/N it had), so `restore` brings back the identical environment even
after `demo` was rebuilt; `restore --latest` loads today's default of each
name instead and says what changed (Lmod re-resolves silently).

They live in the user's data dir, `$XDG_DATA_HOME/hdenv/collections/NAME.json`
(`~/.local/share/hdenv/...` without it: what platformdirs answers on Linux,
computed here without it because `restore` runs on the fast path, imports
limited to `posix`). Writing (`save`, `disable`) runs in the full program.
"""

from __future__ import annotations

from ..errors import UserError
from ..xdg import user_dir
from . import envdiff, lightos

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT = "default"
FORMAT = 1
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+")


def data_dir(environ: Mapping[str, str]) -> str:
    """`$XDG_DATA_HOME/hdenv`, else `$HOME/.local/share/hdenv` (xdg.py)."""
    return user_dir("data", environ)


def directory(environ: Mapping[str, str]) -> str:
    return lightos.join(data_dir(environ), "collections")


def check_name(name: str) -> str:
    """A file name of its own: letters, digits, `._-+`, not starting with a dot."""
    if not name or name.startswith(".") or not set(name) <= _NAME_CHARS or len(name) > 100:
        raise UserError(f"bad collection name {name!r}: use letters, digits and ._-+"
                        " (not starting with a dot)")
    return name


def path_of(environ: Mapping[str, str], name: str) -> str:
    return lightos.join(directory(environ), check_name(name) + ".json")


def names(environ: Mapping[str, str]) -> list[str]:
    try:
        entries = lightos.listdir(directory(environ))
    except OSError:
        return []
    return sorted(e[:-5] for e in entries if e.endswith(".json") and not e.startswith("."))


def read(environ: Mapping[str, str], name: str) -> list[dict[str, Any]]:
    """The entries of collection `name`: ref, name, generation, hash (load order)."""
    path = path_of(environ, name)
    try:
        with open(path, encoding="utf-8") as f:
            data = envdiff.json_loads(f.read())
    except FileNotFoundError:
        saved = names(environ)
        have = f"saved: {', '.join(saved)}" if saved else "none saved yet (`hdenv save`)"
        raise UserError(f"no collection {name!r} ({have})") from None
    except (OSError, ValueError) as e:
        raise UserError(f"unreadable collection ({e})", file=path) from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("hash"), str) for e in entries):
        raise UserError("damaged collection (no 'entries' list); save it again", file=path)
    return entries


def entries_of(records: list[envdiff.LoadRecord]) -> list[dict[str, Any]]:
    """A package loaded by name adds its artifact id (`package`): restore loads that build."""
    return [{"ref": r.ref, "name": r.name, "generation": r.generation, "hash": r.hash,
             **({"package": r.package} if r.package else {})} for r in records]


def save(environ: Mapping[str, str], name: str, records: list[envdiff.LoadRecord]) -> str:
    """Write the collection (atomically: a reader never sees half of it); its path."""
    import contextlib
    import os
    import tempfile

    path = path_of(environ, name)
    folder = directory(environ)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    data = {"format": FORMAT, "name": name, "entries": entries_of(records)}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".save-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(envdiff.json_dumps(data) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def disable(environ: Mapping[str, str], name: str) -> str:
    import os

    path = path_of(environ, name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        read(environ, name)  # the error that lists what there is
    return path


def describe_text(name: str, entries: list[dict[str, Any]]) -> str:
    if not entries:
        return f"Collection {name!r} is empty (restoring it unloads everything).\n"
    lines = [f"Collection {name!r} loads, in order:"]
    lines += [f"  {i}) {e.get('ref') or e['hash']}  {e['hash']}"
              for i, e in enumerate(entries, start=1)]
    return "\n".join(lines) + "\n"


def savelist_text(saved: list[str], terse: bool) -> str:
    if terse:
        return "".join(n + "\n" for n in saved)
    if not saved:
        return "No named collections (save one with `hdenv save [NAME]`).\n"
    return "Named collection list:\n" + "".join(
        f"  {i}) {n}\n" for i, n in enumerate(saved, start=1))

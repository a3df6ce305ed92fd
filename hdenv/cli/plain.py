"""What `list WORD`, `show` and `config` print, without click.

The click commands (group.py, site.py) and the lean path (main.py) both print
these texts, so the bare program answers a script's `hdenv list artifacts`
without importing click and the two ways cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import Settings
from ..errors import UserError
from ..sanitize import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store.layout import Store


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def list_text(store: Store, what: str, as_json: bool) -> str:
    """The store's artifacts (id first), named profiles (`NAME HASH GEN PATH`) or names."""
    from ..profile import views

    rows = views.list_rows(store, what)
    if as_json:
        return json_text(rows)
    return "".join(printable(" ".join(str(row[k]) for k in views.LIST_COLUMNS[what])) + "\n"
                   for row in rows)


def show_text(store: Store, ref: str, as_json: bool) -> str:
    """Description, what loading changes, spec, dependencies, path, size, generations
    (shell/showing.py, which the shell function's fast path prints through too)."""
    from ..shell import showing
    from ..showtext import show_text as text

    roots = store.search_roots()
    try:
        resolved = store.resolve(ref)
        found = showing.Found(resolved.kind, resolved.ident, str(resolved.path), resolved.name,
                              str(resolved.upstream) if resolved.upstream else None)
    except UserError as unknown:  # a package by name, as `load` takes it (shell/byname.py)
        aid = _package_ref(store, ref)
        if aid is None:
            raise unknown from None
        resolved = store.resolve(aid)
        found = showing.Found("artifact", aid, str(resolved.path), None,
                              str(resolved.upstream) if resolved.upstream else None)
    info = showing.info(roots, found)
    header = showing.header(roots, found, info)  # adds "description" and "load" to info
    return json_text(info) if as_json else text(header, info)


def _package_ref(store: Store, ref: str) -> str | None:
    """The artifact `hdenv load REF` would load, when REF names a package, else None."""
    import os

    from ..shell import byname
    from ..shell.catalog import loaded_records

    if ref.count("/") == 2:
        return None  # an artifact id the store did not know: nothing to guess
    return byname.chosen_build([str(r) for r in store.search_roots()], ref,
                               loaded_records(os.environ))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def config_report(settings: Settings) -> dict[str, Any]:
    import os
    from pathlib import Path

    from ..config import default_config_file, setting_items
    from ..configfiles import config_files

    files = [{"path": path, "role": role, "explicit": explicit,
              "present": os.path.exists(path)}
             for path, explicit, role in config_files(os.environ, str(default_config_file()))]
    return {
        "files": files,
        "settings": {key: {"value": [str(v) for v in value] if isinstance(value, list)
                           else (str(value) if isinstance(value, Path) else value),
                           "source": source}
                     for key, value, source in setting_items(settings)},
    }


def config_text(settings: Settings, as_json: bool) -> str:
    """Every setting in force and where it came from, as TOML with the source beside."""
    report = config_report(settings)
    if as_json:
        return json.dumps(report, indent=2) + "\n"
    lines = []
    for f in report["files"]:
        state = "" if f["present"] else " (absent)"
        via = " (HDENV_CONFIG)" if f["explicit"] and f["role"] == "user" else (
            " (HDENV_SITE_CONFIG)" if f["explicit"] else "")
        lines.append(f"# {f['role']} config: {f['path']}{via}{state}")
    rows = []
    for key, entry in report["settings"].items():
        value = entry["value"]
        text = f"{key} = {_toml_value(value)}" if value is not None else f"# {key} is not set"
        rows.append((text, entry["source"]))
    width = max(len(text) for text, _ in rows)
    lines += [f"{text.ljust(width)}  # {source}" for text, source in rows]
    return "".join(line + "\n" for line in lines)

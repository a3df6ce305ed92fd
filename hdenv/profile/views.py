"""What `hdenv list` prints about artifacts and profiles.

These views sit in the profile layer because a profile's row needs its
generation (profiles.py), which the store layer below cannot know. `show` is
shell/showing.py (facts) and showtext.py (text), shared with the shell function.
"""

from __future__ import annotations

from typing import Any

from ..store.layout import Store
from .profiles import list_generations

LIST_COLUMNS = {
    "artifacts": ("id", "path"),
    "profiles": ("name", "hash", "generation", "path"),
    "names": ("name",),
}


def list_rows(store: Store, what: str) -> list[dict[str, Any]]:
    if what == "artifacts":
        return [{"id": a, "path": str(store.artifact_dir(a))} for a in store.list_artifacts()]
    rows = []
    for name in store.list_names():
        target = store.name_current(name)
        assert target is not None
        rows.append({"name": name, "hash": target.name, "generation": _generation(store, name),
                     "path": str(target)})
    return rows


def _generation(store: Store, name: str) -> int | str:
    for gen in list_generations(store, name):
        if gen.current:
            return gen.number
    return "?"

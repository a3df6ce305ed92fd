"""`hdenv du`: where the store's space goes, and what gc would give back.

Each artifact tree is walked once; the same sizes answer both "how big are
the artifacts" and "how much would gc free", so `du` costs one walk of the
store. Sizes are allocated blocks (as `du` counts them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .gc import artifact_dirs, garbage, mark, path_size
from .layout import Store


def _entries(path: Path) -> list[Path]:
    try:
        return [path / e for e in sorted(os.listdir(path))]
    except (FileNotFoundError, NotADirectoryError):
        return []


def disk_usage(store: Store) -> dict[str, Any]:
    """Bytes and counts per part of the store, and what `gc` (and `gc --sources`) would free."""
    artifact_sizes = {aid: path_size(path) for aid, path, _complete in artifact_dirs(store)}
    profiles = _entries(store.profiles)
    sources = _entries(store.src / "sha256")
    logs = store.root / "logs"
    parts: dict[str, dict[str, int]] = {
        "artifacts": {"bytes": sum(artifact_sizes.values()), "count": len(artifact_sizes)},
        "profiles": {"bytes": sum(path_size(p) for p in profiles), "count": len(profiles)},
        "sources": {"bytes": path_size(store.src), "count": len(sources)},
        "specs": {"bytes": path_size(store.specs), "count": len(_entries(store.specs))},
        "logs": {"bytes": path_size(logs), "count": len(_entries(logs))},
        "tmp": {"bytes": path_size(store.tmp), "count": len(_entries(store.tmp))},
    }
    marked = mark(store)
    items = garbage(store, marked, sources=True, sizes=False)
    free = {"gc": 0, "sources": 0}
    for item in items:
        if item.kind in ("artifact", "leftover"):
            size = artifact_sizes.get(item.ident, 0)
        elif item.ident.startswith("git:"):
            size = 0
        else:
            size = path_size(item.path)
        free["sources" if item.kind == "source" else "gc"] += size
    return {
        "root": str(store.root),
        "parts": parts,
        "total": sum(p["bytes"] for p in parts.values()),
        "gc_would_free": free["gc"],
        "gc_sources_would_free": free["gc"] + free["sources"],
        "garbage": {kind: sum(1 for i in items if i.kind == kind)
                    for kind in ("profile", "artifact", "leftover", "spec", "source")},
    }

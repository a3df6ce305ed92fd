"""Read-only views of the store for `list`, `show` and `verify`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ..errors import HdenvError
from .artifacts import runtime_closure
from .fsutil import tree_size
from .hashing import sha256_file
from .layout import Store

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
    try:
        from ..profile.profiles import list_generations
    except ImportError:  # pragma: no cover - profiles module is part of the package
        return "?"
    for gen in list_generations(store, name):
        if gen.current:
            return gen.number
    return "?"


def show(store: Store, ref: str) -> dict[str, Any]:
    resolved = store.resolve(ref)
    if resolved.kind == "profile":
        from ..profile.profiles import profile_info

        info: dict[str, Any] = profile_info(store, ref)
        info.setdefault("kind", "profile")
        info["upstream"] = str(resolved.upstream) if resolved.upstream else None
        return info
    aid = resolved.ident
    meta = store.artifact_meta(aid)
    spec = store.read_spec(aid.split("/")[2])
    return {
        "kind": "artifact",
        "id": aid,
        "path": str(resolved.path),
        "spec": spec,
        "runtime_deps": meta.get("runtime_deps", []),
        "runtime_closure": runtime_closure(store, [aid]),
        "size": tree_size(resolved.path),
        "created": meta.get("created"),
        "build_seconds": meta.get("build_seconds"),
        # from the link audit: libraries taken from the host that no declared host artifact has
        "undeclared_system_libraries": meta.get("links", {}).get("undeclared", []),
        "upstream": str(resolved.upstream) if resolved.upstream else None,
    }


def format_show(info: dict[str, Any]) -> str:
    if info.get("kind") != "artifact":
        return format_profile(info)
    lines = [
        f"id:       {info['id']}",
        f"path:     {info['path']}",
        *([f"upstream: {info['upstream']} (read-only)"] if info.get("upstream") else []),
        f"size:     {human_size(info['size'])}",
        f"created:  {info['created']} ({info['build_seconds']} s)",
        "runtime dependencies:",
        *[f"  {d}" for d in info["runtime_deps"] or ["(none)"]],
        *_undeclared_lines(info.get("undeclared_system_libraries", [])),
        "spec:",
        *["  " + line for line in json.dumps(info["spec"], indent=2, sort_keys=True).splitlines()],
    ]
    return "\n".join(lines)


def _undeclared_lines(undeclared: list[dict[str, str]]) -> list[str]:
    if not undeclared:
        return []
    return ["undeclared system libraries:",
            *[f"  {u['library']}  {u['path']}  (needed by {u['file']})" for u in undeclared]]


def format_profile(info: dict[str, Any]) -> str:
    lines = [
        f"profile:  {info['hash']}" + (f" ({info['name']})" if info.get("name") else ""),
        f"path:     {info['path']}",
        *([f"upstream: {info['upstream']} (read-only)"] if info.get("upstream") else []),
        f"size:     {human_size(info['size'])} in {len(info['artifacts'])} artifact(s)",
    ]
    if info.get("family"):
        lines.append(f"family:   {info['family']}")
    if info.get("python"):
        lines.append(f"python:   {info['python']}")
    lines.append("artifacts:")
    sizes = info.get("artifact_sizes", {})
    lines += [f"  {a}  {human_size(sizes.get(a, 0))}" for a in info["artifacts"]]
    if info.get("env"):
        lines.append("environment:")
        lines += [f"  {k}={v}" for k, v in sorted(info["env"].items())]
    if info.get("generations"):
        lines.append(f"generations of {info['name']}:")
        for g in info["generations"]:
            mark = "  (current)" if g["current"] else ""
            lines.append(f"  {g['number']:>3}  {g['hash']}  {g['created']}{mark}")
    return "\n".join(lines)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def verify(store: Store, ref: str | None, *, sources: bool = False,
           host_check: Callable[[Store, str], list[str]] | None = None,
           ) -> tuple[list[str], int]:
    """Problems found, and how many artifacts were checked (see store/verify.py).

    Without REF: every artifact, leftover, profile, name (and with `sources`,
    every stored source). With REF: that artifact's or profile's closure.
    `host_check` replaces the byte check of host files (`host_drift`): the
    exchange layer passes one that also re-asks versions, which the store
    layer cannot do without importing host capture.
    """
    from . import verify as checks

    problems: list[str] = []
    if ref is None:
        targets = store.list_artifacts()
        problems += checks.incomplete_artifacts(store)
        profiles = store.list_profile_hashes()
        problems += checks.verify_names(store)
    else:
        resolved = store.resolve(ref)
        profiles = [resolved.ident] if resolved.kind == "profile" else []
        targets = [resolved.ident] if resolved.kind == "artifact" else []
        if resolved.kind == "profile":
            meta = checks.read_profile_meta(store, resolved.ident)
            targets = [a for a in meta.get("artifacts", []) if isinstance(a, str)] if meta else []
        targets = checks.closure(store, targets, problems)
    for aid in targets:
        problems += checks.verify_artifact(store, aid)
        problems += (host_check or host_drift)(store, aid)
    for hash_ in profiles:
        problems += checks.verify_profile(store, hash_)
    if sources:
        problems += checks.verify_sources(store)[0]
    return problems, len(targets)


def host_drift(store: Store, aid: str) -> list[str]:
    """Host files whose bytes changed since capture: same id (by version), other content."""
    try:
        recorded = store.artifact_meta(aid).get("host_files", {})
    except (HdenvError, OSError, ValueError):  # damaged metadata: verify_artifact says so
        return []
    out = []
    for path, digest in sorted(recorded.items()):
        if not os.path.isfile(path):
            out.append(f"{aid}: host file {path} is gone (drift)")
        elif sha256_file(path) != digest:
            out.append(f"{aid}: host file {path} changed since it was captured (drift)")
    return out

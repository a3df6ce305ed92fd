"""What `hdenv list` and `hdenv show` print about artifacts and profiles.

These views sit in the profile layer because a profile's view needs its
generations and names (profiles.py), which the store layer below cannot know.
"""

from __future__ import annotations

import json
from typing import Any

from ..store.artifacts import runtime_closure
from ..store.fsutil import human_size, tree_size
from ..store.layout import Store
from .profiles import list_generations, profile_info

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


def show(store: Store, ref: str) -> dict[str, Any]:
    resolved = store.resolve(ref)
    if resolved.kind == "profile":
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
        *spec_lines(info["spec"]),
    ]
    return "\n".join(lines)


def spec_lines(spec: dict[str, Any]) -> list[str]:
    """A spec as a person reads it: one field a line, lists and tables indented.

    `--json` has the exact canonical form; this is for reading: the script as
    the shell sees it, environment values as KEY=VALUE, a host artifact's
    programs with their paths and version lines.
    """
    out: list[str] = []
    for key in ("kind", "name", "version", "family"):
        if spec.get(key) is not None:
            out.append(f"  {key + ':':<12}{spec[key]}")
    for src in spec.get("sources", []):
        detail = ", ".join(f"{k} {v}" for k, v in sorted(src.items()) if k != "key" and v)
        out.append(f"  {'source:':<12}{src.get('key')}" + (f" ({detail})" if detail else ""))
    for key, label in (("deps", "dep"), ("build_deps", "build dep"), ("tools", "tools")):
        ids = spec.get(key) or []
        out += [f"  {label + ':':<12}{aid}" for aid in ([ids] if isinstance(ids, str) else ids)]
    out += [f"  {'env:':<12}{k}={v}" for k, v in sorted(spec.get("env", {}).items())]
    for name, prog in sorted(spec.get("programs", {}).items()):
        first = (str(prog.get("version", "")).splitlines() or [""])[0]
        out.append(f"  {'program:':<12}{name}  {prog.get('path')}  {first}")
    for name, lib in sorted(spec.get("libraries", {}).items()):
        out.append(f"  {'library:':<12}{name}  {lib.get('path')}")
    packages: dict[str, Any] = spec["packages"] if isinstance(spec.get("packages"), dict) else {}
    for name, pkg in sorted(packages.items()):
        pkg = pkg if isinstance(pkg, dict) else {}
        files: list[Any] = pkg["files"] if isinstance(pkg.get("files"), list) else []
        out.append(f"  {'package:':<12}{name} {pkg.get('version')} ({pkg.get('manager')},"
                   f" {pkg.get('arch')}, {len(files)} files)")
    shown = {"kind", "name", "version", "family", "sources", "deps", "build_deps", "tools",
             "env", "programs", "libraries", "script", *(["packages"] if packages else [])}
    for key in sorted(set(spec) - shown):
        out.append(f"  {key + ':':<12}{json.dumps(spec[key], sort_keys=True)}")
    if spec.get("script"):
        out.append("  script:")
        out += [f"    {line}" for line in str(spec["script"]).splitlines()]
    return out


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

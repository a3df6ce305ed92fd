"""What `hdenv show` prints, from the facts `shell/showing.py` gathers.

Pure formatting with builtins only: the full program (`cli/plain.py`) and the
shell function's `python -I -S` path (`shell/fastload.py`) print the same text
from the same code.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def show_header(description: str, ref: str, changes: list[dict[str, str]]) -> str:
    """`module show`'s part: what it is and what loading it does."""
    lines = [f"{ref}: {description}" if description else ref, "loading it:"]
    width = max((len(c["variable"]) for c in changes), default=0)
    lines += [f"  {c['action']:<8} {c['variable']:<{width}}  {c['value']}" for c in changes]
    return "\n".join(lines) + "\n"


def show_text(header: str, info: dict[str, Any]) -> str:
    """All of `hdenv show REF` (without --json): `show_header`'s head, then the facts."""
    from .sanitize import printable

    return printable(header + format_show(info)) + "\n"


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
        import json  # only for a field no spec of today has: `re` and `enum` cost ms

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

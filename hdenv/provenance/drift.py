"""Host drift: how this machine's host software differs from what a host artifact recorded.

A host artifact records, per program, the real file it resolved to, that
file's sha256 and its version output. Here each recorded file is probed again
(through the host capture cache, so an unchanged file costs a stat). When the
file is gone, what the program's *name* resolves to on PATH is shown instead:
that is what a user would get, and what `--allow-host-drift` captures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import HdenvError, UserError
from ..store.layout import Store
from ..store.verify import host_file_drift


@dataclass(frozen=True)
class Drift:
    name: str  # the host artifact's name (gcc)
    program: str
    recorded: str
    here: str

    def line(self) -> str:
        return f"{self.name}: {self.program}: recorded {self.recorded}; here {self.here}"


def _first(text: str) -> str:
    return text.splitlines()[0] if text else "?"


def _here_by_name(program: str) -> str:
    from ..build import host  # here: see host_drift

    try:
        real = str(host.resolve_program(program))
    except UserError:
        return f"no {program} on PATH"
    return f"{_first(host.version_output(program, real))!r} ({real})"


def _entries(spec: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, description) of a host spec's `programs` or `libraries` that have the shape
    hdenv writes; a spec from a bundle or another store may not (its hash says only that
    it is the spec that was sent, not that it is well formed)."""
    table = spec.get(key)
    if not isinstance(table, dict):
        return []
    return sorted((str(k), v) for k, v in table.items() if isinstance(v, dict))


def _malformed(spec: dict[str, Any]) -> list[str]:
    return [key for key in ("programs", "libraries") if key in spec and (
        not isinstance(spec[key], dict)
        or not all(isinstance(v, dict) for v in spec[key].values()))]


def host_drift(store: Store, spec: dict[str, Any]) -> list[Drift]:
    """Every program of a host spec that differs here (name, path, version or bytes).

    `build.host` (with the ELF reader and link audit under it) is imported here, not
    at the top: `reproduce` of a bundle without host software never needs it, and
    importing it was 10 ms of the command's start (median of 30 starts).
    """
    from ..build import host

    out: list[Drift] = []
    cache = host.HostCache(store)
    name = str(spec.get("name"))
    for key in _malformed(spec):
        out.append(Drift(name, key, "a table of descriptions", "something else: the host"
                         " spec is malformed (damaged, or not written by hdenv)"))
    for prog, info in _entries(spec, "programs"):
        path = str(info.get("path", ""))
        version = str(info.get("version", ""))
        recorded = f"{_first(version)!r} ({path})"
        if not os.path.isfile(path):
            out.append(Drift(name, prog, recorded, f"{path} is missing; {_here_by_name(prog)}"))
            continue
        st = os.stat(path)
        digest, now = cache.lookup(path, prog, st) or cache.probe(path, prog)
        if now != version:
            out.append(Drift(name, prog, recorded, f"{_first(now)!r} ({path})"))
        elif info.get("sha256") and digest != info["sha256"]:
            out.append(Drift(name, prog, f"sha256 {info['sha256'][:16]}... ({path})",
                             f"sha256 {digest[:16]}... (same version output)"))
    for lib, info in _entries(spec, "libraries"):
        path = str(info.get("path", ""))
        if not os.path.isfile(path):
            out.append(Drift(name, lib, path, f"{path} is missing"))
        elif info.get("sha256") and cache.digest(path) != info["sha256"]:
            out.append(Drift(name, lib, f"sha256 {info['sha256'][:16]}... ({path})",
                             f"sha256 {cache.digest(path)[:16]}..."))
    cache.save()
    return out


def artifact_drift(store: Store, aid: str) -> list[str]:
    """`hdenv verify`'s host check for one artifact, one line per finding.

    A changed version or a missing program says both sides; when every
    program still reports what was recorded, the byte hashes kept in the
    metadata tell a rebuilt-in-place file (same version, other bytes).
    """
    try:
        meta = store.artifact_meta(aid)
    except (HdenvError, OSError, ValueError):
        return []  # damaged or missing metadata is verify's own finding
    if meta.get("kind") != "host":
        return []
    try:
        spec = store.read_spec(aid.rsplit("/", 1)[1])
    except (HdenvError, OSError, ValueError):
        return []
    drifts = host_drift(store, spec)
    if drifts:
        return [f"{aid}: host drift: {d.line()}" for d in drifts]
    return host_file_drift(store, aid)

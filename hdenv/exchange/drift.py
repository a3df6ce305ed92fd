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

from ..build import host
from ..errors import UserError
from ..store.artifacts import runtime_closure
from ..store.layout import Store


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
    try:
        real = str(host.resolve_program(program))
    except UserError:
        return f"no {program} on PATH"
    return f"{_first(host.version_output(program, real))!r} ({real})"


def host_drift(store: Store, spec: dict[str, Any]) -> list[Drift]:
    """Every program of a host spec that differs here (name, path, version or bytes)."""
    out: list[Drift] = []
    cache = host.HostCache(host.cache_path(store))
    name = str(spec.get("name"))
    for prog, info in sorted(spec.get("programs", {}).items()):
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
    cache.save()
    return out


def verify_drift(store: Store, ref: str | None) -> list[str]:
    """`hdenv verify`'s host check: drift of every host artifact in scope, one line each."""
    if ref is None:
        targets = store.list_artifacts()
    else:
        resolved = store.resolve(ref)
        if resolved.kind == "artifact":
            targets = runtime_closure(store, [resolved.ident])
        else:
            targets = list(store.read_spec(resolved.ident).get("artifacts", []))
    problems = []
    for aid in targets:
        try:
            meta = store.artifact_meta(aid)
        except UserError:
            continue  # missing artifacts are verify's own finding
        if meta.get("kind") != "host":
            continue
        spec = store.read_spec(aid.rsplit("/", 1)[1])
        problems += [f"{aid}: host drift: {d.line()}" for d in host_drift(store, spec)]
    return problems

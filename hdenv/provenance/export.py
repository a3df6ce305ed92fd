"""`hdenv export REF`: which state REF names, with this machine's facts, as a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..exchange.bundle import ExportResult, Log, write_bundle
from ..profile.profiles import list_generations, names_of
from ..store.layout import Store
from .hostfacts import host_facts


def bundle_root(store: Store, ref: str) -> dict[str, Any]:
    """{kind, hash[, id | name, generation]}: a profile keeps the name it is known by."""
    resolved = store.resolve(ref)
    hash_ = resolved.ident.rsplit("/", 1)[-1]
    root: dict[str, Any] = {"kind": resolved.kind, "hash": hash_}
    if resolved.kind == "artifact":
        root["id"] = resolved.ident
        return root
    if resolved.name is not None:
        gens = [g.number for g in list_generations(store, resolved.name) if g.hash == hash_]
        root["name"], root["generation"] = resolved.name, max(gens, default=None)
    else:
        named = names_of(store, hash_)
        if named:
            root["name"], root["generation"] = named[-1][0], named[-1][1]
    return root


def export(store: Store, ref: str, out: Path, *, with_sources: bool = False,
           with_artifacts: bool = False, mirrors: list[str] | None = None,
           log: Log | None = None) -> ExportResult:
    return write_bundle(store, bundle_root(store, ref), out, host=host_facts(),
                        with_sources=with_sources, with_artifacts=with_artifacts,
                        mirrors=mirrors, log=log)

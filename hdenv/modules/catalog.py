"""What a modulefile tree covers, read from the store.

Without REFs: every generation of every named profile and every artifact
they contain. With REFs: those profiles (a NAME means all its generations,
NAME/N one of them) and artifacts. Either way the runtime closure comes along
(modules `depends_on` it), and so do the compilers and MPIs the artifacts were
built with: their modules are the doors into the hierarchy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..profile.profiles import list_generations, names_of
from ..store.fsutil import read_json
from ..store.layout import META_DIR, PROFILE_META, Store, split_id
from ..store.variants import spec_traits
from .hierarchy import Node, ProfileNode

OPENER_FAMILIES = ("compiler", "mpi")


@dataclass
class Catalog:
    nodes: dict[str, Node]
    profiles: list[ProfileNode]
    specs: dict[str, dict[str, Any]]  # artifact id -> spec
    metas: dict[str, dict[str, Any]]  # artifact id -> artifact.json
    profile_metas: dict[str, dict[str, Any]]  # profile hash -> profile.json


def _profile_generations(store: Store, ref: str) -> list[ProfileNode]:
    resolved = store.resolve(ref)
    if resolved.kind != "profile":
        return []
    if resolved.name is not None:
        gens = list_generations(store, resolved.name)
        if "/" in ref:  # NAME/N: that generation only
            gens = [g for g in gens if g.hash == resolved.ident and str(g.number) ==
                    str(int(ref.partition("/")[2]))]
        return [ProfileNode(resolved.name, g.number, g.hash, g.current) for g in gens]
    named = names_of(store, resolved.ident)
    if not named:
        raise UserError(f"profile {resolved.ident} has no name; modules are named after"
                        " profiles (NAME/GENERATION): give a name or an artifact id")
    return [ProfileNode(n, g, resolved.ident, c) for n, g, c in named]


def _select(store: Store, refs: list[str]) -> tuple[list[ProfileNode], list[str]]:
    profiles: list[ProfileNode] = []
    artifacts: list[str] = []
    if not refs:
        for name in store.list_names():
            profiles.extend(ProfileNode(name, g.number, g.hash, g.current)
                            for g in list_generations(store, name))
    for ref in refs:
        resolved = store.resolve(ref)
        if resolved.kind == "artifact":
            artifacts.append(resolved.ident)
        else:
            profiles.extend(_profile_generations(store, ref))
    unique = {(p.name, p.generation): p for p in profiles}
    present = [p for _k, p in sorted(unique.items()) if store.has_profile(p.hash)]
    return present, artifacts


def _dep_ids(spec: dict[str, Any]) -> list[str]:
    return [*spec.get("deps", []), *spec.get("build_deps", [])]


def collect(store: Store, refs: list[str]) -> Catalog:
    """Read everything the tree needs, resolving REFs first (bad input changes nothing)."""
    profiles, roots = _select(store, refs)
    profile_metas: dict[str, dict[str, Any]] = {}
    for prof in profiles:
        if prof.hash not in profile_metas:
            meta = read_json(store.profile_dir(prof.hash) / META_DIR / PROFILE_META)
            profile_metas[prof.hash] = meta
            roots.extend(meta.get("artifacts", []))
    specs: dict[str, dict[str, Any]] = {}
    metas: dict[str, dict[str, Any]] = {}
    todo = list(dict.fromkeys(roots))
    while todo:
        aid = todo.pop()
        if aid in specs or not store.has_artifact(aid):
            continue
        metas[aid] = store.artifact_meta(aid)
        specs[aid] = read_json(store.artifact_dir(aid) / META_DIR / "spec.json")
        todo.extend(metas[aid].get("runtime_deps", []))
        for dep in _dep_ids(specs[aid]):
            if store.has_artifact(dep) and _family(store, dep, specs) in OPENER_FAMILIES:
                todo.append(dep)
    nodes = {aid: _node(aid, specs, metas, store) for aid in specs}
    return Catalog(nodes, profiles, specs, metas, profile_metas)


def _family(store: Store, aid: str, specs: dict[str, dict[str, Any]]) -> str | None:
    spec = specs.get(aid)
    if spec is None:
        spec = read_json(store.artifact_dir(aid) / META_DIR / "spec.json")
    family = spec.get("family")
    return family if isinstance(family, str) else None


def _node(aid: str, specs: dict[str, dict[str, Any]], metas: dict[str, dict[str, Any]],
          store: Store) -> Node:
    spec = specs[aid]
    name, version, _hash = split_id(aid)
    deps = [d for d in _dep_ids(spec) if d in specs]
    family = spec.get("family")
    return Node(
        id=aid, name=name, version=version,
        family=family if isinstance(family, str) else None,
        compilers=tuple(sorted(d for d in deps if specs[d].get("family") == "compiler")),
        mpis=tuple(sorted(d for d in deps if specs[d].get("family") == "mpi")),
        runtime_deps=tuple(sorted(d for d in metas[aid].get("runtime_deps", []) if d in specs)),
        created=_installed(store, aid),
        traits=spec_traits(spec),
    )


def _installed(store: Store, aid: str) -> str:
    """When the artifact appeared here, sortable: its metadata is written last.

    `created` in artifact.json has whole seconds, too coarse to tell apart two
    variants built one after the other.
    """
    return f"{os.stat(store.artifact_meta_path(aid)).st_mtime_ns:020d}"

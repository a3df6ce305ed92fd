"""Turn a rendered stack into specs and artifact ids (the Merkle DAG).

Planning never builds: host artifacts are described (not captured) and source
keys are computed, so `--dry-run` and the no-op build are cheap. Identical
specs from different variants collapse into one node, which is what makes a
matrix share every package that does not depend on the varying value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..graphs import postorder
from ..store.artifacts import artifact_id
from ..store.layout import Store
from ..store.sources import SourceStore
from . import host
from .stackfile import PackagePlan, ProfilePlan, Stack, Variant


@dataclass
class Node:
    """One artifact to have: a build, or a host capture."""

    id: str
    spec: dict[str, Any]
    kind: str  # "build" or "host"
    deps: list[str] = field(default_factory=list)  # ids needed at run time (and build time)
    build_deps: list[str] = field(default_factory=list)  # ids needed at build time only
    programs: list[str] = field(default_factory=list)  # host: what to capture
    source_hints: list[dict[str, Any]] = field(default_factory=list)
    line: int = 0
    host: host.HostRequest | None = None  # host: what to capture
    description: str = ""  # from the stack file; kept beside the spec, never in it
    about: dict[str, str] = field(default_factory=dict)  # help, homepage (the same)
    variant: dict[str, Any] = field(default_factory=dict)  # matrix values (first variant)
    slurm: dict[str, Any] = field(default_factory=dict)  # batch resources, not in the spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Node:
        """A build node from a stored spec alone: what a compute node gets to build."""
        return cls(artifact_id(spec), spec, "build", deps=list(spec.get("deps", [])),
                   build_deps=list(spec.get("build_deps", [])))

    @property
    def inputs(self) -> list[str]:
        """Artifacts that must exist before this one can be built."""
        tools = [self.spec["tools"]] if self.spec.get("tools") else []
        return self.deps + self.build_deps + tools


@dataclass
class PlannedProfile:
    plan: ProfilePlan
    roots: list[str]  # artifact ids named by the profile; their runtime closure comes along


@dataclass
class Plan:
    stack: Stack | None  # None: made from stored specs (`hdenv reproduce`), not a stack file
    nodes: dict[str, Node]
    profiles: list[PlannedProfile]
    tools_id: str

    def order(self) -> list[str]:
        """Node ids, dependencies first (deterministic)."""
        return postorder(sorted(self.nodes),
                         lambda nid: [d for d in sorted(self.nodes[nid].inputs)
                                      if d in self.nodes])

    def runtime_closure(self, roots: list[str]) -> list[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            nid = stack.pop()
            if nid not in seen:
                seen.add(nid)
                stack.extend(self.nodes[nid].deps)
        return sorted(seen)


def plan_stack(stack: Stack, store: Store, sources: SourceStore, *,
               host_identity: str = "version") -> Plan:
    nodes: dict[str, Node] = {}
    tools = host.basic_tools_request(identity=host_identity)
    tools_spec = host.describe(store, tools, search_path=host.SYSTEM_PATH)[0]
    tools_id = artifact_id(tools_spec)
    nodes[tools_id] = Node(tools_id, tools_spec, "host", programs=list(tools.programs),
                           host=tools)
    host_ids: dict[str, str] = {}
    for decl in stack.hosts.values():
        request = host.HostRequest(
            decl.name, tuple(decl.programs), tuple(decl.libraries), decl.family, decl.version,
            decl.version_from, tuple(sorted(decl.env.items())), tuple(decl.pkgconfig),
            host_identity, tuple(decl.packages))
        try:
            spec = host.describe(store, request)[0]
        except UserError as e:
            if e.file is not None:
                raise
            raise UserError(f"host.{decl.name}: {e.message}", file=str(stack.path),
                            line=decl.line) from None
        hid = artifact_id(spec)
        host_ids[decl.name] = hid
        nodes[hid] = Node(hid, spec, "host", programs=list(decl.programs), line=decl.line,
                          host=request)
    profiles: list[PlannedProfile] = []
    for variant in stack.variants:
        ids = _plan_variant(stack, variant, host_ids, tools_id, nodes, sources)
        for pplan in variant.profiles:
            roots = [ids[p] if p in ids else host_ids[p] for p in pplan.packages]
            profiles.append(PlannedProfile(pplan, roots))
    names = [p.plan.name for p in profiles]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"profile name(s) {', '.join(dupes)} produced twice", file=str(stack.path))
    return Plan(stack, nodes, profiles, tools_id)


def _plan_variant(stack: Stack, variant: Variant, host_ids: dict[str, str], tools_id: str,
                  nodes: dict[str, Node], sources: SourceStore) -> dict[str, str]:
    ids: dict[str, str] = {}

    def id_of(name: str) -> str:
        return host_ids[name] if name in host_ids else ids[name]

    # dependencies first (the order the stack's check found): an id needs theirs
    for name in variant.order:
        ids[name] = _plan_package(stack, variant.packages[name], id_of, tools_id, nodes, sources)
    for aid in ids.values():  # progress names variants apart by these (`zstd [gcc]`)
        if not nodes[aid].variant:
            nodes[aid].variant = dict(variant.values)
    return ids


def _plan_package(stack: Stack, pkg: PackagePlan, id_of: Any, tools_id: str,
                  nodes: dict[str, Node], sources: SourceStore) -> str:
    deps = sorted({id_of(d) for d in pkg.deps})
    build_deps = sorted({id_of(d) for d in pkg.build_deps} - set(deps))
    source_specs = []
    hints = []
    for decl in pkg.sources:
        key = sources.key_for(decl, stack.base_dir)
        entry: dict[str, Any] = {"key": key, "strip": decl.strip, "target": decl.target}
        if decl.kept_name():
            entry["filename"] = decl.kept_name()
        if not decl.unpack:
            entry["unpack"] = False
        source_specs.append(entry)
        hints.append({"key": key, "url": decl.url, "git": decl.git, "filename": decl.filename})
    patches = []
    for decl in pkg.patches:
        key = sources.key_for(decl, stack.base_dir)
        patches.append(key)
        hints.append({"key": key, "url": decl.url, "git": None, "filename": decl.filename})
    spec = {
        "kind": "build",
        "name": pkg.name,
        "version": pkg.version,
        "sources": source_specs,
        **({"patches": patches} if patches else {}),
        "deps": deps,
        "build_deps": build_deps,
        "tools": tools_id,
        "env": dict(sorted(pkg.env.items())),
        "script": pkg.script,
        # a check is part of what the build does (as Nix's checkPhase), but only when
        # there is one, so that packages without checks keep their ids
        **({"checks": list(pkg.checks)} if pkg.checks else {}),
    }
    aid = artifact_id(spec)
    if aid not in nodes:
        nodes[aid] = Node(aid, spec, "build", deps=deps, build_deps=build_deps,
                          source_hints=hints, line=pkg.line, description=pkg.description,
                          slurm=pkg.slurm, about=pkg.about)
    return aid

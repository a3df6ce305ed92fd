"""Where each module goes in an Lmod hierarchy, and what it is called.

Everything here is decided before a file is written, from plain data, so the
rules can be tested without a store:

- **Levels.** `Core` holds compilers (`family = "compiler"`), named profiles and
  whatever was built without a compiler. An artifact built with a compiler
  (a `family = "compiler"` artifact among its deps or build-deps) sits at
  `Compiler/<compiler>/<version>`; one built with an MPI (`family = "mpi"`)
  at `MPI/<compiler>/<version>/<mpi>/<version>` (`MPI/<mpi>/<version>` when no
  compiler is involved). An artifact without a compiler of its own takes the
  level of its runtime dependencies, so that its `depends_on` can find them.
  An MPI sits at each compiler level something was built with it (a host MPI
  serves several compilers) and opens the MPI level below it. Nothing inside
  the tree ever re-adds `Core` to MODULEPATH.
- **Names.** `NAME/VERSION` (the naming itself is `store/variants.py`, shared
  with `load`'s choices). When two artifacts would take one name and version
  at one level (the same zlib with other CFLAGS), each gets a suffix saying
  what sets it apart, `zlib/1.2.13-O1` against `zlib/1.2.13-O3` (the value of
  the variable that differs, or the dependency one has and the others lack);
  only when that does not tell them apart, a short hash suffix,
  `zlib/1.2.13-abc1234` (7 characters, more if those collide).
- **Defaults.** Only where a name has several modules at a level, and then in
  one way only: for a profile its current generation (what `hdenv load NAME`
  loads); for artifacts the highest version, and among hash-suffixed variants
  of it the newest built.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import UserError
from ..store.variants import hash_suffixes, variant_suffixes, version_key

Level = tuple[str, ...]
"""() is Core; ("C", compiler id); ("M", compiler id or "", mpi id)."""

CORE: Level = ()
_SAFE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+~-]*$")


@dataclass(frozen=True)
class Node:
    """An artifact as the hierarchy sees it."""

    id: str
    name: str
    version: str
    family: str | None = None
    compilers: tuple[str, ...] = ()  # direct deps/build-deps with family "compiler"
    mpis: tuple[str, ...] = ()  # direct deps/build-deps with family "mpi"
    runtime_deps: tuple[str, ...] = ()
    created: str = ""
    traits: tuple[str, ...] = ()  # "dep:NAME", "env:KEY=VALUE": what may tell variants apart


@dataclass(frozen=True)
class ProfileNode:
    """One generation of a named profile."""

    name: str
    generation: int
    hash: str
    current: bool


@dataclass
class Placement:
    """One module: an artifact at one level, or a profile generation in Core."""

    level: Level
    kind: str  # "artifact" or "profile"
    ident: str  # artifact id or profile hash
    name: str
    version: str
    opens: Level | None = None  # the level this module adds to MODULEPATH
    depends: list[str] = field(default_factory=list)  # full names of runtime deps
    generation: int | None = None

    @property
    def full_name(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass
class Layout:
    placements: list[Placement]
    level_dirs: dict[Level, str]  # relative to the tree: "Core", "Compiler/gcc/12.2.0", ...
    defaults: dict[tuple[Level, str], str]  # (level, name) -> default version
    warnings: list[str]


def _check(node: Node) -> None:
    for what, value in (("name", node.name), ("version", node.version)):
        if not _SAFE.match(value):
            raise UserError(f"artifact {node.id}: its {what} {value!r} cannot be a module"
                            " name (letters, digits and . _ + ~ - only)")


class _Planner:
    def __init__(self, nodes: dict[str, Node]):
        self.nodes = nodes
        self.warnings: list[str] = []
        self._ctx: dict[str, tuple[str, str]] = {}

    def _pick(self, aid: str, what: str, ids: Iterable[str]) -> str:
        choices = sorted(set(ids))
        if len(choices) > 1:
            self.warnings.append(f"{aid} is built with several {what}s"
                                 f" ({', '.join(choices)}): placed under {choices[0]}")
        return choices[0] if choices else ""

    def context(self, aid: str) -> tuple[str, str]:
        """(compiler id or "", mpi id or "") that decide where `aid` sits."""
        if aid in self._ctx:
            return self._ctx[aid]
        node = self.nodes[aid]
        if node.family == "compiler":
            self._ctx[aid] = ("", "")
            return self._ctx[aid]
        inherited = [self.context(d) for d in node.runtime_deps if d in self.nodes]
        compiler = self._pick(aid, "compiler", [c for c in node.compilers if c in self.nodes])
        mpi = "" if node.family == "mpi" else self._pick(
            aid, "MPI", [m for m in node.mpis if m in self.nodes]
            or [m for _c, m in inherited if m])
        if not compiler and mpi:
            compiler = self.context(mpi)[0]
        if not compiler:
            compiler = self._pick(aid, "compiler", [c for c, _m in inherited if c])
        self._ctx[aid] = (compiler, mpi)
        return self._ctx[aid]

    def levels(self, aid: str, users: dict[str, set[str]]) -> list[Level]:
        node = self.nodes[aid]
        compiler, mpi = self.context(aid)
        if node.family == "compiler":
            return [CORE]
        if node.family == "mpi":
            compilers = users.get(aid, set()) | ({compiler} if compiler else set())
            return sorted(("C", c) if c else CORE for c in compilers) or [CORE]
        if mpi:
            return [("M", compiler, mpi)]
        return [("C", compiler)] if compiler else [CORE]


def _name_modules(placements: list[Placement], nodes: dict[str, Node]) -> None:
    groups: dict[tuple[Level, str, str], list[Placement]] = defaultdict(list)
    for p in placements:
        groups[(p.level, p.name, p.version)].append(p)
    for group in groups.values():
        clashing = [p for p in group if p.kind == "artifact"]
        if len(group) < 2 or not clashing:
            continue
        named = variant_suffixes({p.ident: nodes[p.ident].traits for p in clashing}) \
            if len(clashing) == len(group) else None
        short = hash_suffixes([p.ident.rsplit("/", 1)[1] for p in clashing])
        for p in clashing:
            suffix = named[p.ident] if named else short[p.ident.rsplit("/", 1)[1]]
            p.version = f"{p.version}-{suffix}"


def _defaults(placements: list[Placement], nodes: dict[str, Node],
              profiles: dict[str, ProfileNode]) -> dict[tuple[Level, str], str]:
    by_name: dict[tuple[Level, str], list[Placement]] = defaultdict(list)
    for p in placements:
        by_name[(p.level, p.name)].append(p)
    out = {}
    for key, group in by_name.items():
        if len(group) < 2:
            continue
        gens = [p for p in group if p.kind == "profile"]
        if gens:
            current = [p for p in gens if profiles[p.full_name].current]
            chosen = current[0] if current else max(gens, key=lambda p: p.generation or 0)
        else:
            chosen = max(group, key=lambda p: (version_key(nodes[p.ident].version),
                                               nodes[p.ident].created, p.ident))
        out[key] = chosen.version
    return out


def plan_layout(nodes: dict[str, Node], profiles: list[ProfileNode]) -> Layout:
    """Every module of the tree, its level, name, dependencies and defaults."""
    for node in nodes.values():
        _check(node)
    planner = _Planner(nodes)
    users: dict[str, set[str]] = defaultdict(set)  # mpi id -> compilers built with it
    for aid in sorted(nodes):
        compiler, mpi = planner.context(aid)
        if mpi:
            users[mpi].add(compiler)
    placements: list[Placement] = []
    for aid in sorted(nodes):
        node = nodes[aid]
        for level in planner.levels(aid, users):
            placements.append(Placement(level, "artifact", aid, node.name, node.version))
    by_profile = {}
    for prof in profiles:
        placements.append(Placement(CORE, "profile", prof.hash, prof.name, str(prof.generation),
                                    generation=prof.generation))
        by_profile[f"{prof.name}/{prof.generation}"] = prof
    core_names = {p.name for p in placements if p.level == CORE and p.kind == "artifact"}
    for name in sorted(core_names & {p.name for p in profiles}):
        planner.warnings.append(f"profile {name} and an artifact share the module name"
                                f" {name} in Core; `module load {name}` loads the profile")
    _name_modules(placements, nodes)
    where = {(p.ident, p.level): p for p in placements if p.kind == "artifact"}
    for p in placements:
        if p.kind != "artifact":
            continue
        node = nodes[p.ident]
        if node.family == "compiler":
            p.opens = ("C", p.ident)
        elif node.family == "mpi":
            p.opens = ("M", p.level[1] if p.level else "", p.ident)
        p.depends = _depends(p, node, where, planner.warnings)
    levels = {p.level for p in placements} | {p.opens for p in placements if p.opens}
    level_dirs = {level: _level_dir(level, where) for level in levels}
    return Layout(placements, level_dirs, _defaults(placements, nodes, by_profile),
                  planner.warnings)


def _level_dir(level: Level, where: dict[tuple[str, Level], Placement]) -> str:
    """A level's directory, named after the modules that open it."""
    if level == CORE:
        return "Core"
    if level[0] == "C":
        comp = where[(level[1], CORE)]
        return f"Compiler/{comp.name}/{comp.version}"
    _tag, compiler, mpi = level
    if not compiler:
        mod = where[(mpi, CORE)]
        return f"MPI/{mod.name}/{mod.version}"
    comp = where[(compiler, CORE)]
    mod = where[(mpi, ("C", compiler))]
    return f"MPI/{comp.name}/{comp.version}/{mod.name}/{mod.version}"


def chain(level: Level) -> list[Level]:
    """The levels on MODULEPATH while a module of `level` is loaded, nearest first."""
    if level == CORE:
        return [CORE]
    if level[0] == "C":
        return [level, CORE]
    return [level, ("C", level[1]), CORE] if level[1] else [level, CORE]


def _depends(p: Placement, node: Node, where: dict[tuple[str, Level], Placement],
             warnings: list[str]) -> list[str]:
    out = []
    for dep in node.runtime_deps:
        found = next((where[(dep, lv)] for lv in chain(p.level) if (dep, lv) in where), None)
        if found is None:
            warnings.append(f"{node.id}: its runtime dependency {dep} is not in a module"
                            " its level can see; its module does not load it")
            continue
        out.append(found.full_name)
    return out

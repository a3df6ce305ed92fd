"""Why two specs, artifacts or profiles differ, and the dependency graph as DOT.

Ids form a Merkle DAG, so "your hash differs from mine" always has a root
cause a few levels down: a CFLAGS value, a source key, a host compiler's
sha256. `diff` walks both DAGs in parallel and, for every dependency whose id
changed, explains that change recursively, so the answer is one command away:

    app: env.CFLAGS '-O2' -> '-O3'
    app: dep zlib/1.2.13/abcdefgh.. -> zlib/1.2.13/ijklmnop.. (zlib: sources[0].key ...)

`spec_diff` is the store-free part, reusable by `hdenv build --dry-run`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..store.fsutil import read_json
from ..store.hashing import HASH_CHARS, is_hash_like
from ..store.layout import META_DIR, PROFILE_META, Store, split_id

MISSING: Any = object()
MAX_DEPTH = 12
LIST_LABELS = {"deps": "dep", "build_deps": "build dep", "tools": "tools",
               "artifacts": "artifact"}


# -- values -----------------------------------------------------------------------
def is_artifact_id(value: Any) -> bool:
    if not isinstance(value, str) or value.count("/") != 2:
        return False
    hash_ = value.rsplit("/", 1)[1]
    return len(hash_) == HASH_CHARS and is_hash_like(hash_)


def short(value: str) -> str:
    """Ids and source keys shortened for humans; unique enough to compare two values."""
    if is_artifact_id(value):
        return value[: value.rfind("/") + 9] + ".."
    for scheme in ("sha256:", "git:"):
        if value.startswith(scheme) and len(value) > len(scheme) + 16:
            return value[: len(scheme) + 12] + ".."
    return value


def show(value: Any) -> str:
    if isinstance(value, str):
        text = short(value)
        return text if text != value else repr(value)
    return json.dumps(value, sort_keys=True)


# -- structural changes -----------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One difference at `path`; `old`/`new` is MISSING for an addition/removal."""

    path: str
    old: Any
    new: Any

    @property
    def is_id_change(self) -> bool:
        return is_artifact_id(self.old) and is_artifact_id(self.new)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _id_name(aid: str) -> str:
    return aid.split("/", 1)[0]


def _id_list_changes(path: str, old: list[str], new: list[str]) -> list[Change]:
    """Pair ids by NAME (then NAME/VERSION) so a rebuilt dependency reads as one change."""
    gone = [a for a in old if a not in new]
    came = [b for b in new if b not in old]
    out: list[Change] = []
    for key in (lambda i: i.rsplit("/", 1)[0], _id_name):
        for a in list(gone):
            match = [b for b in came if key(b) == key(a)]
            if len(match) == 1 and len([x for x in gone if key(x) == key(a)]) == 1:
                out.append(Change(path, a, match[0]))
                gone.remove(a)
                came.remove(match[0])
    out += [Change(path, a, MISSING) for a in gone]
    out += [Change(path, MISSING, b) for b in came]
    return sorted(out, key=lambda c: _id_name(c.old if c.old is not MISSING else c.new))


def field_changes(a: Any, b: Any, path: str = "") -> list[Change]:
    """Every leaf-level difference between two JSON values, with dotted/indexed paths."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[Change] = []
        for key in sorted(set(a) | set(b)):
            out += field_changes(a.get(key, MISSING), b.get(key, MISSING), _join(path, key))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if all(is_artifact_id(x) for x in [*a, *b]):
            return _id_list_changes(path, a, b)
        return _list_changes(path, a, b)
    return [Change(path, a, b)]


def _hunks(a: list[Any], b: list[Any]) -> list[tuple[str, int, int, int, int]]:
    """Where two lists differ, aligned on what they share (an inserted item is one change)."""
    keys_a = [json.dumps(x, sort_keys=True) for x in a]
    keys_b = [json.dumps(x, sort_keys=True) for x in b]
    matcher = difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False)
    return [op for op in matcher.get_opcodes() if op[0] != "equal"]


def _list_changes(path: str, a: list[Any], b: list[Any]) -> list[Change]:
    """Items paired where they line up, so one inserted source or patch is one change.

    Inside a replaced run the items are paired in order (a changed source key
    reads `sources[0].key A -> B`); what one side has beyond the other is an
    addition or a removal, indexed where it stands in its own list.
    """
    out: list[Change] = []
    for _tag, i1, i2, j1, j2 in _hunks(a, b):
        paired = min(i2 - i1, j2 - j1)
        for k in range(paired):
            out += field_changes(a[i1 + k], b[j1 + k], f"{path}[{i1 + k}]")
        out += [Change(f"{path}[{i}]", a[i], MISSING) for i in range(i1 + paired, i2)]
        out += [Change(f"{path}[{j}]", MISSING, b[j]) for j in range(j1 + paired, j2)]
    return out


def _text_change(path: str, old: str, new: str) -> str:
    """A multi-line value (a script): its first changed line, aligned as `diff` aligns.

    Lines are matched by content, not position, so one line inserted at the
    top is "line 1 added", not every later line changed.
    """
    la, lb = old.splitlines(), new.splitlines()
    hunks = _hunks(la, lb)
    if not hunks:
        return f"{path}: whitespace at line ends differs"
    changed = sum(max(i2 - i1, j2 - j1) for _tag, i1, i2, j1, j2 in hunks)
    _tag, i1, i2, j1, j2 = hunks[0]
    more = f" (+{changed - 1} more changed lines)" if changed > 1 else ""
    if i1 == i2:
        return f"{path} line {j1 + 1} added: {show(lb[j1])}{more}"
    if j1 == j2:
        return f"{path} line {i1 + 1} removed: {show(la[i1])}{more}"
    return f"{path} line {i1 + 1}: {show(la[i1])} -> {show(lb[j1])}{more}"


def _label(path: str) -> str:
    base = path.split("[", 1)[0]
    return LIST_LABELS.get(base, path)


def describe(change: Change, why: str = "") -> str:
    """One human line for a change; `why` explains an id change (from the store)."""
    old, new = change.old, change.new
    if old is MISSING:
        return f"{_label(change.path)} added {show(new)}"
    if new is MISSING:
        return f"{_label(change.path)} removed {show(old)}"
    if change.is_id_change:
        return f"{_label(change.path)} {short(old)} -> {short(new)}{why}"
    if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
        return _text_change(change.path, old, new)
    return f"{change.path} {show(old)} -> {show(new)}"


def spec_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Which fields of spec `b` differ from spec `a`, one line each (no store needed)."""
    return [describe(c) for c in field_changes(a, b)]


# -- with the store: recursive explanations ----------------------------------------
class _Explainer:
    def __init__(self, store: Store):
        self.store = store
        self.memo: dict[tuple[str, str], list[str]] = {}

    def spec(self, aid: str) -> dict[str, Any] | None:
        try:
            spec: dict[str, Any] = self.store.read_spec(split_id(aid)[2])
        except UserError:
            return None
        return spec

    def explain(self, old: str, new: str, depth: int = 0) -> list[str]:
        """Lines (without the artifact's name) saying why `old` became `new`."""
        key = (old, new)
        if key not in self.memo:
            self.memo[key] = self._explain(old, new, depth)
        return self.memo[key]

    def _explain(self, old: str, new: str, depth: int) -> list[str]:
        sa, sb = self.spec(old), self.spec(new)
        if sa is None or sb is None:
            missing = old if sa is None else new
            return [f"spec of {short(missing)} is not in this store"]
        return [self.line(c, depth) for c in field_changes(sa, sb)]

    def line(self, change: Change, depth: int) -> str:
        if not change.is_id_change:
            return describe(change)
        if depth >= MAX_DEPTH:
            return describe(change, " (...)")
        inner = self.explain(change.old, change.new, depth + 1)
        why = f" ({_id_name(change.new)}: {'; '.join(inner)})" if inner else ""
        return describe(change, why)


def _profile_spec(store: Store, hash_: str) -> dict[str, Any]:
    """The stored profile spec, or what profile.json says when the spec is gone."""
    try:
        spec: dict[str, Any] = store.read_spec(hash_)
        return spec
    except UserError:
        meta: dict[str, Any] = read_json(store.profile_dir(hash_) / META_DIR / PROFILE_META)
        return {"kind": "profile", "artifacts": meta["artifacts"], "env": meta["env"],
                "family": meta["family"]}


def _diff_profiles(store: Store, ha: str, hb: str) -> list[str]:
    sa, sb = _profile_spec(store, ha), _profile_spec(store, hb)
    ex = _Explainer(store)
    changes = _id_list_changes("artifacts", sa["artifacts"], sb["artifacts"])
    changed = [c for c in changes if c.is_id_change]
    added = [c.new for c in changes if c.old is MISSING]
    removed = [c.old for c in changes if c.new is MISSING]
    options = [c for c in field_changes({**sa, "artifacts": []}, {**sb, "artifacts": []})]
    lines = [f"profile {ha[:8]}.. -> {hb[:8]}..: {len(changed)} changed, {len(added)} added, "
             f"{len(removed)} removed artifacts, {len(options)} option changes"]
    for c in changed:
        lines.append(f"changed {short(c.old)} -> {short(c.new)}")
        lines += [f"  {_id_name(c.new)}: {x}" for x in ex.explain(c.old, c.new)]
    lines += [f"added {a}" for a in added]
    lines += [f"removed {a}" for a in removed]
    lines += [f"profile {describe(c)}" for c in options]
    return lines


def diff(store: Store, ref_a: str, ref_b: str) -> list[str]:
    """Human lines explaining how B differs from A; [] when they are the same."""
    a, b = store.resolve(ref_a), store.resolve(ref_b)
    if a.kind != b.kind:
        raise UserError(f"cannot compare a {a.kind} ({ref_a}) with a {b.kind} ({ref_b})")
    if a.ident == b.ident:
        return []
    if a.kind == "profile":
        return _diff_profiles(store, a.ident, b.ident)
    name = _id_name(b.ident)
    return [f"{name}: {x}" for x in _Explainer(store).explain(a.ident, b.ident)]


# -- graph ------------------------------------------------------------------------
def _quote(text: str) -> str:
    """A DOT string literal; a newline becomes DOT's centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _edges_of(store: Store, aid: str) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """(spec, run/build deps, build-only deps) of an artifact, from its spec or its metadata."""
    spec = _Explainer(store).spec(aid)
    if spec is None:
        return None, list(store.artifact_meta(aid).get("runtime_deps", [])), []
    build_only = list(spec.get("build_deps", []))
    if spec.get("tools"):
        build_only.append(spec["tools"])
    return spec, list(spec.get("deps", [])), build_only


def _node_line(aid: str, spec: dict[str, Any] | None) -> str:
    name, version, hash_ = aid.split("/")
    kind = (spec or {}).get("kind", "build")
    label = f"{name}/{version}\n{hash_[:8]}"
    attrs = f"label={_quote(label)}"
    if kind == "host":
        attrs += ", style=filled, fillcolor=lightgrey"
    return f"  {_quote(aid)} [{attrs}];"


def graph_dot(store: Store, ref: str) -> str:
    """The dependency graph of REF as DOT: deps solid, build-only deps dashed."""
    resolved = store.resolve(ref)
    lines = ["digraph hdenv {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    if resolved.kind == "profile":
        roots = list(_profile_spec(store, resolved.ident)["artifacts"])
    else:
        roots = [resolved.ident]
    nodes, edges = _walk(store, roots)
    if resolved.kind == "profile":
        root_id = f"profile:{resolved.ident}"
        label = f"{resolved.name or 'profile'}\n{resolved.ident[:8]}"
        lines.append(f"  {_quote(root_id)} [label={_quote(label)}, shape=doubleoctagon];")
        needed = {dst for src, dst, _style in edges if src in roots and dst in roots}
        for aid in sorted(set(roots) - needed):
            lines.append(f"  {_quote(root_id)} -> {_quote(aid)};")
    for aid, spec in sorted(nodes.items()):
        lines.append(_node_line(aid, spec))
    for src, dst, style in sorted(edges):
        suffix = " [style=dashed]" if style == "build" else ""
        lines.append(f"  {_quote(src)} -> {_quote(dst)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _walk(
    store: Store, roots: Iterable[str]
) -> tuple[dict[str, dict[str, Any] | None], set[tuple[str, str, str]]]:
    nodes: dict[str, dict[str, Any] | None] = {}
    edges: set[tuple[str, str, str]] = set()
    stack = list(roots)
    while stack:
        aid = stack.pop()
        if aid in nodes:
            continue
        spec, run, build = _edges_of(store, aid)
        nodes[aid] = spec
        for dep in run:
            edges.add((aid, dep, "run"))
        for dep in build:
            edges.add((aid, dep, "build"))
        stack += run + build
    return nodes, edges

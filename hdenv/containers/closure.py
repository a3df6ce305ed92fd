"""What an image of a profile holds: the profile, its artifacts in dependency order, its env.

The artifacts come from the profile's own record (its sorted runtime
closure) and are ordered so that every artifact follows the artifacts it
needs at run time, ties broken by id: the same profile always gives the
same layer order, and the layers of a library come before those of the
programs that load it (as a registry's shared base layers would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError, UserError
from ..shell.fastload import Profile, apply
from ..store.fsutil import read_json
from ..store.layout import META_DIR, PROFILE_META, Store

# The PATH of an image before the profile's bin/ is put in front (Debian's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Part:
    """One artifact of the image: its id, where it is, and the store root it lives under."""

    ident: str
    path: Path
    store_root: Path
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "build"))


@dataclass
class Closure:
    """A profile and everything it needs from the store."""

    hash: str
    name: str | None
    generation: int | None
    path: Path  # the profile directory on this machine
    store_root: Path  # the store it lives in
    meta: dict[str, Any]  # profile.json
    parts: list[Part] = field(default_factory=list)  # dependency order

    def roots(self) -> list[Path]:
        """Every store root the image's paths come from (the profile's first)."""
        seen = dict.fromkeys([self.store_root] + [p.store_root for p in self.parts])
        return list(seen)


def _meta(store: Store, aid: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = store.artifact_meta(aid)
    except FileNotFoundError:
        raise StoreError(f"artifact {aid} of the profile is not in the store;"
                         " see `hdenv verify`") from None
    return found


def dependency_order(ids: list[str], deps: dict[str, list[str]]) -> list[str]:
    """`ids` with every artifact after its runtime dependencies; ties by id (Kahn's)."""
    present = set(ids)
    waiting = {a: {d for d in deps.get(a, []) if d in present} for a in ids}
    out: list[str] = []
    ready = sorted(a for a, w in waiting.items() if not w)
    while ready:
        a = ready.pop(0)
        out.append(a)
        for b in sorted(waiting):
            if a in waiting[b]:
                waiting[b].discard(a)
                if not waiting[b] and b not in out and b not in ready:
                    ready.append(b)
        ready.sort()
        waiting.pop(a, None)
    if len(out) != len(ids):  # a cycle cannot happen in a Merkle DAG; keep the rest by id
        out += sorted(set(ids) - set(out))
    return out


def collect(store: Store, ref: str) -> Closure:
    """The profile REF names and its runtime closure; UserError for an unknown REF."""
    found = store.resolve(ref)
    if found.kind != "profile":
        raise UserError(f"{ref} is an artifact, not a profile: pack a profile"
                        " (a name, NAME/N or a profile hash)")
    meta_path = found.path / META_DIR / PROFILE_META
    try:
        meta: dict[str, Any] = read_json(meta_path)
    except (OSError, ValueError) as e:
        raise StoreError(f"{meta_path}: damaged profile metadata ({e});"
                         " see `hdenv verify`") from None
    ids = [str(a) for a in meta.get("artifacts", [])]
    metas = {a: _meta(store, a) for a in ids}
    order = dependency_order(ids, {a: list(m.get("runtime_deps", [])) for a, m in metas.items()})
    generation = None
    _, _, number = ref.partition("/")
    if found.name is not None and number.isascii() and number.isdigit():
        generation = int(number)
    elif found.name is not None:
        with_gen = store.name_store(found.name)
        link = (with_gen or store).names / found.name / "current"
        try:
            number = link.readlink().name if link.is_symlink() else ""
        except OSError:
            number = ""
        generation = int(number) if number.isdigit() else None
    root = store.profile_store(found.ident) or store
    parts = []
    for aid in order:
        home = store.artifact_store(aid) or store
        parts.append(Part(aid, store.artifact_dir(aid), home.root, metas[aid]))
    return Closure(found.ident, found.name, generation, found.path, root.root, meta, parts)


def load_env(closure: Closure, base_path: str | None = None) -> dict[str, str]:
    """The variables `hdenv load` sets for the profile, over a PATH of `base_path`.

    The load path's own `apply` does the work, so PATH, MANPATH (with man's
    default kept), PKG_CONFIG_PATH, CMAKE_PREFIX_PATH and the profile's env
    are exactly what a shell would get.
    """
    env = {"PATH": base_path or DEFAULT_PATH}
    env_meta = closure.meta.get("env") or {}
    prof = Profile(closure.hash, closure.name, str(closure.path),
                   {str(k): str(v) for k, v in env_meta.items()}, closure.meta.get("family"))
    apply(env, prof)
    return dict(env)

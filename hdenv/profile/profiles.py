"""Profiles: specs and hashes, creating the farm atomically, names and generations.

A profile is identified by the hash of its spec (sorted artifact ids plus its
options), so the same inputs always give the same profile and a second creation
is a no-op. The farm is built under `store.tmp` and renamed into
`profiles/HASH`; a reader therefore sees either nothing or a complete profile.

Names (layout of ``names/NAME/``)::

    1 -> ../../profiles/HASH1      one relative symlink per generation (GC roots)
    2 -> ../../profiles/HASH2
    current -> 2                   which generation is current

The symlinks are the only state: a generation's number is its link name, its
hash the link's target, its date the link's own mtime. Every change is one
`rename` of a freshly made symlink, under the name's lock, so a killed hdenv
leaves the name either as it was or fully switched. `realpath(names/NAME/current)`
is the current profile directory (the fast load path relies on that).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import UserError
from ..store import fdtree, index, sharing
from ..store.fsutil import (
    atomic_write_json,
    file_lock,
    make_read_only,
    remove_tree,
)
from ..store.hashing import spec_hash
from ..store.index import current_number, generation_dates, generation_links
from ..store.layout import META_DIR, PROFILE_META, Store
from ..store.storedirs import symlink_at
from ..validate import profile_name_problem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .farm import FarmStats, Member
    from .growing import GrowingFarm

PROFILE_PLACEHOLDER = "@@HDENV_PROFILE@@"


# -- spec and hash ----------------------------------------------------------------
def profile_spec(
    artifacts: list[str],
    env: dict[str, str],
    family: str | None,
    *,
    exclude: list[str] | None = None,
    priority: list[str] | None = None,
    python_usage: bool = False,
    sticky: bool = False,
) -> dict[str, Any]:
    """The hashed description of a profile.

    `exclude` and `priority` enter the spec only when used, so a plain profile's
    spec is exactly the documented three fields (and other tools can write it).
    `exclude` is sorted (order is meaningless); `priority` keeps its order.
    """
    spec: dict[str, Any] = {
        "kind": "profile",
        "artifacts": sorted(set(artifacts)),
        "env": dict(sorted(env.items())),
        "family": family,
    }
    if exclude:
        spec["exclude"] = sorted(set(exclude))
    if priority:
        spec["priority"] = list(priority)
    if python_usage:
        spec["python_usage"] = True
    if sticky:  # only when used: other profiles' hashes stay as they were
        spec["sticky"] = True
    return spec


def profile_hash(spec: dict[str, Any]) -> str:
    return spec_hash(spec)


# -- creation ---------------------------------------------------------------------
def _members(store: Store, artifacts: list[str]) -> list[Member]:
    missing = [a for a in artifacts if not store.has_artifact(a)]
    if missing:
        raise UserError(f"profile needs artifacts that are not in the store: {', '.join(missing)}")
    from .farm import Member  # here: reading profiles (`show`, `list`) builds no farm

    return [Member(a, store.artifact_dir(a)) for a in artifacts]


def _render_env(env: dict[str, str], prefix: Path) -> dict[str, str]:
    return {k: v.replace(PROFILE_PLACEHOLDER, str(prefix)) for k, v in env.items()}


def _populate(farm: Path, final: Path, spec: dict[str, Any], hash_: str, store: Store,
              package: str | None = None, loaded_state: bool = False,
              farmed: FarmStats | None = None) -> None:
    """Fill the directory `farm` (to be renamed to `final`) with links and metadata.
    `farmed`: the links are there already (a grown farm: no Python among its members)."""
    from . import pyprofile  # here, as the farm: reading profiles needs neither
    from .farm import build_farm

    version = None
    if farmed is not None:
        stats = farmed
    else:
        members = _members(store, spec["artifacts"])
        version = pyprofile.single_python(members, spec.get("exclude", ()))
        keep_real = pyprofile.keep_real_dirs(version) if version else []
        stats = build_farm(
            farm, members, exclude=spec.get("exclude", ()), priority=spec.get("priority", ()),
            keep_real=keep_real,
        )
    python = pyprofile.setup_python(farm, final, version) if version else None
    if spec.get("python_usage"):
        if not version:
            raise UserError("python-usage = true, but the profile has no Python (bin/python3.X)")
        from ..usage import pyinstall

        pyinstall.install(farm / "lib" / f"python{version}" / "site-packages", hash_,
                          farm / "bin" / f"python{version}")
    meta = {
        "hash": hash_,
        "artifacts": spec["artifacts"],
        "env": _render_env(spec["env"], final),
        "family": spec["family"],
        "exclude": spec.get("exclude", []),
        "priority": spec.get("priority", []),
        "python": python,
        "python_usage": bool(spec.get("python_usage")),
        "sticky": bool(spec.get("sticky")),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "links": stats.links,
        **({"package": package} if package else {}),
        **({"loaded_state": True} if loaded_state else {}),
    }
    (farm / META_DIR).mkdir()
    atomic_write_json(farm / META_DIR / "spec.json", spec)
    atomic_write_json(farm / META_DIR / PROFILE_META, meta)


@contextlib.contextmanager
def growing(store: Store, spec: dict[str, Any]) -> Iterator[GrowingFarm | None]:
    """A farm of the profile `spec` to grow while its artifacts arrive (growing.py), for
    `create_profile`; None if the profile exists. What create_profile did not take (it
    gave up, or the run failed first) is removed when the block ends."""
    hash_ = profile_hash(spec)
    if spec.get("kind") != "profile" or store.has_profile(hash_):
        yield None
        return
    from ..store.tmpdirs import temp_dir
    from .farm import Member
    from .growing import GrowingFarm

    dest = temp_dir(store, f"profile-{hash_}-")
    try:
        yield GrowingFarm(dest, [Member(a, store.artifact_dir(a)) for a in spec["artifacts"]],
                          spec.get("exclude", ()))
    finally:
        remove_tree(dest)  # renamed into profiles/ by create_profile: nothing left here


def create_profile(store: Store, spec: dict[str, Any], package: str | None = None,
                   loaded_state: bool = False, grown: GrowingFarm | None = None) -> Path:
    """Make `profiles/HASH` exist for `spec` and return it (idempotent, atomic).

    `package` (an artifact id) marks the on-demand profile of a package loaded by name
    (shell/byname.py) in profile.json, `loaded_state` the one `loaded --hash` made
    (shell/statehash.py): gc keeps either while everything it holds is kept.

    Concurrent creators each build aside; the first rename wins and the others
    drop their copy, so no lock is needed and nobody sees a half-made farm.
    `grown`: the farm `growing` gave for this spec, used if it is complete.
    """
    if spec.get("kind") != "profile":
        raise UserError("not a profile spec")
    store.ensure()
    hash_ = profile_hash(spec)
    store.write_spec(hash_, spec)
    if store.has_profile(hash_):  # here, or upstream: then it is used from there
        return store.profile_dir(hash_)
    final = store.own_profile_dir(hash_)
    from ..store.tmpdirs import temp_dir

    farmed = grown.stats() if grown is not None and grown.members.keys() == set(
        spec["artifacts"]) and grown.exclude == list(spec.get("exclude", ())) else None
    aside = grown.dest if grown is not None and farmed is not None else temp_dir(
        store, f"profile-{hash_}-")
    try:
        _populate(aside, final, spec, hash_, store, package, loaded_state, farmed)
        make_read_only(aside, shared=store.shared)  # as artifacts: nobody edits a profile
        # into profiles/ through descriptors (storedirs): a symlink a member put there
        # meanwhile is refused, and no profile lands in (nor is chmod-ed in) its target
        with store.opened("tmp", aside.parent.name, create=False) as tmp_fd, \
                store.opened("profiles") as profiles_fd:
            _chmod_dir_at(tmp_fd, aside.name, sharing.new_dir_mode(store.shared))  # renamed: w
            if os.path.lexists(final) and not store.has_own_profile(hash_):
                fdtree.remove_at(profiles_fd, hash_)  # a leftover without metadata (gc killed)
            try:
                os.rename(aside.name, hash_, src_dir_fd=tmp_fd, dst_dir_fd=profiles_fd)
                _chmod_dir_at(profiles_fd, hash_,
                              sharing.read_only_mode(0o755, True, store.shared))
            except OSError:
                if not store.has_own_profile(hash_):
                    raise
    finally:
        remove_tree(aside)
    return final


def _chmod_dir_at(dir_fd: int, name: str, mode: int) -> None:
    """chmod the directory `name` of an open directory, never what a link there points at."""
    fd = fdtree.open_dir(name, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


# -- names and generations --------------------------------------------------------
class Generation(NamedTuple):  # not a dataclass: `hdenv list` is on the bare program's path
    number: int
    hash: str
    created: str  # ISO 8601, local time
    current: bool
    path: Path


def _check_name(name: str) -> None:
    problem = profile_name_problem(name)
    if problem is not None:
        raise UserError(f"bad profile name {name!r}: {problem}")


@contextlib.contextmanager
def _name_lock(store: Store, name: str) -> Iterator[None]:
    with file_lock(store.lock_path(f"name-{name}")):
        yield


def _open_name_dir(store: Store, name: str, *, create: bool = True) -> int:
    """A descriptor of names/NAME (made if missing), from the store root through
    descriptors: a symlink planted as names/ or names/NAME is refused (storedirs)."""
    return store.dir_fd("names", name, create=create)


def _symlink_at(dir_fd: int, target: str, name: str) -> None:
    """Point `name` in the open directory at `target` with one rename there."""
    symlink_at(dir_fd, target, name)


def set_current(store: Store, name: str, profile_hash: str) -> tuple[int, bool]:
    """Point NAME at `profile_hash`; a new generation only when the hash changed.

    Returns (generation number, whether a new generation was made).
    """
    _check_name(name)
    if not store.has_profile(profile_hash):
        raise UserError(f"no profile {profile_hash} in the store")
    store.ensure()
    with _name_lock(store, name):
        # names/NAME through a descriptor: a symlink planted there is refused, and the
        # generation links are read and made in the directory that was checked, never elsewhere
        fd = _open_name_dir(store, name)
        try:
            links = generation_links(fd)
            cur = current_number(fd)
            if cur is not None and links.get(cur) == profile_hash:
                return cur, False
            number = max(links, default=0) + 1
            # relative within the store (it may be moved); absolute to an upstream's profile
            target = (f"../../profiles/{profile_hash}" if store.has_own_profile(profile_hash)
                      else str(store.profile_dir(profile_hash)))
            _symlink_at(fd, target, str(number))
            _symlink_at(fd, str(number), "current")
        finally:
            os.close(fd)
        return number, True


def list_generations(store: Store, name: str) -> list[Generation]:
    """Every generation of NAME (here, else upstream), oldest first; UserError if unknown."""
    ndir = _name_dir(store.name_store(name) or store, name)
    return [Generation(number, hash_, created, current, store.profile_dir(hash_))
            for number, hash_, created, current in generation_dates(str(ndir))]


def _name_dir(store: Store, name: str) -> Path:
    _check_name(name)
    ndir = store.names / name
    if not ndir.is_dir():
        raise UserError(f"unknown profile name {name!r}")
    return ndir


def rollback(store: Store, name: str, to: int | None = None) -> int:
    """Make generation `to` (default: the one before current) current; returns it."""
    _name_dir(store, name)
    store.ensure()  # a read-only store says so in its own words, before the lock
    with _name_lock(store, name), _opened_name(store, name) as fd:
        links = generation_links(fd)
        cur = current_number(fd)
        if to is None:
            older = [n for n in links if cur is None or n < cur]
            if not older:
                raise UserError(f"{name} has no generation before {cur}")
            to = max(older)
        if to not in links:
            have = ", ".join(str(n) for n in sorted(links)) or "none"
            raise UserError(f"{name} has no generation {to} (generations: {have})")
        if not store.has_profile(links[to]):
            raise UserError(f"generation {to} of {name} points at a missing profile {links[to]}")
        _symlink_at(fd, str(to), "current")
        return to


@contextlib.contextmanager
def _opened_name(store: Store, name: str) -> Iterator[int]:
    """names/NAME, which must exist, open through descriptors for the length of a block."""
    try:
        fd = _open_name_dir(store, name, create=False)
    except FileNotFoundError:
        raise UserError(f"unknown profile name {name!r}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def prune(store: Store, name: str, keep: int) -> list[int]:
    """Drop all but the newest `keep` generations (current always stays); returns the dropped.

    Profiles themselves stay until `gc`: pruning only removes the GC roots.
    """
    if keep < 0:
        raise UserError("--keep must be at least 0")
    _name_dir(store, name)
    store.ensure()
    with _name_lock(store, name), _opened_name(store, name) as fd:
        links = generation_links(fd)
        cur = current_number(fd)
        newest = set(sorted(links)[-keep:]) if keep else set()
        dropped = [n for n in sorted(links) if n not in newest and n != cur]
        for n in dropped:
            os.unlink(str(n), dir_fd=fd)  # in the names/NAME that was checked
        return dropped


def names_of(store: Store, profile_hash: str) -> list[tuple[str, int, bool]]:
    """(name, generation, current) for every generation that points at `profile_hash`."""
    return index.names_of(str(store.root), profile_hash)

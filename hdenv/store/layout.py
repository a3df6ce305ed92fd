"""The on-disk store: layout, presence of artifacts, specs and REF resolution.

Layout (see DESIGN.md):

    <root>/src/                   source archives by key (sources.py)
    <root>/specs/HASH.json        every artifact and profile spec by hash
    <root>/artifacts/N/V/HASH/    an artifact; valid once .hdenv/artifact.json exists
    <root>/profiles/HASH/         a profile's symlink farm; .hdenv/profile.json
    <root>/names/NAME/            generations of a named profile (profiles.py)
    <root>/tmp/  <root>/locks/

An artifact directory without `.hdenv/artifact.json` is a leftover of a killed
build: it is never listed and is removed before the next attempt.

Writers never use a store directory by a path checked earlier: `dir_fd`,
`opened` and `write_file` reach it from the root through descriptors
(storedirs.py), so a member of a group store who swaps `specs/` or
`names/NAME` for a symlink mid-build gets a refusal, not a write into
whatever the link points at.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import StoreError, UserError
from ..validate import looks_like_hash, profile_name_problem
from . import sharing, storedirs
from .fsutil import read_json
from .hashing import HASH_CHARS, canonical_json, is_hash_like
from .safeio import check_owned, check_root_may_write

META_DIR = ".hdenv"
ARTIFACT_META = "artifact.json"
PROFILE_META = "profile.json"
MIN_PREFIX = 6


def dangling_name(name: str, entry: str, target: str) -> str:
    """The error for a name whose generation points at a profile that is gone."""
    what = f"profile {name!r}" if entry == "current" else f"generation {entry} of {name!r}"
    return (f"{what} points at profile {target}, which is not in the store (damaged or"
            f" half-collected store: see `hdenv verify`; `hdenv profile rollback {name}`"
            " returns to an earlier generation)")


def short_prefix_detail(ref: str) -> str | None:
    """What to add when a REF could only be a hash prefix, but too short a one."""
    if is_hash_like(ref) and len(ref) < MIN_PREFIX:
        return ("not a profile name, and a hash prefix needs at least"
                f" {MIN_PREFIX} characters (see `hdenv avail`)")
    return None


def _is_file(path: str) -> bool:
    """`Path(path).is_file()` for a path in text: False where pathlib says False (nothing
    there, a file on the way, a link loop), the error where pathlib raises one (EACCES)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise
    except ValueError:  # a NUL in the path
        return False


def split_id(artifact_id: str) -> tuple[str, str, str]:
    parts = artifact_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"not an artifact id (NAME/VERSION/HASH): {artifact_id!r}")
    return parts[0], parts[1], parts[2]


class Ref(NamedTuple):
    """What a user-typed REF resolved to (a NamedTuple: no `dataclasses` import on the
    bare program's path, see config.Settings)."""

    kind: str  # "artifact" or "profile"
    ident: str  # artifact id, or profile hash
    path: Path
    name: str | None = None  # profile name when resolved through names/
    upstream: Path | None = None  # root of the upstream store it lives in; None: this store


class Store:
    """One store, and the read-only upstream stores consulted after it.

    Lookups (`has_*`, `artifact_dir`, `profile_dir`, `read_spec`, `resolve`)
    search this store first, then each upstream in order, so everything built
    upstream is used as if it were here. Writers use `own_artifact_dir` and
    `own_profile_dir`: nothing is ever written upstream. Listings
    (`list_artifacts`, `list_profile_hashes`, `list_names`) are this store's
    own unless asked for upstreams, so whatever walks them to delete (gc) can
    never reach an upstream store.
    """

    def __init__(self, root: Path, upstreams: Iterable[Path] = ()):
        self.root = Path(root)
        self.upstreams = [Store(u) for u in dict.fromkeys(Path(u) for u in upstreams)
                          if u != self.root]
        self.shared = False  # group-shared (sharing.py); known once `ensure` ran
        self.src = self.root / "src"
        self.specs = self.root / "specs"
        self.artifacts = self.root / "artifacts"
        self._artifacts_text = str(self.artifacts)
        self.profiles = self.root / "profiles"
        self.names = self.root / "names"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"

    def ensure(self) -> Store:
        """Create the layout before writing; adopt a shared store's group umask first.

        Nothing is created before the store is known to be the user's to trust
        (`check_owned`: nobody else owns it, a directory above it, or a link on
        its path); its directories are then made and checked through
        descriptors (storedirs), so a symlink planted as one is refused and
        nothing is made in what it points at.
        """
        dirs = (self.src, self.specs, self.artifacts, self.profiles, self.names, self.tmp,
                self.locks)
        sharing.check_writable(self.root, self.locks)
        check_root_may_write(self.root, dirs)  # before root creates anything in it
        check_owned(self.root, [self.root / d for d in storedirs.TOP_DIRS])
        self.shared = sharing.adopt(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file, or a link to nothing: not a store
            raise UserError(f"{self.root} is not a directory (a file, or a symlink to nowhere):"
                            " use another store (--store, HDENV_STORE)") from None
        root_fd = storedirs.open_root(self.root)
        try:
            for name in storedirs.TOP_DIRS:
                made = name not in ("pins", "logs")  # those two when first used
                with contextlib.suppress(FileNotFoundError):
                    os.close(storedirs.open_below(root_fd, self.root, [name], create=made))
        finally:
            os.close(root_fd)
        return self

    def dir_fd(self, *parts: str, create: bool = True) -> int:
        """A descriptor of the store directory `parts` (made if missing, with `create`),
        reached from the root without following a symlink (storedirs); the caller closes it.

        Every writer goes through this (or `opened`/`write_file`): a path
        checked first and used afterwards is what a member of a group store
        redirects by swapping a directory for a symlink in between.
        """
        return storedirs.open_dir(self.root, parts, create=create)

    @contextlib.contextmanager
    def opened(self, *parts: str, create: bool = True) -> Iterator[int]:
        """`dir_fd` for the length of a block."""
        fd = self.dir_fd(*parts, create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    def write_file(self, parts: tuple[str, ...], name: str, data: bytes,
                   mode: int = 0o644, sync: bool = True) -> None:
        """Write the file `name` in the store directory `parts` atomically, through its
        descriptor: never into whatever a symlink planted on the way points at."""
        with self.opened(*parts) as fd:
            storedirs.write_at(fd, name, data, mode, self.root.joinpath(*parts), sync)

    def read_own_file(self, parts: tuple[str, ...], name: str, limit: int) -> bytes | None:
        """The file `name` in the store directory `parts` (never made here), reached
        through descriptors, if it is a regular file this user wrote of at most `limit`
        bytes; else None (`storedirs.read_own_at`). For what is only a cache: whatever
        another member planted or wrote there is not read, and is replaced on the next
        `write_file`."""
        try:
            with self.opened(*parts, create=False) as fd:
                return storedirs.read_own_at(fd, name, limit)
        except (OSError, StoreError):
            return None

    # -- specs -------------------------------------------------------------
    def spec_path(self, hash_: str) -> Path:
        return self.specs / f"{hash_}.json"

    def write_spec(self, hash_: str, spec: Any, sync: bool = True) -> None:
        """Save the spec under its hash, unless a regular file of its size is there (a
        spec is content-addressed: one of the right size is it, one of another size is
        what a power cut left of an unsynced write, and a symlink is what a member of a
        group store planted: both are replaced).

        `sync=False` for the spec of an artifact being installed, whose artifact.json is
        synced after it: the spec is then as durable as the artifact's own files, which
        are never synced either (`verify` checks both); syncing it cost a 200-artifact
        `reproduce` 8% of its time."""
        data = canonical_json(spec) + b"\n"
        path = self.spec_path(hash_)
        try:
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_size == len(data):
                return
        except FileNotFoundError:
            pass
        self.write_file(("specs",), path.name, data, sync=sync)

    def write_specs(self, specs: dict[str, Any], jobs: int = 8) -> None:
        """`write_spec` of each, `jobs` at once: each file is synced before it is renamed
        into place, and syncs issued together share the journal's commits (200 specs of
        a `reproduce` took 80 ms one after another)."""
        # the ones already there are left out first: after a pull, whose installs wrote
        # their own, a pool of threads to find that out cost more than the look
        specs_dir = str(self.specs)
        missing = [(h, spec) for h, spec in specs.items()
                   if not os.path.exists(f"{specs_dir}/{h}.json")]
        if len(missing) <= 1 or jobs <= 1:
            for item in missing:
                self.write_spec(*item)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(jobs, len(missing))) as pool:
            for _ in pool.map(lambda item: self.write_spec(*item), missing):
                pass

    def hints_path(self, hash_: str) -> Path:
        return self.specs / f"{hash_}.hints.json"

    def record_source_hints(self, hash_: str, hints: list[dict[str, Any]]) -> None:
        """Remember where a spec's sources were found, beside the spec, never in it.

        A spec names sources by hash only, so `reproduce` on another machine
        needs these to download them. Every URL ever given is kept (newest
        first): an old one may be the only one still online.
        """
        hints = [h for h in hints if h.get("url") or h.get("git")]
        if not hints:
            return
        path = self.hints_path(hash_)
        try:
            known: dict[str, dict[str, Any]] = read_json(path)
        except (FileNotFoundError, ValueError):
            known = {}
        merged = dict(known)
        for hint in hints:
            old = known.get(hint["key"], {})
            entry = {k: v for k, v in hint.items() if k not in ("key", "url") and v}
            urls = [hint["url"]] if hint.get("url") else []
            entry["urls"] = urls + [u for u in old.get("urls", []) if u not in urls]
            merged[hint["key"]] = {**old, **entry}
        if merged != known:
            self.write_file(("specs",), path.name, canonical_json(merged) + b"\n")

    def read_spec(self, hash_: str) -> Any:
        for store in self.chain():
            try:
                return read_json(store.spec_path(hash_))
            except FileNotFoundError:
                continue
        raise UserError(f"no spec with hash {hash_} in the store")

    def chain(self) -> list[Store]:
        """This store, then its upstreams: the order every lookup follows."""
        return [self, *self.upstreams]

    # -- artifacts ---------------------------------------------------------
    def own_artifact_dir(self, artifact_id: str) -> Path:
        """Where this store keeps (or would build) the artifact."""
        name, version, hash_ = split_id(artifact_id)
        return self.artifacts / name / version / hash_

    def has_own_artifact(self, artifact_id: str) -> bool:
        """Whether this store (not an upstream) holds the artifact, from a path joined as
        text: pathlib's joins cost 25 µs of a 27 µs check, and a 200-artifact
        `reproduce` asks a thousand times (a 5,000-package no-op build, 5,000)."""
        name, version, hash_ = split_id(artifact_id)
        return _is_file(f"{self._artifacts_text}/{name}/{version}/{hash_}/{META_DIR}/"
                        f"{ARTIFACT_META}")

    def artifact_store(self, artifact_id: str) -> Store | None:
        """The first store of the chain holding the artifact, or None."""
        for store in self.chain():
            if store.has_own_artifact(artifact_id):
                return store
        return None

    def artifact_dir(self, artifact_id: str) -> Path:
        """Where the artifact is: here, else the first upstream that has it, else here."""
        if self.upstreams:
            found = self.artifact_store(artifact_id)
            if found is not None:
                return found.own_artifact_dir(artifact_id)
        return self.own_artifact_dir(artifact_id)

    def artifact_meta_path(self, artifact_id: str) -> Path:
        return self.artifact_dir(artifact_id) / META_DIR / ARTIFACT_META

    def has_artifact(self, artifact_id: str) -> bool:
        """Present here or upstream: either way there is nothing to build."""
        return self.artifact_store(artifact_id) is not None

    def artifact_meta(self, artifact_id: str) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = read_json(self.artifact_meta_path(artifact_id))
        except FileNotFoundError:
            raise UserError(f"artifact {artifact_id} is not in the store") from None
        return meta

    def list_artifacts(self, *, upstreams: bool = False) -> list[str]:
        """Ids of every valid artifact of this store (and its upstreams if asked), sorted."""
        if upstreams and self.upstreams:
            return sorted({a for s in self.chain() for a in s.list_artifacts()})
        out: list[str] = []
        if not self.artifacts.is_dir():
            return out
        for name in sorted(os.listdir(self.artifacts)):
            ndir = self.artifacts / name
            for version in sorted(os.listdir(ndir)):
                vdir = ndir / version
                for hash_ in sorted(os.listdir(vdir)):
                    if (vdir / hash_ / META_DIR / ARTIFACT_META).is_file():
                        out.append(f"{name}/{version}/{hash_}")
        return out

    def lock_path(self, key: str) -> Path:
        return self.locks / f"{key}.lock"

    # -- profiles ----------------------------------------------------------
    def own_profile_dir(self, hash_: str) -> Path:
        return self.profiles / hash_

    def has_own_profile(self, hash_: str) -> bool:
        return (self.own_profile_dir(hash_) / META_DIR / PROFILE_META).is_file()

    def profile_store(self, hash_: str) -> Store | None:
        """The first store of the chain holding the profile, or None."""
        return next((s for s in self.chain() if s.has_own_profile(hash_)), None)

    def profile_dir(self, hash_: str) -> Path:
        """Where the profile is: here, else the first upstream that has it, else here."""
        found = self.profile_store(hash_) if self.upstreams else None
        return (found or self).own_profile_dir(hash_)

    def has_profile(self, hash_: str) -> bool:
        return self.profile_store(hash_) is not None

    def list_profile_hashes(self, *, upstreams: bool = False) -> list[str]:
        if upstreams and self.upstreams:
            return sorted({h for s in self.chain() for h in s.list_profile_hashes()})
        if not self.profiles.is_dir():
            return []
        return sorted(h for h in os.listdir(self.profiles) if self.has_own_profile(h))

    def name_store(self, name: str) -> Store | None:
        """The first store of the chain that has the name (a user's name hides a site's)."""
        return next((s for s in self.chain() if os.path.lexists(s.names / name / "current")),
                    None)

    def name_current(self, name: str) -> Path | None:
        """The profile a name's current generation points at (here or upstream), or None."""
        store = self.name_store(name) if self.upstreams else self
        if store is None:
            return None
        link = store.names / name / "current"
        if not os.path.lexists(link):
            return None
        target = Path(os.path.realpath(link))
        # only a generation hdenv could have made: profiles/HASH (of this or an upstream store)
        if not looks_like_hash(target.name) or target.parent.name != "profiles":
            return None
        return target

    def list_names(self, *, upstreams: bool = False) -> list[str]:
        if upstreams and self.upstreams:
            return sorted({n for s in self.chain() for n in s.list_names()})
        if not self.names.is_dir():
            return []
        return sorted(n for n in os.listdir(self.names)
                      if not profile_name_problem(n)  # validated on read, as in index.py
                      and self.name_current(n) is not None)

    # -- descriptions and other facts outside the hash ----------------------
    def record_about(self, hash_: str, about: dict[str, str]) -> None:
        """Keep what a spec's hash must not cover (a description) in `specs/HASH.about.json`.

        Rewording a description must not rebuild anything, so it lives beside
        the spec, rewritten by each build that says something different.
        """
        from .index import about_path, read_about

        about = {k: v for k, v in about.items() if v}
        if about and read_about(str(self.root), hash_) != about:
            self.write_file(("specs",), Path(about_path(str(self.root), hash_)).name,
                            canonical_json(about) + b"\n")

    def about(self, hash_: str) -> dict[str, str]:
        """The description of a spec, from the first store of the chain that has one."""
        from .index import read_about

        for store in self.chain():
            found = read_about(str(store.root), hash_)
            if found:
                return found
        return {}

    # -- REF resolution ----------------------------------------------------
    def search_roots(self) -> list[str]:
        """The stores a REF is looked up in, in order: this one, then its upstreams."""
        return [str(s.root) for s in self.chain()]

    def unknown(self, ref: str, detail: str | None = None) -> UserError:
        """The error for a REF that names nothing, with the closest names (store/suggest.py)."""
        from .suggest import GENERIC, unknown_ref

        return unknown_ref(self.search_roots(), ref, detail or GENERIC)

    def resolve(self, ref: str) -> Ref:
        """A profile name, NAME/N, profile hash (prefix), artifact id, or unique NAME/VERSION."""
        if not ref:
            raise UserError("empty REF")
        name, _, rest = ref.partition("/")
        if rest.isascii() and rest.isdigit():  # not '²', which int() refuses
            named = self._named_profile(name, str(int(rest)))
            if named is not None:
                return named
            if self.name_current(name) is not None:
                raise UserError(f"profile {name!r} has no generation {int(rest)}"
                                f" (see `hdenv profile generations {name}`)")
            # not a profile name: NAME/VERSION of an artifact whose version is a number
        if "/" in ref:
            return self._resolve_artifact(ref)
        named = self._named_profile(ref, "current")
        if named is not None:
            return named
        if is_hash_like(ref) and len(ref) >= MIN_PREFIX:
            matches = [h for h in self.list_profile_hashes(upstreams=True) if h.startswith(ref)]
            if len(matches) == 1:
                return self._profile_ref(matches[0])
            if len(matches) > 1:
                raise UserError(f"hash prefix {ref!r} is ambiguous: {', '.join(matches[:5])}")
        raise self.unknown(ref, short_prefix_detail(ref))

    def _origin(self, store: Store | None) -> Path | None:
        return None if store is None or store is self else store.root

    def _profile_ref(self, hash_: str, name: str | None = None) -> Ref:
        where = self.profile_store(hash_)
        return Ref("profile", hash_, (where or self).own_profile_dir(hash_), name=name,
                   upstream=self._origin(where))

    def _named_profile(self, name: str, entry: str) -> Ref | None:
        """The profile `names/NAME/ENTRY` (`current` or a generation number) points at.

        The first store of the chain with the name decides, as the first
        directory of Lmod's MODULEPATH does: a user's `demo` hides the site's.
        """
        store = self.name_store(name) if self.upstreams else self
        if store is None:
            return None
        link = store.names / name / entry
        if not os.path.lexists(link):
            return None
        target = Path(os.path.realpath(link))
        if not (target / META_DIR / PROFILE_META).is_file():
            raise UserError(dangling_name(name, entry, target.name))
        return Ref("profile", target.name, target, name=name,
                   upstream=self._origin(self.profile_store(target.name)))

    def _resolve_artifact(self, ref: str) -> Ref:
        """NAME/VERSION/HASH (HASH may be a unique prefix), or NAME/VERSION when only one exists."""
        parts = ref.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise self.unknown(ref, "an artifact id is NAME/VERSION/HASH")
        name, version = parts[0], parts[1]
        prefix = parts[2] if len(parts) == 3 else ""
        if prefix and len(prefix) < MIN_PREFIX and len(prefix) != HASH_CHARS:
            raise UserError(f"hash prefix {prefix!r} is too short"
                            f" (at least {MIN_PREFIX} characters)")
        found: dict[str, Store] = {}
        for store in self.chain():
            vdir = store.artifacts / name / version
            if vdir.is_dir():
                for h in sorted(os.listdir(vdir)):
                    if (h.startswith(prefix) and h not in found
                            and (vdir / h / META_DIR / ARTIFACT_META).is_file()):
                        found[h] = store
        candidates = sorted(found)
        if not candidates:
            raise self.unknown(ref, "no such artifact in the store")
        if len(candidates) > 1:
            ids = ", ".join(f"{name}/{version}/{h}" for h in candidates[:5])
            what = "artifact prefix" if prefix else "NAME/VERSION"
            raise UserError(f"{what} {ref!r} is ambiguous: {ids}")
        aid = f"{name}/{version}/{candidates[0]}"
        where = found[candidates[0]]
        return Ref("artifact", aid, where.own_artifact_dir(aid), upstream=self._origin(where))

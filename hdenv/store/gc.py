"""Garbage collection: keep what the roots reach, remove the rest crash-safely.

Mark: the roots (`gcroots`) name profiles and artifacts; a profile keeps the
artifacts its `profile.json` lists, an artifact keeps its recorded runtime
dependencies. Specs are kept for the whole *build* closure of what is live
(dependencies, build-only dependencies, tools), so `export` and `reproduce` of
a live profile still work after gc. The current generation of each name also
keeps the *artifacts* of its build closure (a captured compiler, a source-built
cmake: Nix's keep-outputs), so changing a parameter does not rebuild a
toolchain; older generations keep their runtime closure only, and
`--runtime-only` lets every build closure go. With `--sources`, the sources of
the kept specs stay and all others go.

Sweep, under the exclusive GC lock: garbage profiles first, then artifacts
with their dependents before their dependencies, then specs, then sources. A
profile or artifact is first renamed into this run's private temporary
directory (`tmp/<uid>/TOKEN.gc-*`, see `tmpdirs`) and only then deleted, so a
gc killed at any moment leaves every remaining artifact complete and every
remaining runtime closure whole; the next gc or build removes what a dead
run left there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Generic, TypeVar, cast

from ..errors import UserError
from . import fdtree
from .fsutil import file_lock, read_json, remove_tree, tree_size
from .gcroots import gc_lock, list_pins, running_roots
from .hashing import spec_source_keys
from .layout import ARTIFACT_META, META_DIR, PROFILE_META, Store, split_id
from .tmpdirs import clean_stale, temp_dir

TRASH_PREFIX = "gc-"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Item:
    """One thing gc would remove."""

    kind: str  # "profile", "artifact", "leftover", "spec", "source"
    ident: str
    path: Path
    size: int = 0


@dataclass
class Marked:
    profiles: set[str] = field(default_factory=set)
    artifacts: set[str] = field(default_factory=set)
    specs: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    running: int = 0


@dataclass
class GcResult:
    items: list[Item] = field(default_factory=list)  # removed (or, dry run, would be)
    freed: int = 0
    kept: Marked = field(default_factory=Marked)
    stopped_early: bool = False
    dry_run: bool = False

    def count(self, kind: str) -> int:
        return sum(1 for i in self.items if i.kind == kind)


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1.5GiB`, `100kB` or plain bytes -> bytes (powers of 1024)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise UserError(f"not a size: {text!r} (e.g. 500M, 2G, 1.5GiB, 4096)")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * 1024 ** " kmgtp".index(unit or " "))


# -- mark ------------------------------------------------------------------------------

def root_profiles(store: Store) -> set[str]:
    """Profile hashes named by any generation of any name."""
    out: set[str] = set()
    try:
        names = os.listdir(store.names)
    except FileNotFoundError:
        return out
    for name in names:
        ndir = store.names / name
        try:
            entries = os.listdir(ndir)
        except (NotADirectoryError, FileNotFoundError):
            continue
        for entry in entries:
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    out.add(os.path.basename(os.readlink(ndir / entry)))
    return out


def current_profiles(store: Store) -> set[str]:
    """Profile hashes that are some name's current generation (`names/NAME/current`)."""
    out: set[str] = set()
    try:
        names = os.listdir(store.names)
    except FileNotFoundError:
        return out
    for name in names:
        with contextlib.suppress(OSError):
            generation = os.readlink(store.names / name / "current")
            out.add(os.path.basename(os.readlink(store.names / name / generation)))
    return out


def on_demand_profiles(store: Store, live: set[str], kept: set[str]) -> list[str]:
    """The profiles made on demand whose every artifact is `live`: a package loaded by name
    (`hdenv load zlib`, marked `package` in profile.json) and the loaded state that
    `hdenv loaded --hash` made (marked `loaded_state`).

    A shell that loaded a package, a collection that saved it and a bug report that
    quotes a state hash name that profile by hash, and nothing in the store knows
    about any of them; so such a profile lives as long as the named generations (or
    pins) that keep its artifacts, as a loaded named profile lives as long as its
    generation. Once its artifacts go, it goes with them (`load` and `restore` make
    a package's again for whatever build is there then).
    """
    out = []
    for phash in store.list_profile_hashes():
        if phash in kept:
            continue
        meta = _read_json_or(store.own_profile_dir(phash) / META_DIR / PROFILE_META, None)
        if not isinstance(meta, dict) or not (isinstance(meta.get("package"), str)
                                              or meta.get("loaded_state") is True):
            continue
        artifacts = meta.get("artifacts")
        if isinstance(artifacts, list) and all(a in live for a in artifacts):
            out.append(phash)
    return out


def build_closure(store: Store, artifacts: set[str],
                  read_spec: Callable[[str], Any] | None = None) -> set[str]:
    """Every artifact the specs of `artifacts` name as an input, transitively: the
    dependencies, build-only dependencies (a captured compiler, a built cmake) and
    tools their builds used, and those inputs' own inputs."""
    spec_of = read_spec or _spec_reader(store)
    out: set[str] = set()
    stack = list(artifacts)
    seen: set[str] = set()
    while stack:
        aid = stack.pop()
        if aid in seen:
            continue
        seen.add(aid)
        spec = spec_of(aid.rsplit("/", 1)[-1])
        if not isinstance(spec, dict):
            continue
        refs = [*spec.get("deps", []), *spec.get("build_deps", [])]
        if spec.get("tools"):
            refs.append(spec["tools"])
        for ref in refs:
            if isinstance(ref, str) and ref.count("/") == 2:
                out.add(ref)
                stack.append(ref)
    return out


def _load_json(path: str) -> Any:
    """The JSON in the file `path` (OSError, ValueError): one open, no text layer."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return json.loads(_read_all(fd))
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _spec_reader(store: Store) -> Callable[[str], Any]:
    """Spec by hash, None if missing or damaged; each file read once per gc (mark
    and the build closure ask for the same specs)."""
    base = str(store.specs)
    cache: dict[str, Any] = {}

    def read(hash_: str) -> Any:
        try:
            return cache[hash_]
        except KeyError:
            pass
        try:
            spec = _load_json(f"{base}/{hash_}.json")
        except (OSError, ValueError):
            spec = None
        cache[hash_] = spec
        return spec

    return read


def _artifact_meta_reader(store: Store) -> Callable[[str], Any]:
    """artifact.json by id (`store.artifact_meta_path`: upstreams consulted); OSError,
    ValueError or UserError (not an id) as read_json would raise them."""
    if store.upstreams:
        return lambda aid: read_json(store.artifact_meta_path(aid))
    base = str(store.artifacts)

    def read(aid: str) -> Any:
        parts = aid.split("/")
        if len(parts) != 3 or not all(parts):
            split_id(aid)  # the UserError naming it
        return _load_json(f"{base}/{aid}/{META_DIR}/{ARTIFACT_META}")

    return read


def _split_roots(ids: set[str]) -> tuple[set[str], set[str], set[str]]:
    """(profile hashes, artifact ids, source keys) from registered root lines."""
    profiles, artifacts, sources = set(), set(), set()
    for i in ids:
        if i.startswith(("sha256:", "git:")):
            sources.add(i)
        elif i.count("/") == 2:
            artifacts.add(i)
        elif "/" not in i:
            profiles.add(i)
    return profiles, artifacts, sources


def _read_json_or(path: Path, default: Any) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return default


def mark(store: Store, *, clean_dead: bool = False, runtime_only: bool = False) -> Marked:
    """Everything the roots keep alive (see the module docstring).

    The current generation of every name keeps its whole build closure too
    (Nix's keep-outputs), so the next `--set cflags=...` of a stack finds its
    captured compiler and source-built tools instead of making them again;
    older generations and pins keep their runtime closure only.
    `runtime_only` (`gc --runtime-only`) lets the build closures go as well.
    """
    marked = Marked()
    running = running_roots(store, clean=clean_dead)
    marked.running = running.processes
    run_profiles, run_artifacts, run_sources = _split_roots(running.ids)
    profiles = root_profiles(store) | run_profiles
    artifacts = set(run_artifacts)
    for p in list_pins(store):
        (artifacts if p.kind == "artifact" else profiles).add(p.ident)
    specs: set[str] = set()
    for phash in profiles:
        meta = _read_json_or(store.profile_dir(phash) / META_DIR / PROFILE_META, None)
        if meta is None:  # damaged or not made yet (a running build): its spec knows
            meta = _read_json_or(store.spec_path(phash), {})
        artifacts.update(a for a in meta.get("artifacts", []) if isinstance(a, str))
        specs.add(phash)
    marked.profiles = profiles
    spec_of = _spec_reader(store)
    if not runtime_only:
        current: set[str] = set()
        for phash in current_profiles(store):
            meta = _read_json_or(store.profile_dir(phash) / META_DIR / PROFILE_META, None)
            if meta is None:
                meta = _read_json_or(store.spec_path(phash), {})
            current.update(a for a in meta.get("artifacts", []) if isinstance(a, str))
        artifacts |= build_closure(store, current, spec_of)
    # runtime closure through recorded runtime dependencies
    meta_of = _artifact_meta_reader(store)
    stack = list(artifacts)
    live: set[str] = set()
    while stack:
        aid = stack.pop()
        if aid in live:
            continue
        live.add(aid)
        try:
            meta = meta_of(aid)
        except (OSError, ValueError, UserError):
            continue  # not built (yet), or not an id
        stack.extend(d for d in meta.get("runtime_deps", []) if d not in live)
    marked.artifacts = live
    for phash in on_demand_profiles(store, live, profiles):  # shells, collections, reports
        profiles.add(phash)
        specs.add(phash)
    # specs: the build closure of what is live
    stack = [a.rsplit("/", 1)[-1] for a in live] + list(specs)
    sources = set(run_sources)
    while stack:
        h = stack.pop()
        if h in marked.specs:
            continue
        marked.specs.add(h)
        spec = spec_of(h)
        if not isinstance(spec, dict):
            continue
        refs = [*spec.get("deps", []), *spec.get("build_deps", []), *spec.get("artifacts", [])]
        if spec.get("tools"):
            refs.append(spec["tools"])
        stack.extend(r.rsplit("/", 1)[-1] for r in refs if isinstance(r, str))
        sources.update(spec_source_keys(spec))
    marked.sources = sources
    return marked


# -- what would go ----------------------------------------------------------------------

def artifact_dirs(store: Store) -> Iterator[tuple[str, Path, bool]]:
    """(id, path, complete) of every artifact directory, leftovers included.

    artifacts/NAME and NAME/VERSION are opened without following a link: one a
    group member planted there (to a directory of yours) is no part of the store,
    and what lies behind it is never listed, measured or removed.
    """
    try:
        top = fdtree.open_dir(store.artifacts)
    except OSError:
        return
    try:
        for name in _listdir_at(top):
            for version, vfd in _subdirs(top, name):
                try:
                    for hash_ in _listdir_at(vfd):
                        path = store.artifacts / name / version / hash_
                        yield f"{name}/{version}/{hash_}", path, _complete(vfd, hash_)
                finally:
                    os.close(vfd)
    finally:
        os.close(top)


def _unmarked_artifacts(store: Store, live: set[str], empty: list[str] | None = None
                        ) -> Iterator[tuple[str, Path, list[str] | None]]:
    """(id, path, runtime deps) of every artifact directory not in `live`; deps None
    for a leftover (no regular artifact.json: a build still writing, or a dead one's).

    Listed as `artifact_dirs` does, nothing followed; the metadata of what may go is
    read once, here, through the descriptor of the file that was checked to be one
    (a FIFO or a link planted there is neither opened nor followed). `empty` gathers
    the NAME and NAME/VERSION directories found empty on the way.
    """
    try:
        top = fdtree.open_dir(store.artifacts)
    except OSError:
        return
    root = str(store.artifacts)
    try:
        for name in _listdir_at(top):
            for version, vfd in _subdirs(top, name, empty):
                try:
                    hashes = _listdir_at(vfd)
                    if not hashes and empty is not None:
                        empty.append(f"{name}/{version}")
                    for hash_ in hashes:
                        aid = f"{name}/{version}/{hash_}"
                        if aid not in live:
                            yield aid, Path(f"{root}/{aid}"), _runtime_deps(vfd, hash_)
                finally:
                    os.close(vfd)
    finally:
        os.close(top)


_META_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _runtime_deps(vfd: int, hash_: str) -> list[str] | None:
    """The recorded runtime deps of the artifact HASH in `vfd` ([] if its metadata is
    unreadable), or None if it is not complete (as `_complete` judges)."""
    try:
        fd = fdtree.open_dir(hash_, dir_fd=vfd)
    except OSError:
        return None
    try:
        mfd = os.open(f"{META_DIR}/{ARTIFACT_META}", _META_FLAGS, dir_fd=fd)
    except PermissionError:  # not ours to read: complete all the same if it is a file
        return [] if _complete(vfd, hash_) else None
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(mfd).st_mode):
            return None
        try:
            meta = json.loads(_read_all(mfd))
        except (OSError, ValueError):
            return []
    finally:
        os.close(mfd)
    needs = meta.get("runtime_deps", []) if isinstance(meta, dict) else []
    return [d for d in needs if isinstance(d, str)] if isinstance(needs, list) else []


def _subdirs(top: int, name: str, empty: list[str] | None = None
             ) -> Iterator[tuple[str, int]]:
    """(VERSION, its descriptor) of the real directory NAME in `top`; the caller closes each.
    NAME goes into `empty` if it has no entry at all."""
    try:
        nfd = fdtree.open_dir(name, dir_fd=top)
    except OSError:  # a symlink or a file: not followed
        return
    try:
        versions = _listdir_at(nfd)
        if not versions and empty is not None:
            empty.append(name)
        for version in versions:
            try:
                yield version, fdtree.open_dir(version, dir_fd=nfd)
            except OSError:
                continue
    finally:
        os.close(nfd)


def _complete(vfd: int, hash_: str) -> bool:
    """Whether HASH is a real directory with its metadata written (nothing followed)."""
    try:
        fd = fdtree.open_dir(hash_, dir_fd=vfd)
    except OSError:
        return False
    try:
        meta = os.stat(f"{META_DIR}/{ARTIFACT_META}", dir_fd=fd, follow_symlinks=False)
        return stat.S_ISREG(meta.st_mode)
    except OSError:
        return False
    finally:
        os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (NotADirectoryError, FileNotFoundError):
        return []


def _listdir_at(fd: int) -> list[str]:
    try:
        return sorted(os.listdir(fd))
    except OSError:
        return []


def garbage(store: Store, marked: Marked, *, sources: bool,
            sizes: bool = True, empty: list[str] | None = None) -> list[Item]:
    """What is not marked, in a safe removal order (see the module docstring).

    `empty` gathers the artifacts' NAME and NAME/VERSION directories that are empty
    already, as listed: with the ones the sweep empties, all `_prune_empty_dirs` would
    find, without listing the store a second time.
    """
    items: list[Item] = []
    for phash in _listdir(store.profiles):
        if phash not in marked.profiles:
            items.append(Item("profile", phash, store.profile_dir(phash)))
    garbage_artifacts: dict[str, Path] = {}
    deps: dict[str, list[str]] = {}
    for aid, path, meta in _unmarked_artifacts(store, marked.artifacts, empty):
        if meta is not None:
            garbage_artifacts[aid] = path
            deps[aid] = meta
        elif not _locked(store, aid):  # else a build is writing it right now
            items.append(Item("leftover", aid, path))
    items += [Item("artifact", a, garbage_artifacts[a])
              for a in _dependents_first(deps)]
    for entry in _listdir(store.specs):
        h = entry.split(".", 1)[0]
        if entry.endswith(".json") and not entry.startswith(".") and h not in marked.specs:
            items.append(Item("spec", entry, store.specs / entry))
    if sources:
        items += _garbage_sources(store, marked.sources)
    if sizes:
        for item in items:
            if not item.ident.startswith("git:"):  # a ref in the shared git cache
                item.size = path_size(item.path)
    return items


def _locked(store: Store, aid: str) -> bool:
    with _artifact_lock(store, aid) as free:
        return not free


@contextlib.contextmanager
def _artifact_lock(store: Store, aid: str) -> Iterator[bool]:
    """Hold an artifact's build lock if nobody does; yields whether we got it.

    A missing lock file is not created (nobody is building then, and gc should
    not add an inode for every artifact it removes).
    """
    key = aid.rsplit("/", 1)[-1]
    if not os.path.lexists(f"{store.locks}/{key}.lock"):
        yield True
        return
    path = store.lock_path(key)
    try:
        with file_lock(path, blocking=False):
            yield True
    except BlockingIOError:
        yield False


def _dependents_first(artifacts: dict[str, list[str]]) -> list[str]:
    """Garbage artifact ids (each with its recorded runtime dependencies) ordered so
    none is removed before an artifact that needs it."""
    deps = {aid: [d for d in needs if d in artifacts] for aid, needs in artifacts.items()}
    users: dict[str, int] = dict.fromkeys(artifacts, 0)
    for aid in artifacts:
        for d in deps[aid]:
            users[d] += 1
    ready = sorted((a for a, n in users.items() if n == 0), reverse=True)
    out: list[str] = []
    while ready:
        aid = ready.pop()
        out.append(aid)
        for d in deps[aid]:
            users[d] -= 1
            if users[d] == 0:
                ready.append(d)
    out += sorted(set(artifacts) - set(out))  # a cycle (a damaged store): any order
    return out


def _garbage_sources(store: Store, live: set[str]) -> list[Item]:
    items = []
    sha_dir = store.src / "sha256"
    for hex_ in _listdir(sha_dir):
        if _HEX64.fullmatch(hex_) and f"sha256:{hex_}" not in live:
            items.append(Item("source", f"sha256:{hex_}", sha_dir / hex_))
    git_dir = store.src / "git" / "cache.git"
    if (git_dir / "HEAD").is_file():
        for commit in _git_keep_refs(git_dir):
            if f"git:{commit}" not in live:
                items.append(Item("source", f"git:{commit}", git_dir))
    return items


def _git_keep_refs(git_dir: Path) -> list[str]:
    import subprocess  # here: only a store with a git cache runs git (gc's start-up)

    try:
        proc = subprocess.run(["git", f"--git-dir={git_dir}", "for-each-ref",
                               "--format=%(refname)", "refs/hdenv/keep/"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError:
        return []
    return [line.rsplit("/", 1)[-1] for line in proc.stdout.split()]


def path_size(path: Path) -> int:
    """Allocated bytes of `path` and, if it is a directory (not a link to one), below it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(st.st_mode):
        return tree_size(path) + st.st_blocks * 512
    return st.st_blocks * 512


# -- sweep ------------------------------------------------------------------------------

Log = Callable[[str], None]


def collect(store: Store, *, dry_run: bool = False, sources: bool = False,
            max_freed: int | None = None, log: Log | None = None,
            on_item: Callable[[Item], None] | None = None,
            runtime_only: bool = False) -> GcResult:
    """`hdenv gc`: remove (or with `dry_run` list) what no root keeps alive."""
    say = log or (lambda _m: None)
    result = GcResult(dry_run=dry_run)
    if not store.root.is_dir():
        return result
    lock = gc_lock(store, shared=False, blocking=False)
    try:
        lock.__enter__()
    except BlockingIOError:
        say("waiting for running hdenv processes to register what they use")
        lock = gc_lock(store, shared=False)
        lock.__enter__()
    trash: Path | None = None
    try:
        if not dry_run:
            clean_stale(store)  # what a killed gc (or build) had moved aside
        result.kept = mark(store, clean_dead=not dry_run, runtime_only=runtime_only)
        empty: list[str] = []
        items = garbage(store, result.kept, sources=sources, sizes=dry_run, empty=empty)
        if items and not dry_run:
            trash = temp_dir(store, TRASH_PREFIX)
        git_pruned = pruned = False
        if trash is not None and max_freed is None:  # nothing to stop at: all at once
            git_pruned = _sweep(store, items, trash, result, on_item, empty)
            items, pruned = [], True
        for item in items:
            if max_freed is not None and result.freed >= max_freed:
                result.stopped_early = True
                break
            if dry_run:
                done = True
            elif item.kind == "source" and item.ident.startswith("git:"):
                done = _drop_git_ref(item)
                git_pruned = git_pruned or done
            else:
                assert trash is not None
                done = _remove(store, item, trash)
            if done:
                result.items.append(item)
                result.freed += item.size
                if on_item is not None:
                    on_item(item)
        if not dry_run:
            if not pruned:
                _prune_empty_dirs(store, result.kept)
            if git_pruned:
                _git_prune(store.src / "git" / "cache.git")
    finally:
        if trash is not None:
            remove_tree(trash)
        lock.__exit__(None, None, None)
    return result


def _sweep(store: Store, items: list[Item], trash: Path, result: GcResult,
           on_item: Callable[[Item], None] | None, empty: list[str]) -> bool:
    """Every item out of the store (each one rename, under its lock, in the safe order)
    while worker threads delete and measure what was moved; True if a git ref was dropped.

    Crash-safe as one item at a time: nothing is deleted before its rename, the
    renames keep their order, and whatever a kill leaves in the trash is no
    longer in the store (the next gc or build removes it: tmpdirs.clean_stale).
    Specs are files (an unlink is atomic): the workers unlink them, after every
    artifact's rename and before any source goes. Deleting is where the time
    goes (one unlink per file; the kernel frees each inode there or when its
    last descriptor closes), and those system calls run without the GIL:
    threads overlap them with each other and with the renames. The workers
    also remove the NAME/VERSION directories an artifact leaves empty and those
    `empty` (as garbage() listed them), which is what `_prune_empty_dirs` would
    do after the sweep: the main thread, which makes the renames in order, does
    nothing else, and does not list the store a second time.
    """
    jobs: list[tuple[Item, _Job[bool] | None]] = []
    specs: list[_Job[bool]] = []  # unlinked by the workers: sources wait for them
    git_pruned = False
    with _Sweep(store, trash, result.kept) as sweep, _Workers(_workers()) as pool:
        try:
            for item in items:
                if item.kind == "spec" and sweep.in_specs(item):
                    specs.append(unlinking := pool.submit(sweep.unlink_spec, item))
                    jobs.append((item, unlinking))
                    continue
                if item.kind == "source":
                    for done in specs:  # a spec goes before the sources it names
                        done.result()
                    specs = []
                if item.kind == "source" and item.ident.startswith("git:"):
                    if _drop_git_ref(item):
                        git_pruned = True
                        jobs.append((item, None))
                    continue
                aside = sweep.move(item)
                job = pool.submit(sweep.delete, item, aside) if aside is not None else None
                if item.kind == "source":  # its name goes too; done either way, as before
                    _unlink_in(store, ("src", "names"), item.ident.split(":", 1)[1])
                    jobs.append((item, job))
                elif job is not None:
                    jobs.append((item, job))
            pruned = (pool.submit(sweep.prune_empty, empty)
                      if empty and sweep.has_top("artifacts") else None)
            for item, job in jobs:
                if job is not None and not job.result():
                    continue
                result.items.append(item)
                result.freed += item.size
                if on_item is not None:
                    on_item(item)
            if pruned is not None:
                pruned.result()
        except BaseException:
            for _item, job in jobs:
                if job is not None:
                    job.cancel()
            raise
    return git_pruned


T = TypeVar("T")


class _Job(Generic[T]):
    """One call for `_Workers`: `result()` waits for it, then returns what it returned or
    raises what it raised; `cancel()` before it starts makes it no call at all. Its
    "done" is a lock held from its making until the call is over (a Future keeps a
    Condition for that)."""

    __slots__ = ("_call", "_args", "_done", "_value", "_error", "_cancelled")

    def __init__(self, call: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._call, self._args = call, args
        self._done = threading.Lock()
        self._done.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._cancelled = False

    def run(self) -> None:
        try:
            if not self._cancelled:
                self._value = self._call(*self._args)
        except BaseException as e:  # the caller of result() hears of it
            self._error = e
        finally:
            self._done.release()

    def cancel(self) -> None:
        self._cancelled = True

    def result(self) -> T:
        with self._done:
            pass
        if self._error is not None:
            raise self._error
        if self._cancelled:
            raise RuntimeError("cancelled")
        return cast(T, self._value)


class _Workers:
    """Threads taking calls, in order, from one queue until the block ends (it waits for
    them): what the sweep needs of a ThreadPoolExecutor, without importing
    `concurrent.futures`, which imports `logging` (3 ms of every gc's start-up)."""

    def __init__(self, count: int) -> None:
        self._queue: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._threads = [threading.Thread(target=self._work, daemon=True)
                         for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *_exc: object) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def submit(self, call: Callable[..., T], *args: Any) -> _Job[T]:
        job = _Job(call, args)
        self._queue.put(job)
        return job

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            job.run()


def _workers() -> int:
    """Deleting threads. Four even on one or two CPUs: a thread spends much of an unlink
    waiting (the journal, the disk, a network file system's round trip), and on two
    cores four finished 1,000 artifacts in 0.21 s where two took 0.30 s and one 0.52 s."""
    return 4


class _Sweep:
    """The descriptors a sweep reuses: the trash and the store's top-level directories
    (each opened from the root without following a link, once, by the main thread:
    the workers only read `tops`), and what `_prune_empty_dirs` must leave alone."""

    def __init__(self, store: Store, trash: Path, marked: Marked):
        self.store = store
        self.trash = fdtree.open_dir(trash)
        self.tops: dict[str, int] = {}
        self.busy = {a.rsplit("/", 1)[0] for a in marked.artifacts}
        self.busy_names = {b.split("/", 1)[0] for b in self.busy}

    def __enter__(self) -> _Sweep:
        return self

    def __exit__(self, *_exc: object) -> None:
        for fd in [self.trash, *self.tops.values()]:
            os.close(fd)

    def _top(self, name: str) -> int:
        top = self.tops.get(name)
        if top is None:
            top = self.tops[name] = fdtree.open_dirs(self.store.root, [name])
        return top

    def _parent(self, item: Item) -> int:
        """A new descriptor of the directory holding `item` (OSError/ValueError if it
        cannot be reached without following a link)."""
        parts = item.path.parent.relative_to(self.store.root).parts
        if not parts:
            raise ValueError(f"{item.path}: not below a top-level directory")
        top = self._top(parts[0])
        if len(parts) == 1:
            return os.dup(top)
        fd = fdtree.open_dir(parts[1], dir_fd=top)
        try:
            for part in parts[2:]:
                nfd = fdtree.open_dir(part, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def move(self, item: Item) -> str | None:
        """Rename `item` into the trash (as `_move_and_delete`); its name there, or None."""
        if item.kind in ("artifact", "leftover"):
            # a build in progress holds the artifact's lock: never touch that one
            with _artifact_lock(self.store, item.ident) as free:
                return self._move(item) if free else None
        return self._move(item)

    def _move(self, item: Item) -> str | None:
        try:
            parent = self._parent(item)
        except (OSError, ValueError):
            return None  # gone, or a link a member planted on the way: not ours to follow
        aside = f"{item.kind}-{item.ident.replace('/', '-')}"
        try:
            for _ in range(fdtree.ROUNDS):  # a name that keeps changing is left for later
                moved = _rename_aside(parent, item.path.name, self.trash, aside)
                if moved is not None:
                    return aside if moved else None
            return None
        except PermissionError:  # another member's, closed to the group: theirs to remove
            return None
        finally:
            os.close(parent)

    def delete(self, item: Item, aside: str) -> bool:
        """Measure and delete what the rename moved, in one walk; False if refused.

        An artifact's NAME/VERSION and NAME go here too once it leaves them empty
        (as `_prune_empty_dirs` judges): removing a directory waits on the disk
        as an unlink does, so these overlap in the workers instead of following
        every rename one after the other.
        """
        if item.kind in ("artifact", "leftover"):
            name, version, _hash = item.ident.split("/")
            self._prune(name, version)
        try:
            _delete_aside(self.trash, aside, item)
        except PermissionError:
            return False
        return True

    def prune_empty(self, empty: list[str]) -> None:
        """Remove the NAME and NAME/VERSION directories that were listed empty (unless a
        live id lives under them), as `_prune_empty_dirs` would."""
        for rel in empty:
            name, _, version = rel.partition("/")
            if version:
                self._prune(name, version)
            elif name not in self.busy_names:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=self.tops["artifacts"])

    def _prune(self, name: str, version: str) -> None:
        """Remove NAME/VERSION and NAME if they are empty and no live id lives under them;
        through descriptors, nothing followed. Each artifact's are tried once it was
        renamed away, so the last of several of one VERSION to go removes it."""
        if f"{name}/{version}" in self.busy:
            return
        top = self.tops["artifacts"]  # opened by the main thread before any job
        try:
            nfd = fdtree.open_dir(name, dir_fd=top)
        except OSError:
            return
        try:
            os.rmdir(version, dir_fd=nfd)
        except FileNotFoundError:
            pass
        except OSError:  # not empty (another artifact or a build's), or not a directory
            return
        finally:
            os.close(nfd)
        if name not in self.busy_names:
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=top)

    def has_top(self, name: str) -> bool:
        """Whether the store's directory `name` is open in `tops` (opened now if need be,
        by the main thread, for the workers)."""
        try:
            self._top(name)
        except OSError:
            return False
        return True

    def in_specs(self, item: Item) -> bool:
        """Whether `item` is a name in specs/ (the workers' `unlink_spec` then takes it)."""
        return item.path.parent == self.store.specs and self.has_top("specs")

    def unlink_spec(self, item: Item) -> bool:
        """Measure and unlink a garbage spec, in a worker; False if it is gone or refused.

        A spec is one file and an unlink is atomic, so a kill leaves it whole or
        gone: it needs no rename aside first. Specs go after every artifact was
        moved (they are queued after them), so a killed gc never leaves an
        artifact without its spec. Anything but a file (a directory a member
        put there) goes through the trash as before.
        """
        specs, name = self.tops["specs"], item.path.name
        try:
            st = os.stat(name, dir_fd=specs, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=specs)
                item.size = st.st_blocks * 512
                return True
        except FileNotFoundError:
            return False
        except PermissionError:  # another member's, closed to the group: theirs to remove
            return False
        except IsADirectoryError:  # made a directory meanwhile
            pass
        aside = self._move(item)
        return aside is not None and self.delete(item, aside)


def _remove(store: Store, item: Item, trash: Path) -> bool:
    """Move `item` out of the store (one rename), measure it, delete it."""
    if item.kind in ("artifact", "leftover"):
        # a build in progress holds the artifact's lock: never touch that one
        with _artifact_lock(store, item.ident) as free:
            return free and _move_and_delete(store, item, trash)
    if item.kind == "source":
        _move_and_delete(store, item, trash)
        _unlink_in(store, ("src", "names"), item.ident.split(":", 1)[1])
        return True
    return _move_and_delete(store, item, trash)


def _unlink_in(store: Store, where: tuple[str, ...], name: str) -> None:
    """Remove the file `name` of the store directory `where` if it is there; a link is
    removed itself, and a directory a member put in its place is left alone."""
    try:
        fd = fdtree.open_dirs(store.root, where)
    except OSError:
        return
    try:
        os.unlink(name, dir_fd=fd)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass
    finally:
        os.close(fd)


def _move_and_delete(store: Store, item: Item, trash: Path) -> bool:
    """Rename `item` into our private tmp/, then measure and delete it there.

    In a shared store a member can swap any name on the way for a symlink at any
    moment, so nothing here goes by path: the directory holding the item is
    opened from the store root without following a link (a planted one means
    the item is not removed), the u+w a directory may need (moving a directory
    rewrites its `..`) is set through a descriptor of the inode that was looked
    at (`fdtree.pin`), the rename is relative to both directories' descriptors,
    and what is measured and deleted is whatever the rename moved, judged by
    its own lstat (a link is unlinked, never followed).
    """
    try:
        parent = fdtree.open_dirs(store.root, item.path.parent.relative_to(store.root).parts)
    except (OSError, ValueError):
        return False  # gone, or a link a member planted on the way: not ours to follow
    try:
        tfd = fdtree.open_dir(trash)
        try:
            return _move_at(parent, item, tfd)
        except PermissionError:  # another member's, closed to the group: theirs to remove
            return False
        finally:
            os.close(tfd)
    finally:
        os.close(parent)


def _move_at(parent: int, item: Item, trash: int) -> bool:
    name = item.path.name
    aside = f"{item.kind}-{item.ident.replace('/', '-')}"
    for _ in range(fdtree.ROUNDS):  # a name that keeps changing under us is left for later
        moved = _rename_aside(parent, name, trash, aside)
        if moved is not None:
            break
    else:
        return False
    if moved is False:
        return False
    _delete_aside(trash, aside, item)
    return True


def _delete_aside(trash: int, aside: str, item: Item) -> None:
    """Measure and delete what a rename moved into the trash, in one walk (`fdtree.Tally`):
    a directory is emptied as it is found, anything else unlinked, nothing followed."""
    st = os.stat(aside, dir_fd=trash, follow_symlinks=False)
    item.size = st.st_blocks * 512
    if stat.S_ISDIR(st.st_mode):
        tally = fdtree.Tally()
        fdtree.remove_at(trash, aside, tally=tally, is_dir=True)
        item.size += tally.total
    else:
        os.unlink(aside, dir_fd=trash)


def _rename_aside(parent: int, name: str, trash: int, aside: str) -> bool | None:
    """Rename `name` into the trash: True if done, False if it is gone, None if it changed
    between the look and the rename (the caller looks again)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    # Our own directory with u+w needs nothing widened (the owner's bits are what count),
    # so no descriptor of it either: the rename goes by name between two descriptors and
    # moves whatever is there then, never following a link.
    if not stat.S_ISDIR(st.st_mode) or (st.st_uid == os.geteuid()
                                        and st.st_mode & stat.S_IWUSR):
        pinned = None
    elif (pinned := fdtree.pin(parent, name, st)) is None:
        return None
    try:
        # In a shared store another member's tree is writable through its group bits, and
        # only its owner may chmod it, so ask for access rather than look at the owner's bits.
        widened = pinned is not None and not os.access(fdtree.proc_path(pinned), os.W_OK)
        if widened:
            assert pinned is not None
            fdtree.chmod_pinned(pinned, stat.S_IMODE(st.st_mode) | 0o200)
        try:
            os.rename(name, aside, src_dir_fd=parent, dst_dir_fd=trash)
            return True
        except FileNotFoundError:
            return False
        except PermissionError:
            if _same_at(parent, name, st):
                raise
            return None  # something else took its name meanwhile (and cannot move)
        finally:
            if widened and not _same_at(trash, aside, st):  # what was widened stays: undo
                assert pinned is not None
                with contextlib.suppress(OSError):
                    fdtree.chmod_pinned(pinned, stat.S_IMODE(st.st_mode))
    finally:
        if pinned is not None:
            os.close(pinned)


def _same_at(dir_fd: int, name: str, st: os.stat_result) -> bool:
    try:
        return fdtree.same_inode(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), st)
    except FileNotFoundError:
        return False


def _prune_empty_dirs(store: Store, marked: Marked) -> None:
    """Remove NAME/VERSION directories left empty; never one a live id lives under
    (a running build may be about to create its artifact there); through descriptors,
    so a link planted as NAME or VERSION is never followed."""
    busy = {a.rsplit("/", 1)[0] for a in marked.artifacts}
    busy_names = {b.split("/", 1)[0] for b in busy}
    try:
        top = fdtree.open_dir(store.artifacts)
    except OSError:
        return
    try:
        for name in _listdir_at(top):
            try:
                nfd = fdtree.open_dir(name, dir_fd=top)
            except OSError:
                continue
            try:
                for version in _listdir_at(nfd):
                    if f"{name}/{version}" not in busy:
                        with contextlib.suppress(OSError):
                            os.rmdir(version, dir_fd=nfd)
            finally:
                os.close(nfd)
            if name not in busy_names:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)


def _drop_git_ref(item: Item) -> bool:
    import subprocess  # here: only `gc --sources` with a git cache runs git (gc's start-up)

    commit = item.ident.split(":", 1)[1]
    proc = subprocess.run(["git", f"--git-dir={item.path}", "update-ref", "-d",
                           f"refs/hdenv/keep/{commit}"], capture_output=True,
                          stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def _git_prune(git_dir: Path) -> None:
    """Drop the objects no kept commit reaches (remote-tracking refs go too)."""
    import subprocess  # here: only `gc --sources` with a git cache runs git (gc's start-up)

    refs = subprocess.run(["git", f"--git-dir={git_dir}", "for-each-ref",
                           "--format=%(refname)", "refs/hdenv/remotes/"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.split()
    for ref in refs:
        subprocess.run(["git", f"--git-dir={git_dir}", "update-ref", "-d", ref],
                       capture_output=True, stdin=subprocess.DEVNULL)
    subprocess.run(["git", f"--git-dir={git_dir}", "reflog", "expire", "--expire=now", "--all"],
                   capture_output=True, stdin=subprocess.DEVNULL)
    subprocess.run(["git", f"--git-dir={git_dir}", "gc", "--prune=now", "--quiet"],
                   capture_output=True, stdin=subprocess.DEVNULL)

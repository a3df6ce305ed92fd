"""Installing an artifact into its final path, crash-safely.

Programs bake their prefix into what they install, so a build writes straight
into `artifacts/NAME/VERSION/HASH`. Safety comes from the order of operations:

1. take the artifact's lock (so concurrent hdenv runs build it once);
2. if it is valid already, stop; a directory without metadata is a leftover of
   a killed build and is removed;
3. populate the directory (build script, symlinks, ...);
4. write spec, manifest and log under `.hdenv/`, drop write permissions, and
   write `.hdenv/artifact.json` last (atomically): only now does it exist.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import fdtree
from .fsutil import (
    file_lock,
    lock_fd,
    open_lock_file,
)
from .hashing import sha256_fd, spec_hash
from .layout import ARTIFACT_META, META_DIR, Store
from .sharing import SPECIAL_BITS, current_umask, read_only_mode

Populate = Callable[[Path, int, int], "dict[str, str] | None"]
"""populate(prefix, guard_fd, prefix_fd): fill `prefix`, the directory open as `prefix_fd`
(write through that descriptor where you can: the path can be redirected in a group
store, see `check_reached`); build processes inherit `guard_fd` (build_guard), which is
-1 when install_artifact was told the populate `spawns` nothing.

A build returns None: what it made is walked, made read-only and hashed. An extraction
(exchange/pack.py) returns the manifest of what it wrote, everything below the top
already read-only but `.hdenv/`: it knows every byte and mode it wrote, and a second
walk over the tree and its data was most of an install's time."""


def artifact_id(spec: dict[str, Any]) -> str:
    return f"{spec['name']}/{spec['version']}/{spec_hash(spec)}"


def manifest_of(root: Path) -> dict[str, str]:
    """Relative path -> 'sha256:HEX MODE' for files, 'link:TARGET' for symlinks, 'dir MODE'.

    MODE is the permission bits in octal (`0555`), so `verify` sees a mode
    changed after the build (`chmod u+s`) as well as changed content.
    `.hdenv/` is excluded: it holds the manifest itself and the log.
    """
    fd = fdtree.open_dir(root)
    try:
        return manifest_at(fd)
    finally:
        os.close(fd)


def manifest_at(root_fd: int) -> dict[str, str]:
    """`manifest_of` the directory open as `root_fd`, through descriptors all the way.

    A member of a shared store may swap an entry while it is read: a file is
    opened without following a link and without blocking (a FIFO swapped in
    cannot hang the build), and what is recorded is what was opened.
    """
    out: dict[str, str] = {}
    for fd, name, rel, st in fdtree.walk_at(root_fd, add=0,
                                             descend=lambda rel, _st: rel != META_DIR):
        if rel == META_DIR:
            continue
        entry = _entry_at(fd, name, st)
        if entry is not None:
            out[rel] = entry
    return out


def _entry_at(dir_fd: int, name: str, st: os.stat_result) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"link:{os.readlink(name, dir_fd=dir_fd)}"
        except OSError:  # replaced by something else meanwhile: what it is now
            pass
    elif not stat.S_ISREG(st.st_mode):
        return _other_entry(st)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        return f"link:{os.readlink(name, dir_fd=dir_fd)}"
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            return _other_entry(now)
        return file_entry(sha256_fd(fd), stat.S_IMODE(now.st_mode))
    finally:
        os.close(fd)


def _other_entry(st: os.stat_result) -> str:
    """A directory's entry, or what neither a file, link nor directory is recorded as."""
    mode = stat.S_IMODE(st.st_mode)
    return dir_entry(mode) if stat.S_ISDIR(st.st_mode) else f"other {mode:04o}"


def file_entry(sha256: str, mode: int) -> str:
    """A regular file's manifest value (`manifest_of`), for a tree recorded as it is
    written (an extraction) as for one walked."""
    return f"sha256:{sha256} {mode:04o}"


def dir_entry(mode: int) -> str:
    return f"dir {mode:04o}"


def split_manifest_entry(value: str) -> tuple[str, int | None]:
    """('sha256:HEX' | 'dir' | 'link:TARGET' | 'other', mode or None) of a manifest value.

    Manifests written before modes were recorded have no mode (None).
    """
    if value.startswith("link:"):
        return value, None
    kind, _, mode = value.partition(" ")
    try:
        return kind, int(mode, 8) if mode else None
    except ValueError:
        return value, None


def install_artifact(
    store: Store,
    spec: dict[str, Any],
    populate: Populate,
    *,
    runtime_deps: list[str],
    log_path: Path | None = None,
    extra_meta: dict[str, Any] | None = None,
    on_wait: Callable[[], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    ensured: bool = False,
    umask: int | None = None,
    spawns: bool = True,
) -> tuple[str, bool]:
    """Make the artifact for `spec` exist; returns (id, built_now).

    `on_note(message)` hears what the build output should mention (setuid bits
    that were removed). `ensured`: the caller ran `store.ensure()` for a batch of
    installs (a pull of 200 artifacts checked the same store 200 times: ~50 system
    calls each). `umask`: the process umask, when the caller read it already.
    `spawns=False`: `populate` leaves no process behind that could write on (an
    extraction, whose patchelf runs are waited for and never get the guard), so no
    build guard is made unless a killed build's one is there (`_guard`).

    Exceptions from `populate` propagate; the half-written directory is removed
    (and would be removed by the next attempt if we are killed first).
    """
    aid = artifact_id(spec)
    if not ensured:
        store.ensure()
    store.write_spec(aid.rsplit("/", 1)[1], spec, sync=False)  # artifact.json commits it
    prefix = store.own_artifact_dir(aid)  # never an upstream's: nothing is written there
    if store.has_artifact(aid):  # here or upstream
        return aid, False
    lock = store.lock_path(aid.rsplit("/", 1)[1])
    try:
        ctx = file_lock(lock, blocking=False)
        ctx.__enter__()
    except BlockingIOError:
        if on_wait is not None:
            on_wait()
        ctx = file_lock(lock)
        ctx.__enter__()
    try:
        if store.has_artifact(aid):
            return aid, False
        name, version, hash_ = aid.split("/")
        # artifacts/NAME/VERSION through descriptors from the store root: a symlink a
        # group member planted there is refused, never followed (storedirs)
        parent = store.dir_fd("artifacts", name, version)
        try:
            with _guard(store, hash_, on_wait, spawns) as guard:
                _clear_leftover(parent, hash_, prefix)  # a killed build's leftover
                # while it is built, the group may only look for its metadata (in a
                # shared store other members wait for it): a member who could write
                # in it would plant a link for the build's `make install` to write
                # through (the build's umask keeps the group out of what it makes:
                # builder._umask_line); it gets its real mode when made read-only
                final_mode = 0o777 & ~(current_umask() if umask is None else umask)
                os.mkdir(hash_, mode=0o710, dir_fd=parent)
                prefix_fd = fdtree.open_dir(hash_, dir_fd=parent)
                started = time.time()
                try:
                    prepared = populate(prefix, guard, prefix_fd)
                    _check_same(parent, hash_, prefix_fd, prefix)
                    check_reached(store, aid, prefix_fd)
                except BaseException:
                    os.close(prefix_fd)
                    fdtree.remove_at(parent, hash_, prefix)
                    raise
            try:
                _register(store, spec, aid, prefix, prefix_fd, parent, runtime_deps, log_path,
                          extra_meta, started, on_note, final_mode, prepared)
            except BaseException:
                fdtree.remove_at(parent, hash_, prefix)
                raise
            finally:
                os.close(prefix_fd)
        finally:
            os.close(parent)
        return aid, True
    finally:
        ctx.__exit__(None, None, None)


def check_building(store: Store, aid: str, prefix_fd: int) -> None:
    """Before a build's script runs: the artifact's path, followed from the store root
    without following a link, leads to the directory `install_artifact` made for `aid`
    (open as `prefix_fd`); else StoreError, and the script never runs.

    A sandboxed build binds that descriptor (bwrap --bind-fd), not the path, so a
    member of a group store who renames `artifacts/NAME/VERSION/HASH` (or a directory
    above it) away and plants a link to a directory of the builder's gets nothing
    written there; an unsandboxed build writes by path, so the path must lead there
    now (see `check_reached` for afterwards).
    """
    why = _not_reached(store, aid, prefix_fd)
    if why is not None:
        raise StoreError(f"{store.own_artifact_dir(aid)} is no longer the directory being"
                         f" built ({why}): another user of the store may be trying to"
                         " redirect this build's writes")


def check_reached(store: Store, aid: str, prefix_fd: int) -> None:
    """After the build: the artifact's path still leads to the directory open as
    `prefix_fd` (see `check_building`); else StoreError, nothing is registered.

    `_check_same` looks at the last name only, in the directory opened when the build
    began. A member of a group store may rename that directory's parents instead
    (artifacts/NAME/VERSION, artifacts/NAME: the group's to rename in) and put a link
    in their place, so that whatever was done by path (an unsandboxed build's `make
    install`) went into the link's target; an artifact registered then would be
    reachable under its name no more.
    """
    why = _not_reached(store, aid, prefix_fd)
    if why is not None:
        raise StoreError(f"{store.own_artifact_dir(aid)} was replaced while it was being built"
                         f" ({why}): nothing was registered; another user of this store did"
                         " it, see `hdenv verify`")


def _not_reached(store: Store, aid: str, prefix_fd: int) -> str | None:
    """None if artifacts/NAME/VERSION/HASH, each component reached from the store root
    without following a link, is the directory open as `prefix_fd`; else what is wrong."""
    name, version, hash_ = aid.split("/")
    mine = os.fstat(prefix_fd)
    try:
        with store.opened("artifacts", name, version, create=False) as parent:
            now = os.stat(hash_, dir_fd=parent, follow_symlinks=False)
    except StoreError:
        return "a directory on its path is a symlink now"
    except OSError as e:
        return os.strerror(e.errno or 0).lower()
    if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
        return "a symlink or another directory is in its place"
    return None


def _clear_leftover(parent: int, name: str, prefix: Path) -> None:
    """Remove what a killed build left at `name`; one of another member's, closed to the
    group while it was built, cannot be emptied by us: it is renamed aside in the same
    directory (which needs no access to it), for its owner's gc, and `verify` names it."""
    try:
        fdtree.remove_at(parent, name, prefix)
    except PermissionError:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if st.st_uid == os.geteuid():
            raise
        aside = f".{name}.leftover-of-uid-{st.st_uid}.{os.getpid()}.{time.time_ns()}"
        os.rename(name, aside, src_dir_fd=parent, dst_dir_fd=parent)


def _check_same(parent: int, name: str, prefix_fd: int, prefix: Path) -> None:
    """The name still is the directory the build was given (not a link or another one that
    a member of a shared store swapped in): else nothing is registered there."""
    mine = os.fstat(prefix_fd)
    try:
        now = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
        raise StoreError(f"{prefix} was replaced while it was being built (by a symlink or"
                         " another directory): nothing was registered; another user of this"
                         " store did it, see `hdenv verify`")


def _register(store: Store, spec: dict[str, Any], aid: str, prefix: Path, prefix_fd: int,
              parent: int, runtime_deps: list[str], log_path: Path | None,
              extra_meta: dict[str, Any] | None, started: float,
              on_note: Callable[[str], None] | None, top_mode: int,
              prepared: dict[str, str] | None) -> None:
    """Read-only modes, manifest and metadata, all through the artifact's own descriptor;
    the metadata (artifact.json last) only if the name still is that directory.
    `top_mode`: the artifact directory's permission bits as made (it was owner-only
    while it was built); `prepared`: the manifest populate returned (see Populate)."""
    meta = prefix / META_DIR
    with contextlib.suppress(FileExistsError):
        os.mkdir(META_DIR, dir_fd=prefix_fd)
    try:
        meta_fd = fdtree.open_dir(META_DIR, dir_fd=prefix_fd)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        raise StoreError(f"{meta} is not a directory but a symlink or a file: the build made"
                         " it, and only hdenv may (its metadata goes there)") from None
    try:
        def mode(rel: str, st: os.stat_result) -> int:
            is_dir = stat.S_ISDIR(st.st_mode)
            if rel and st.st_mode & SPECIAL_BITS and not is_dir:
                stripped.append(rel)
            if rel == META_DIR:
                return 0o755
            if not rel:
                return read_only_mode((st.st_mode & ~0o777) | top_mode, True, store.shared)
            return read_only_mode(st.st_mode, is_dir, store.shared)

        stripped: list[str] = []
        if prepared is not None:
            os.fchmod(prefix_fd, mode("", os.fstat(prefix_fd)))
            manifest = prepared
        else:
            refused = fdtree.change_modes_at(prefix_fd, mode)
            if refused:
                raise PermissionError(errno.EPERM, "cannot make read-only",
                                      str(prefix / refused[0]))
            if stripped:
                _note_stripped(sorted(stripped), log_path, on_note)
            manifest = manifest_at(prefix_fd)  # of the final modes
            # again after the walks, which take a while: it is about to be registered
            _check_same(parent, aid.rsplit("/", 1)[1], prefix_fd, prefix)
            check_reached(store, aid, prefix_fd)
        # one fsync per artifact, of artifact.json, which makes it exist (as Nix syncs its
        # database, not each store path): what is written before it is as durable as the
        # artifact's own files, and `verify` checks them all against the manifest
        fdtree.write_at(meta_fd, "spec.json", _json(spec), 0o444, meta, sync=False)
        fdtree.write_at(meta_fd, "manifest.json", _json(manifest), 0o444, meta, sync=False)
        if log_path is not None and log_path.exists():
            fdtree.write_at(meta_fd, "build.log", log_path.read_bytes(), 0o444, meta,
                            sync=False)
        info = {
            "id": aid,
            "kind": spec.get("kind", "build"),
            "runtime_deps": sorted(runtime_deps),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.time() - started, 3),
            **(extra_meta or {}),
        }
        fdtree.write_at(meta_fd, ARTIFACT_META, _json(info), 0o444, meta)
        os.fchmod(meta_fd, read_only_mode(0o755, True, store.shared))
    finally:
        os.close(meta_fd)


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _note_stripped(paths: list[str], log_path: Path | None,
                   on_note: Callable[[str], None] | None) -> None:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    message = (f"removed setuid/setgid/sticky bits from {shown}: artifacts never carry them"
               " (any user could run such a program with the builder's rights)")
    if log_path is not None and log_path.exists():
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"hdenv: {message}\n")
    if on_note is not None:
        on_note(message)


def _guard(store: Store, key: str, on_wait: Callable[[], None] | None,
           spawns: bool) -> contextlib.AbstractContextManager[int]:
    """The build guard where `populate` may leave processes behind, or where a killed
    build's orphans may still hold one (its file is then there: it is unlinked only when
    a build ends normally, and we hold the artifact's lock, so no build starts meanwhile);
    else none. An install from a cache spared a file made and unlinked per artifact: two
    of the metadata operations a 200-artifact pull pays for, on a parallel file system
    each a round trip to the metadata server."""
    if spawns or os.path.lexists(store.lock_path(f"{key}.build")):
        return build_guard(store, key, on_wait)
    return contextlib.nullcontext(-1)


@contextlib.contextmanager
def build_guard(store: Store, key: str, on_wait: Callable[[], None] | None) -> Iterator[int]:
    """A second lock, `locks/KEY.build.lock`, that the build's processes inherit.

    hdenv's own lock is never inherited, so a stray child of a *failed* build
    cannot block the next one. This guard covers the other case: hdenv killed
    with -9 while `make` still writes into the prefix. The orphans keep the
    guard locked, so the next run waits for them before it removes the
    leftover. After a build that ended normally, the guard file is unlinked:
    a daemon that escaped the build's process group holds a lock on a file
    nobody will ever open again.
    """
    path = store.lock_path(f"{key}.build")
    fd = open_lock_file(path)
    try:
        try:
            lock_fd(fd, blocking=False)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            lock_fd(fd)
        yield fd
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    finally:
        os.close(fd)


def reachable(roots: Iterable[str], neighbours: Callable[[str], Iterable[str]]) -> list[str]:
    """Every node reachable from `roots` (roots included), sorted."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(neighbours(node))
    return sorted(seen)


def runtime_closure(store: Store, roots: list[str]) -> list[str]:
    """Every artifact reachable from `roots` through runtime deps, sorted."""
    return reachable(roots, lambda aid: store.artifact_meta(aid).get("runtime_deps", []))

"""`hdenv verify`: everything in the store that can be damaged, reported, never a crash.

Each check turns what it finds into one line per problem, `WHERE: WHAT`:

- artifacts: metadata (`artifact.json`, `manifest.json`) missing, truncated or
  not what it should be; files missing, added, changed, or with another mode
  than the manifest recorded (a setuid bit added after the build is a mode
  change); directories without `artifact.json` that no build is writing
  (a killed build's leftover, or an artifact whose metadata was deleted);
- profiles: `profile.json` damaged, artifacts it lists gone, farm links
  pointing anywhere but into those artifacts (or nowhere), files writable;
- names: generations pointing at profiles that are gone;
- sources (`--sources`): every stored archive re-hashed against its name.

An unreadable file is a problem to report, not an exception to raise.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import HdenvError, StoreError
from . import fdtree, sharing, storedirs
from .artifacts import manifest_of, reachable, split_manifest_entry
from .fsutil import lock_is_held, read_json
from .hashing import sha256_file, spec_hash
from .layout import ARTIFACT_META, META_DIR, PROFILE_META, Store

Problems = list[str]
# The mode bits whose change matters: setuid/setgid/sticky, write, the owner's
# execute bit. Group and other read/execute bits, a directory's set-gid and
# group-write bits are how `hdenv store fix-permissions` shares a store.
FILE_BITS = 0o7000 | 0o222 | 0o100
DIR_BITS = 0o5000 | 0o202


def _guarded(where: str, check: Callable[[], Problems]) -> Problems:
    try:
        return check()
    except OSError as e:
        what = f" {e.filename}" if e.filename else ""
        return [f"{where}: cannot read{what}: {e.strerror}"]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return [f"{where}: damaged metadata ({type(e).__name__}: {e})"]


def _read_meta(path: Path, what: str, where: str, problems: Problems) -> Any:
    """The JSON at `path`, or None with a problem recorded."""
    try:
        return read_json(path)
    except FileNotFoundError:
        problems.append(f"{where}: {what} is missing")
    except (ValueError, UnicodeDecodeError):
        problems.append(f"{where}: {what} is damaged (not valid JSON; truncated?)")
    return None


# -- artifacts ---------------------------------------------------------------

def verify_artifact(store: Store, aid: str) -> Problems:
    return _guarded(aid, lambda: _verify_artifact(store, aid))


def _verify_artifact(store: Store, aid: str) -> Problems:
    prefix = store.artifact_dir(aid)
    problems: Problems = []
    meta = _read_meta(prefix / META_DIR / ARTIFACT_META, f"{META_DIR}/{ARTIFACT_META}", aid,
                      problems)
    if meta is not None and (not isinstance(meta, dict) or meta.get("id") != aid
                             or not isinstance(meta.get("runtime_deps"), list)):
        problems.append(f"{aid}: {META_DIR}/{ARTIFACT_META} does not describe this artifact")
    hash_ = aid.rsplit("/", 1)[1]
    spec = _read_meta(prefix / META_DIR / "spec.json", f"{META_DIR}/spec.json", aid, problems)
    if spec is not None and spec_hash(spec) != hash_:
        problems.append(f"{aid}: {META_DIR}/spec.json does not hash to the artifact's id")
    problems += _described(store.artifact_store(aid) or store, aid, hash_)
    recorded = _read_meta(prefix / META_DIR / "manifest.json", f"{META_DIR}/manifest.json", aid,
                          problems)
    actual = manifest_of(prefix)
    if not isinstance(recorded, dict):
        if recorded is not None:
            problems.append(f"{aid}: {META_DIR}/manifest.json is damaged (not a table)")
        problems += [f"{aid}: {rel} has a setuid/setgid bit" for rel, value in actual.items()
                     if _special(value)]
        return problems
    for rel in sorted(set(recorded) | set(actual)):
        if rel not in actual:
            problems.append(f"{aid}: missing {rel}")
        elif rel not in recorded:
            problems.append(f"{aid}: unexpected {rel}")
        else:
            problems += _compare(aid, rel, str(recorded[rel]), actual[rel])
    return problems


def _described(store: Store, aid: str, hash_: str) -> Problems:
    """The problems of `specs/HASH.json` (written unsynced with the artifact:
    Store.write_spec), read without following a link or blocking on a FIFO: specs/ of a
    group store is every member's to write in."""
    name = f"{hash_}.json"
    try:
        with store.opened("specs", create=False) as specs:
            try:
                os.stat(name, dir_fd=specs, follow_symlinks=False)
            except FileNotFoundError:
                return []
            fd = fdtree.open_file_at(specs, name)
    except (FileNotFoundError, StoreError):  # no specs/, or a link there: the store's own
        return []  # check of its top-level directories names that once
    if fd is None:
        return [f"{aid}: specs/{name} is not a regular file (a link, a FIFO?)"]
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    try:
        spec = json.loads(data)
    except ValueError:
        return [f"{aid}: specs/{name} is damaged (not valid JSON; truncated?)"]
    if spec_hash(spec) != hash_:
        return [f"{aid}: specs/{name} does not hash to the artifact's id"]
    return []


def _special(value: str) -> bool:
    mode = split_manifest_entry(value)[1]
    return mode is not None and bool(mode & 0o6000)


def _compare(aid: str, rel: str, recorded: str, actual: str) -> Problems:
    rec_kind, rec_mode = split_manifest_entry(recorded)
    act_kind, act_mode = split_manifest_entry(actual)
    if rec_kind != act_kind:
        return [f"{aid}: modified {rel}"]
    if rec_mode is None:  # a manifest from before modes were recorded
        return [f"{aid}: {rel} has a setuid/setgid bit"] if _special(actual) else []
    mask = DIR_BITS if rec_kind == "dir" else FILE_BITS
    if act_mode is None or (rec_mode ^ act_mode) & mask:
        return [f"{aid}: mode of {rel} changed from {rec_mode:04o} to {act_mode or 0:04o}"]
    return []


def incomplete_artifacts(store: Store) -> Problems:
    """Artifact directories without artifact.json that no running build owns."""
    problems: Problems = []
    for name, version, hash_ in _artifact_dirs(store, problems):
        path = store.artifacts / name / version / hash_
        if (path / META_DIR / ARTIFACT_META).is_file():
            continue
        if lock_is_held(store.lock_path(hash_)):
            continue  # being built right now
        where = f"{name}/{version}/{hash_}"
        if (path / META_DIR / "manifest.json").exists() or (path / META_DIR / "spec.json").exists():
            problems.append(f"{where}: {META_DIR}/{ARTIFACT_META} is missing (deleted?); the"
                            " artifact is invisible until it is rebuilt")
        else:
            problems.append(f"{where}: leftover of an interrupted build (the next build of it"
                            " removes it)")
    return problems


def _artifact_dirs(store: Store, problems: Problems) -> Iterable[tuple[str, str, str]]:
    """NAME/VERSION/HASH of every artifact directory; a symlink at NAME or VERSION (hdenv
    never makes one: a group member planted it) is a problem, and not looked behind."""
    for name in _listdir(store.artifacts):
        if _planted(store, name, problems):
            continue
        for version in _listdir(store.artifacts / name):
            if _planted(store, f"{name}/{version}", problems):
                continue
            for hash_ in _listdir(store.artifacts / name / version):
                yield name, version, hash_


def _planted(store: Store, rel: str, problems: Problems) -> bool:
    if not os.path.islink(store.artifacts / rel):
        return False
    problems.append(f"artifacts/{rel}: a symlink, which hdenv never makes (another user of"
                    " this store may have planted it to redirect hdenv): remove it")
    return True


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (NotADirectoryError, FileNotFoundError):
        return []


def closure(store: Store, roots: list[str], problems: Problems) -> list[str]:
    """The runtime closure of `roots`; an artifact whose metadata cannot be read ends
    the walk there (and is reported by its own check)."""
    def deps_of(aid: str) -> list[str]:
        try:
            deps = read_json(store.artifact_meta_path(aid)).get("runtime_deps", [])
        except (OSError, ValueError, AttributeError):
            return []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            problems.append(f"{aid}: {META_DIR}/{ARTIFACT_META} has damaged runtime_deps")
            return []
        return deps

    return reachable(roots, deps_of)


# -- profiles and names ------------------------------------------------------

def read_profile_meta(store: Store, hash_: str) -> dict[str, Any] | None:
    try:
        meta = read_json(store.profile_dir(hash_) / META_DIR / PROFILE_META)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def verify_profile(store: Store, hash_: str) -> Problems:
    return _guarded(f"profile {hash_}", lambda: _verify_profile(store, hash_))


def _verify_profile(store: Store, hash_: str) -> Problems:
    where = f"profile {hash_}"
    root = store.profile_dir(hash_)
    problems: Problems = []
    meta = _read_meta(root / META_DIR / PROFILE_META, f"{META_DIR}/{PROFILE_META}", where,
                      problems)
    if meta is None:
        return problems
    artifacts = meta.get("artifacts") if isinstance(meta, dict) else None
    if not isinstance(artifacts, list) or meta.get("hash") != hash_ \
            or not isinstance(meta.get("env"), dict):
        return [*problems, f"{where}: {META_DIR}/{PROFILE_META} does not describe this profile"]
    spec = _read_meta(root / META_DIR / "spec.json", f"{META_DIR}/spec.json", where, problems)
    if spec is not None and spec_hash(spec) != hash_:
        problems.append(f"{where}: {META_DIR}/spec.json does not hash to the profile's hash")
    allowed = []
    for aid in artifacts:
        if not isinstance(aid, str) or not store.has_artifact(aid):
            problems.append(f"{where}: needs artifact {aid}, which is not in the store")
        else:
            allowed.append(str(store.artifact_dir(aid)))
    problems += _check_farm(root, allowed, where, shared=sharing.is_shared(store.root))
    return problems


def _check_farm(root: Path, allowed: list[str], where: str, *, shared: bool) -> Problems:
    """A farm's symlinks point into its artifacts; nothing in it is writable, except
    that a shared store's directories stay group-writable (how members remove them)."""
    problems: Problems = []
    paths = [str(root)]  # the farm itself and its metadata are read-only too
    for dirpath, dirnames, filenames in fdtree.walk(root):
        paths += [os.path.join(dirpath, name) for name in [*dirnames, *filenames]]
    for path in paths:
        rel = os.path.relpath(path, root)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # removed while we looked
        if stat.S_ISLNK(st.st_mode):
            problems += _check_link(path, rel, allowed, where)
        elif st.st_mode & (0o202 if shared and stat.S_ISDIR(st.st_mode) else 0o222):
            problems.append(f"{where}: {rel} is writable (profiles are read-only)")
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o6000:
            problems.append(f"{where}: {rel} has a setuid/setgid bit")
    return problems


def _check_link(path: str, rel: str, allowed: list[str], where: str) -> Problems:
    """Absolute links lead into one of the profile's artifacts; relative ones stay inside."""
    target = os.readlink(path)
    if os.path.isabs(target):
        inside = any(target == a or target.startswith(a + "/") for a in allowed)
    else:
        inside = not os.path.normpath(os.path.join(os.path.dirname(rel), target)).startswith("..")
    if not inside:
        return [f"{where}: {rel} points at {target}, outside the artifacts of the profile"]
    if not os.path.exists(path):
        return [f"{where}: {rel} points at {target}, which does not exist"]
    return []


def verify_names(store: Store) -> Problems:
    problems: Problems = []
    for name in _listdir(store.names):
        ndir = store.names / name
        for entry in _listdir(ndir):
            link = ndir / entry
            if not (entry == "current" or entry.isdigit()) or not link.is_symlink():
                continue
            with contextlib.suppress(OSError):
                target = Path(os.path.realpath(link))
                if not (target / META_DIR / PROFILE_META).is_file():
                    what = "current generation" if entry == "current" else f"generation {entry}"
                    problems.append(f"name {name}: {what} points at profile {target.name},"
                                    " which is not in the store")
    return problems


# -- sources -----------------------------------------------------------------

def verify_sources(store: Store) -> tuple[Problems, int]:
    """Re-hash every stored archive; returns (problems, how many were checked)."""
    problems: Problems = []
    sha_dir = store.src / "sha256"
    names = [n for n in _listdir(sha_dir) if len(n) == 64]
    for hex_ in names:
        try:
            got = sha256_file(sha_dir / hex_)
        except OSError as e:
            problems.append(f"source sha256:{hex_}: cannot read: {e.strerror}")
            continue
        if got != hex_:
            problems.append(f"source sha256:{hex_}: damaged, its content hashes to sha256:{got}"
                            " (the next build that needs it fetches it again)")
    return problems, len(names)


def run_checks(store: Store, ref: str | None, *, sources: bool = False,
           host_check: Callable[[Store, str], list[str]] | None = None,
           ) -> tuple[list[str], int]:
    """Problems found, and how many artifacts were checked (see store/verify.py).

    Without REF: every artifact, leftover, profile, name (and with `sources`,
    every stored source). With REF: that artifact's or profile's closure.
    `host_check` replaces the byte check of host files (`host_file_drift`): the
    exchange layer passes one that also re-asks versions, which the store
    layer cannot do without importing host capture.
    """
    problems: list[str] = []
    if ref is None:
        problems += storedirs.problems(store.root)  # a symlink planted as specs/, locks/...
        targets = store.list_artifacts()
        problems += incomplete_artifacts(store)
        profiles = store.list_profile_hashes()
        problems += verify_names(store)
    else:
        resolved = store.resolve(ref)
        profiles = [resolved.ident] if resolved.kind == "profile" else []
        targets = [resolved.ident] if resolved.kind == "artifact" else []
        if resolved.kind == "profile":
            meta = read_profile_meta(store, resolved.ident)
            targets = [a for a in meta.get("artifacts", []) if isinstance(a, str)] if meta else []
        targets = closure(store, targets, problems)
    for aid in targets:
        problems += verify_artifact(store, aid)
        problems += (host_check or host_file_drift)(store, aid)
    for hash_ in profiles:
        problems += verify_profile(store, hash_)
    if sources:
        problems += verify_sources(store)[0]
    return problems, len(targets)


def host_file_drift(store: Store, aid: str) -> list[str]:
    """Host files whose bytes changed since capture: same id (by version), other content."""
    try:
        recorded = store.artifact_meta(aid).get("host_files", {})
    except (HdenvError, OSError, ValueError):  # damaged metadata: verify_artifact says so
        return []
    out = []
    for path, digest in sorted(recorded.items()):
        if not os.path.isfile(path):
            out.append(f"{aid}: host file {path} is gone (drift)")
        elif sha256_file(path) != digest:
            out.append(f"{aid}: host file {path} changed since it was captured (drift)")
    return out

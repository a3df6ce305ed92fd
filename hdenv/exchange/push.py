"""`hdenv push REF... --to URL`: sign and upload runtime closures and profile definitions.

Dependencies go up before what needs them, and each entry's archive before
its description, so a reader never sees an entry it cannot complete. What the
cache already describes is skipped (Nix's `copy` does the same); an archive
the cache already holds (same bytes, another description) is not sent again.
Host software is never pushed: it is captured on each machine. Its spec is,
with those of build-only inputs (compilers, tools) and the profile
definitions: they are what `hdenv reproduce HASH --from CACHE` reads to know
the whole state (cachebundle.py), and each is checked by its hash there.
A profile's envelope also carries the signed descriptions of its runtime
closure (up to 8 MiB of them), so that reader asks once, not once per artifact.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..graphs import postorder
from ..store.artifacts import runtime_closure
from ..store.hashing import canonical_json
from ..store.layout import Store, split_id
from ..store.tmpdirs import temp_dir
from .backends import Cache
from .bundle import build_closure
from .inorder import run_in_order
from .pack import pack_artifact
from .signing import PublicKey, SecretKey, SignatureRefused, check, sign, sign_spec, signed_by
from .transfer import Meter, NullMeter, SharedLine, human_size, meter_for


class PushStopped(Exception):
    """An artifact not pushed because the push failed or was interrupted before its turn
    (never shown: what stopped the push is what propagates)."""


@dataclass
class PushReport:
    pushed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    host: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)  # host and build-only specs, for reproduce
    bytes_sent: int = 0
    signed: dict[str, dict[str, Any]] = field(default_factory=dict)  # hash -> what was put


def roots_of(store: Store, refs: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """(artifact ids, profile hash -> name) named by REFs; a profile brings its artifacts.

    The name is the one a REF reached the profile by (`demo`, `demo/3`),
    None for a profile given by hash.
    """
    artifacts: list[str] = []
    profiles: dict[str, str | None] = {}
    for ref in refs:
        resolved = store.resolve(ref)
        if resolved.kind == "profile":
            if resolved.name is not None or resolved.ident not in profiles:
                profiles[resolved.ident] = resolved.name
            spec = store.read_spec(resolved.ident)
            artifacts += list(spec.get("artifacts", []))
        else:
            artifacts.append(resolved.ident)
    return artifacts, profiles


def dependency_order(store: Store, ids: list[str]) -> list[str]:
    """Runtime dependencies before their dependents (ties by id, for stable output)."""
    return postorder(sorted(ids),
                     lambda aid: sorted(store.artifact_meta(aid).get("runtime_deps", [])))


def push(store: Store, refs: list[str], cache: Cache, key: SecretKey,
         say: Callable[[str], None], jobs: int = 1) -> PushReport:
    """Sign and upload the runtime closure of `refs`, then their specs and profiles.

    Up to `jobs` artifacts are packed and uploaded at once (tar, zstd and the
    network leave the GIL), each only after its references are in the cache, so a
    reader never finds an artifact whose references are not there yet; at most
    `jobs` packed archives wait on disk.
    """
    cache.check_writable()
    roots, profiles = roots_of(store, refs)
    report = PushReport()
    order = dependency_order(store, runtime_closure(store, roots))
    work = temp_dir(store, "push-")
    try:
        wanted = []
        kinds = {aid: store.artifact_meta(aid).get("kind") for aid in order}
        present = cache.described([split_id(a)[2] for a in order if kinds[a] != "host"])
        for aid in order:
            if kinds[aid] == "host":
                report.host.append(aid)
            elif split_id(aid)[2] in present:
                report.present.append(aid)
            else:
                wanted.append(aid)
        _push_all(store, wanted, cache, key, work, report, say, max(1, jobs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pushed_specs = {split_id(a)[2] for a in order if a not in report.host}
    for h, spec in sorted(_closure_specs(store, [*profiles, *(split_id(a)[2] for a in roots)],
                                         say).items()):
        if h not in pushed_specs and h not in profiles and not signed_by(cache.spec(h), key.name):
            cache.put_spec(h, sign_spec(h, spec, key))
            report.specs.append(h)
    for phash, name in profiles.items():  # last: a reader that finds a profile finds its parts
        doc = cache.profile(phash)
        if not signed_by(doc, key.name, name) or "descriptions" not in doc:
            spec = store.read_spec(phash)
            closure = [split_id(a)[2] for a in runtime_closure(store, spec.get("artifacts", []))
                       if kinds[a] != "host"]  # its closure is part of `order`
            carried, vouched = _bundled(cache, closure, report.signed, jobs, key)
            cache.put_profile(phash, sign_spec(phash, spec, key, name, carried, vouched))
            report.profiles.append(phash)
    return report


MAX_BUNDLED = 8 << 20
"""Bytes of descriptions a profile's envelope carries at most (a reader takes 16 MiB)."""


def _bundled(cache: Cache, hashes: list[str], signed: dict[str, dict[str, Any]], jobs: int,
             key: SecretKey) -> tuple[dict[str, Any], bool]:
    """(hash -> signed description of each of `hashes`, for the profile's envelope;
    whether `key` signed every one): what this push signed, the rest read from the cache
    (`jobs` at once), each of those checked against `key`'s own signature (the cache may
    hold one another key signed, or one that anybody able to write there changed); none
    if one is missing or they would make the envelope too big (readers then ask for each)."""
    missing = [h for h in hashes if h not in signed]
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="hdenv-push") as pool:
        read = dict(zip(missing, pool.map(cache.description, missing)))
    found = {h: signed.get(h) or read.get(h) for h in sorted(hashes)}
    out = {h: d for h, d in found.items() if d is not None}
    if len(out) < len(found) or sum(len(canonical_json(d)) for d in out.values()) > MAX_BUNDLED:
        return {}, False
    mine = [key.public()]
    return out, all(_signed_with(out[h], mine) for h in missing)


def _signed_with(description: Any, keys: list[PublicKey]) -> bool:
    """Whether one of `keys` made a valid signature of `description` (a cache's copy: it
    may be anything JSON can say)."""
    if not isinstance(description, dict):
        return False
    try:
        check(description, keys)
    except SignatureRefused:
        return False
    return True


def _closure_specs(store: Store, roots: list[str], say: Callable[[str], None]
                   ) -> dict[str, Any]:
    """hash -> spec over the build closure of the roots (what a bundle would carry)."""

    def read(h: str) -> dict[str, Any]:
        try:
            spec: dict[str, Any] = store.read_spec(h)
            return spec
        except (UserError, ValueError):
            say(f"note: spec {h} is not in this store: `reproduce --from` the cache needs it")
            return {}  # no references: the walk goes on without it

    return {h: s for h, s in build_closure(read, roots).items() if s}


def _push_all(store: Store, wanted: list[str], cache: Cache, key: SecretKey, work: Path,
              report: PushReport, say: Callable[[str], None], jobs: int) -> None:
    """Pack and upload each artifact, `jobs` at once, each after its references (at most
    `jobs` packed archives wait on disk); the index a cache keeps is written once."""
    live = jobs == 1  # one at a time: a meter for the packing and the upload too
    # side by side: one line for all (artifacts done, bytes, rate, time left)
    line = SharedLine(len(wanted), sys.stderr, "pushing") \
        if not live and sys.stderr.isatty() else None

    # An archive is packed and uploaded by one of `jobs` at a time; its description
    # (an OCI manifest, a file and an index line) goes up outside them, beside the next
    # packing: at 200 artifacts a registry took ~6 ms for each manifest, during which
    # a core stood idle. Its dependents still start only once it is put.
    archiving = threading.BoundedSemaphore(jobs)
    # What stopped the push (a failure; None: Ctrl-C): the artifacts waiting for their
    # turn never take it, so only the `jobs` under way finish, as before they waited.
    stopped: list[BaseException | None] = []

    @contextlib.contextmanager
    def stops_the_push() -> Iterator[None]:
        try:
            yield
        except BaseException as e:
            stopped.append(e)
            raise

    def one(aid: str) -> tuple[bool, int]:
        with archiving:
            if stopped:
                raise PushStopped(aid)
            with stops_the_push():  # inside: recorded before a waiting thread gets its turn
                description = _pack(store, aid, work, live)
                size = description["archive_size"]
                meter = meter_for(f"uploading {aid.split('/')[0]}", size) if live \
                    else line.part(size) if line is not None else NullMeter()
                signed = sign(description, key)
                report.signed[split_id(aid)[2]] = signed
                sent = _upload(aid, signed, cache, work, meter)
        with stops_the_push():
            cache.put_description(signed)
        return sent, size

    def pushed(aid: str, outcome: tuple[bool, int]) -> None:
        sent, size = outcome
        report.pushed.append(aid)
        if sent:
            report.bytes_sent += size
        note = "" if sent else ", archive already there"
        say(f"pushed {aid} ({human_size(size)}{note})")

    def references(aid: str) -> list[str]:
        refs: list[str] = store.artifact_meta(aid).get("runtime_deps", [])
        return refs

    with cache.batch():  # one at a time when live: its meters draw on one line
        try:
            run_in_order(wanted, references, jobs if live else 2 * jobs, one, done=pushed,
                         interrupted=lambda: stopped.append(None))
        except PushStopped:  # its result came first: say what stopped the push instead
            raise next(e for e in stopped if e is not None) from None


def _pack(store: Store, aid: str, work: Path, live: bool) -> dict[str, Any]:
    meter = meter_for(f"packing {aid.split('/')[0]}", None) if live else NullMeter()
    try:
        # a directory each: two artifacts may pack to the same bytes, so the same name
        description: dict[str, Any] = pack_artifact(store, aid, work / split_id(aid)[2],
                                                    progress=meter.update,
                                                    side_by_side=not live)
    finally:
        meter.close()
    return description


def _upload(aid: str, signed: dict[str, Any], cache: Cache, work: Path, meter: Meter) -> bool:
    """Put one signed entry's archive (its description comes after); whether it was sent
    (else the cache had it)."""
    archive = work / split_id(aid)[2] / f"{signed['archive_sha256']}.tar.zst"
    try:
        return cache.put_archive(signed, archive, meter)
    finally:
        meter.close()
        archive.unlink()

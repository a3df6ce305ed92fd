"""`push` (exchange/push.py): closure order, skipping, host software, profile definitions."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from packfixtures import make_artifact, two_level

from hdenv.exchange.backends import (
    MAKING_STALE_SECONDS,
    UPLOAD_PREFIX,
    CacheUnavailable,
    DirectoryCache,
    open_cache,
)
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey
from hdenv.exchange.transfer import Meter
from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.store.layout import Store


def test_push_order_skips_and_profile_definitions(tmp_path: Path) -> None:
    store = Store(tmp_path / "a").ensure()
    dep, top, phash = two_level(store)
    key = SecretKey.generate("k1")
    lines: list[str] = []
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()
    report = push(store, [phash], cache, key, lines.append)
    assert report.pushed == [dep, top]  # dependencies first
    assert [line.split()[1] for line in lines] == [dep, top]
    assert len(report.host) == 1 and report.profiles == [phash]
    kept = json.loads((tmp_path / "cache" / "profiles" / f"{phash}.json").read_text())
    assert kept["spec"] == store.read_spec(phash) and kept["hash"] == phash  # signed envelope
    again = push(store, [top], cache, key, lines.append)
    assert again.pushed == [] and again.present == [dep, top] and again.bytes_sent == 0


class Watched(DirectoryCache):
    """A real directory cache that notes when each entry's upload began and ended, and
    takes a while over each, as a remote cache would."""

    def __init__(self, root: Path):
        super().__init__(str(root), root)
        self.spans: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        began = time.monotonic()
        time.sleep(0.05)
        with self.lock:
            self.spans[description["id"]] = (began, began)
        return super().put_archive(description, archive, meter)

    def put_description(self, description: dict[str, Any]) -> None:
        time.sleep(0.02)
        super().put_description(description)
        with self.lock:  # the entry exists from here: its dependents may begin
            self.spans[description["id"]] = (self.spans[description["id"]][0], time.monotonic())


def test_push_with_jobs_uploads_side_by_side_but_never_before_the_references(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "a").ensure()
    ids: list[str] = []
    for chain in range(3):  # three chains of three: c0 <- c1 <- c2
        below: list[str] = []
        for level in range(3):
            name = f"c{chain}x{level}"

            def fill(prefix: Path, name: str = name) -> None:
                (prefix / name).write_text(name)

            aid = make_artifact(store, name, fill, deps=below)
            ids.append(aid)
            below = [aid]
    spec = profile_spec(ids, {}, None)
    create_profile(store, spec)
    cache = Watched(tmp_path / "cache")
    lines: list[str] = []
    report = push(store, [profile_hash(spec)], cache, SecretKey.generate("k1"), lines.append,
                  jobs=3)
    assert sorted(report.pushed) == sorted(ids) and report.bytes_sent > 0
    assert sorted(line.split()[1] for line in lines) == sorted(ids)
    for aid in ids:
        for dep in store.artifact_meta(aid)["runtime_deps"]:
            assert cache.spans[dep][1] <= cache.spans[aid][0], (dep, aid)
    spans = sorted(cache.spans.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two uploads overlapped"
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert sorted(index["artifacts"]) == sorted(a.split("/")[2] for a in ids)
    assert not list((store.root / "tmp").rglob("*.tar.zst"))  # each archive gone once sent


def independent_artifacts(store: Store, count: int) -> list[str]:
    """`count` small artifacts that need nothing, each with a file of its own size."""
    ids = []
    for i in range(count):
        def fill(prefix: Path, i: int = i) -> None:
            (prefix / f"data{i}").write_bytes(b"x" * (1000 + i))

        ids.append(make_artifact(store, f"p{i}", fill))
    return ids


class Counted(DirectoryCache):
    """A real directory cache that counts the archives and descriptions being put at
    each moment, each taking a while, as on a remote cache."""

    def __init__(self, root: Path):
        super().__init__(str(root), root)
        self.archiving = self.describing = 0
        self.most_archiving = self.most_at_once = 0
        self.lock = threading.Lock()

    def _count(self, archives: int, descriptions: int) -> None:
        with self.lock:
            self.archiving += archives
            self.describing += descriptions
            self.most_archiving = max(self.most_archiving, self.archiving)
            self.most_at_once = max(self.most_at_once, self.archiving + self.describing)

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        self._count(1, 0)
        try:
            time.sleep(0.05)
            return super().put_archive(description, archive, meter)
        finally:
            self._count(-1, 0)

    def put_description(self, description: dict[str, Any]) -> None:
        self._count(0, 1)
        try:
            time.sleep(0.03)
            super().put_description(description)
        finally:
            self._count(0, -1)


def test_push_puts_descriptions_beside_the_next_archives_never_more_archives(
        tmp_path: Path) -> None:
    """`-j 2`: two archives packed and uploaded at once, never more (each waits on disk
    until it is sent); a description (on a registry, a manifest: a request the registry
    takes its time over) goes up while the next two archives are on their way."""
    store = Store(tmp_path / "a").ensure()
    ids = independent_artifacts(store, 8)
    cache = Counted(tmp_path / "cache")
    report = push(store, ids, cache, SecretKey.generate("k1"), lambda _line: None, jobs=2)
    assert sorted(report.pushed) == sorted(ids)
    assert cache.most_archiving == 2, cache.most_archiving
    assert cache.most_at_once > 2, cache.most_at_once  # descriptions beside two archives


class CutShort(DirectoryCache):
    """A real directory cache whose first archive upload is cut short by `stop`."""

    def __init__(self, root: Path, stop: BaseException):
        super().__init__(str(root), root)
        self.stop = stop
        self.started = 0
        self.lock = threading.Lock()

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        with self.lock:
            self.started += 1
            first = self.started == 1
        time.sleep(0.1)
        if first:
            raise self.stop
        return super().put_archive(description, archive, meter)


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), CacheUnavailable("cache", "went away")],
                         ids=["ctrl-c", "failure"])
def test_a_push_stopped_starts_no_archive_after_it_and_says_why(tmp_path: Path,
                                                                 stop: BaseException) -> None:
    """Ctrl-C or a failure while `-j 2` sends two archives: the one beside it finishes,
    the artifacts already waiting for their turn to pack are not packed and sent, and
    what stopped the push is what it raises."""
    store = Store(tmp_path / "a").ensure()
    ids = independent_artifacts(store, 8)
    cache = CutShort(tmp_path / "cache", stop)
    with pytest.raises(type(stop)) as raised:
        push(store, ids, cache, SecretKey.generate("k1"), lambda _line: None, jobs=2)
    assert raised.value is stop
    assert cache.started <= 2, cache.started  # the one cut short and the one beside it


SWEEPER = """
import sys
from pathlib import Path
from hdenv.exchange.backends import _remove_stale_uploads
folder, ready, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
folder.mkdir(parents=True, exist_ok=True)
ready.touch()
sweeps = 0
while not stop.exists():
    _remove_stale_uploads(folder)
    sweeps += 1
print(sweeps)
"""


def test_a_push_loses_no_upload_to_another_push_sweeping_the_cache(tmp_path: Path) -> None:
    """Every push to a directory first removes the uploads killed pushes left (those whose
    lock it can take). Another push doing that without pause, in a second process, must
    never take an upload between its making and its locking: the push failed on a file
    that was gone (FileNotFoundError in os.chmod), and making it again five times over
    was not enough against this sweeper."""
    store = Store(tmp_path / "a").ensure()
    ids = independent_artifacts(store, 40)
    spec = profile_spec(ids, {}, None)
    create_profile(store, spec)
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()  # the cache exists before the sweeper makes archives/ in it
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    sweeper = subprocess.Popen([sys.executable, "-c", SWEEPER, str(tmp_path / "cache" / "archives"),
                                str(ready), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert sweeper.poll() is None and time.monotonic() < deadline, "no sweeper"
            time.sleep(0.01)
        report = push(store, [profile_hash(spec)], cache, SecretKey.generate("k1"),
                      lambda _line: None, jobs=2)
    finally:
        stop.touch()
        out, _ = sweeper.communicate(timeout=60)
    assert sweeper.returncode == 0 and int(out) > 10, out  # it swept all along the push
    assert sorted(report.pushed) == sorted(ids)
    archives = sorted(os.listdir(tmp_path / "cache" / "archives"))
    assert len(archives) == len(ids) and not [a for a in archives if a.startswith(".")]


def test_a_push_sweeps_only_uploads_nobody_is_making(tmp_path: Path) -> None:
    """What a push's sweep of `archives/` removes: uploads whose push died (unlocked
    `.tmp`, or a `.new` older than MAKING_STALE_SECONDS: killed between making and
    locking it). What it keeps: an upload another push holds locked, a `.new` made a
    moment ago (its push is about to lock it), a link (never followed), other names."""
    store = Store(tmp_path / "a").ensure()
    aid = make_artifact(store, "p", lambda prefix: (prefix / "data").write_bytes(b"x" * 100))
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()  # a cache already, as one a killed push left
    archives = tmp_path / "cache" / "archives"
    archives.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"mine")
    files = {name: archives / f"{UPLOAD_PREFIX}{name}" for name in
             ("dead.tmp", "held.tmp", "young.new", "old.new", "old-held.new")}
    for path in files.values():
        path.write_bytes(b"partial")
    long_ago = time.time() - MAKING_STALE_SECONDS - 60
    for name in ("old.new", "old-held.new"):
        os.utime(files[name], (long_ago, long_ago))
    link = archives / f"{UPLOAD_PREFIX}link.tmp"
    link.symlink_to(victim)
    other = archives / "notes.txt"
    other.write_text("kept")
    holders = [os.open(files[name], os.O_RDONLY) for name in ("held.tmp", "old-held.new")]
    try:
        for fd in holders:  # as a live push holds its upload (a lock per open file)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        report = push(store, [aid], cache, SecretKey.generate("k1"), lambda _line: None)
    finally:
        for fd in holders:
            os.close(fd)
    assert report.pushed == [aid]
    left = sorted(n for n in os.listdir(archives) if not n.endswith(".tar.zst"))
    assert left == sorted([f"{UPLOAD_PREFIX}held.tmp", f"{UPLOAD_PREFIX}young.new",
                           f"{UPLOAD_PREFIX}old-held.new", f"{UPLOAD_PREFIX}link.tmp",
                           "notes.txt"]), left
    assert link.is_symlink() and victim.read_bytes() == b"mine"

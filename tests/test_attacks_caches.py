"""Attacks by a binary cache (issue 21, items 7, 8, 9, 10 and 20b), over real loopback servers.

A built and pushed one-package stack is fetched through tests/badserver.py,
which trickles, over-sends or answers without end; the real `hdenv build`
must abandon the cache with one line and build from source, or stop at once
on Ctrl-C. A push killed with SIGKILL leaves an upload the next push removes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packfixtures import make_artifact
from servers import bad_http_server
from test_cachebundle import pushed, reproduce_into

from hdenv.errors import UserError
from hdenv.exchange.backends import open_cache
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey
from hdenv.exchange.substitute import mostly_bytes
from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.store.hashing import canonical_json, spec_hash
from hdenv.store.layout import Store

pytestmark = pytest.mark.slow

STACK = """
[stack]
name = "tiny"

[packages.tiny]
version = "1.0"
script = '''
mkdir -p "$PREFIX/share"
{fill}
'''

[profiles.tiny]
packages = ["tiny"]
"""


@dataclass
class Tiny:
    work: Path
    stack: Path
    secret: Path
    public: str
    cache: Path

    def env(self, store: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HDENV_")}
        return {**env, "HDENV_STORE": str(store), "HDENV_CONFIG": str(self.work / "config.toml"),
                "XDG_CONFIG_HOME": str(self.work / "xdg"), "HDENV_TRUSTED_KEYS": self.public,
                **extra}

    def argv(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).parent / "hdenv"), *args]

    def run(self, store: Path, *args: str, timeout: float = 120, **extra: str
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env(store, **extra), text=True,
                              capture_output=True, timeout=timeout)


def make_tiny(work: Path, fill: str = 'echo hi > "$PREFIX/share/x"') -> Tiny:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.toml").write_text("")
    stack = work / "stack.toml"
    stack.write_text(STACK.format(fill=fill))
    tiny = Tiny(work, stack, work / "xdg" / "hdenv" / "keys" / "k1.secret", "", work / "cache")
    a = work / "store-a"
    tiny.public = tiny.run(a, "cache", "keygen", "k1").stdout.strip()
    assert tiny.run(a, "build", str(stack)).returncode == 0
    return tiny


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiny]:
    t = make_tiny(tmp_path_factory.mktemp("tiny"))
    proc = t.run(t.work / "store-a", "push", "tiny", "--to", str(t.cache), "--key", str(t.secret))
    assert proc.returncode == 0, proc.stderr
    yield t


def build_through(tiny: Tiny, url: str, store: Path, **extra: str
                  ) -> subprocess.CompletedProcess[str]:
    return tiny.run(store, "build", str(tiny.stack), timeout=60, HDENV_CACHES=url, **extra)


def assert_built_from_source(proc: subprocess.CompletedProcess[str], store: Path) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "no usable cache copy" in proc.stderr and "building from source" in proc.stderr
    assert "1 built" in proc.stderr and "Traceback" not in proc.stderr
    assert (store / "artifacts").is_dir()


@pytest.mark.parametrize("made_up", ["profile", "host"])
def test_7_reproduce_refuses_an_unsigned_profile_or_host_spec(tmp_path: Path, made_up: str
                                                              ) -> None:
    a, ids, cache, key = pushed(tmp_path)  # every artifact validly signed by k1
    evil = tmp_path / "evil"
    evil.write_text(f"#!/bin/sh\ntouch {tmp_path}/ran\n")
    evil.chmod(0o755)
    if made_up == "profile":
        spec = {**a.read_spec(ids["profile"]), "env": {"PATH": str(tmp_path),
                                                      "BASH_ENV": str(evil)}}
    else:
        program = {"path": str(evil), "version": "1"}  # reproduce's drift check runs it
        spec = {"kind": "host", "name": "cc", "version": "1", "programs": {"cc": program}}
    h = spec_hash(spec)
    (cache / "profiles" / f"{h}.json").write_bytes(canonical_json(spec) + b"\n")
    b = Store(tmp_path / "b")
    with pytest.raises(UserError) as e:
        reproduce_into(b.root, h, cache, [str(key.public())])
    assert e.value.message.startswith(f"--from {cache}: refusing spec {h}: not signed"), \
        e.value.message
    assert "\n" not in e.value.message and not (tmp_path / "ran").exists()
    for sub in (b.artifacts, b.specs, b.root / "profiles"):
        assert not sub.is_dir() or list(sub.iterdir()) == [], sub
    # signed by the trusted key's name but not by the key: refused as well
    forged = {"hdenv-signed-spec": 1, "hash": h, "spec": spec,
              "signatures": [{"key": "k1", "sig": json.loads(
                  (cache / "artifacts" / f"{ids['dep'].split('/')[2]}.json").read_text()
              )["signatures"][0]["sig"]}]}
    (cache / "profiles" / f"{h}.json").write_bytes(canonical_json(forged) + b"\n")
    with pytest.raises(UserError, match=f"refusing spec {h}: bad signature by k1"):
        reproduce_into(b.root, h, cache, [str(key.public())])


def test_8_a_trickling_cache_is_abandoned_and_built_from_source(tiny: Tiny, tmp_path: Path
                                                                 ) -> None:
    store = tmp_path / "b"
    with bad_http_server(tiny.cache, tmp_path / "log", "trickle") as url:
        started = time.monotonic()
        proc = build_through(tiny, url, store, HDENV_CACHE_LOW_SPEED_TIME="2")
    assert time.monotonic() - started < 30
    assert_built_from_source(proc, store)
    assert "too slow" in proc.stderr or "stalled" in proc.stderr, proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_8_a_signal_stops_a_download_at_once(tiny: Tiny, tmp_path: Path, signum: int) -> None:
    store = tmp_path / "b"
    with bad_http_server(tiny.cache, tmp_path / "log", "trickle") as url:
        proc = subprocess.Popen(tiny.argv("build", str(tiny.stack)), text=True,
                                env=tiny.env(store, HDENV_CACHES=url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while "GET /archives/" not in (tmp_path / "log").read_text():
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            time.sleep(0.5)  # the download thread is waiting for the next byte
            proc.send_signal(signum)
            sent = time.monotonic()
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                pytest.fail("the build went on downloading after the signal")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert time.monotonic() - sent < 5
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and not any(
        (store / "artifacts").glob("tiny/*/*/share")), err



@pytest.mark.parametrize(("size", "count", "in_threads"), [
    (1_000_000, 2, True), (4096, 6, False)], ids=["threads", "processes"])
def test_8_ctrl_c_stops_a_reproduce_while_its_downloads_trickle(
        tmp_path: Path, size: int, count: int, in_threads: bool) -> None:
    """`reproduce -j 2` of artifacts of noise, installing in its threads (big archives:
    substitute.mostly_bytes) or in worker processes (small ones). Every download
    trickles; SIGINT cuts them short (the pull used to wait for them, up to the stall
    limit) and ends the command at once, with one line and nothing registered."""
    a = Store(tmp_path / "a").ensure()

    def noise(i: int) -> Callable[[Path], object]:
        return lambda prefix: (prefix / f"noise{i}").write_bytes(os.urandom(size))

    ids = [make_artifact(a, f"big{i}", noise(i)) for i in range(count)]
    spec = profile_spec(ids, {}, None)
    create_profile(a, spec)
    key = SecretKey.generate("k1")
    cache = tmp_path / "cache"
    push(a, [profile_hash(spec)], open_cache(str(cache)), key, lambda _m: None)
    descriptions = [json.loads(p.read_text()) for p in (cache / "artifacts").glob("*.json")]
    assert mostly_bytes(descriptions) is in_threads
    store, log = tmp_path / "b", tmp_path / "log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HDENV_")},
           "HDENV_CONFIG": os.devnull, "HDENV_TRUSTED_KEYS": str(key.public())}
    with bad_http_server(cache, log, "trickle") as url:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "hdenv"), "--store",
                                 str(store), "reproduce", profile_hash(spec), "--from", url,
                                 "-j", "2"], env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, restore_signals=True)
        try:
            deadline = time.monotonic() + 30
            while log.read_text().count("GET /archives/") < 2:  # both lanes downloading
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert time.monotonic() - sent < 5
    assert proc.returncode == 130 and "interrupted by SIGINT" in err, err
    assert "Traceback" not in err and not list(store.glob("artifacts/*/*/*/.hdenv/artifact.json"))


def test_9_an_oversent_archive_is_cut_at_its_signed_size(tiny: Tiny, tmp_path: Path) -> None:
    store = tmp_path / "b"
    with bad_http_server(tiny.cache, tmp_path / "log", "oversend") as url:
        proc = build_through(tiny, url, store)
    assert_built_from_source(proc, store)
    assert "archive: sent more than the" in proc.stderr, proc.stderr


def test_10_a_huge_description_is_refused_unread(tiny: Tiny, tmp_path: Path) -> None:
    store = tmp_path / "b"
    with bad_http_server(tiny.cache, tmp_path / "log", "bigmeta") as url:
        proc = build_through(tiny, url, store)
    assert_built_from_source(proc, store)
    assert f"{url}: artifacts/" in proc.stderr and "bytes; refused unread" in proc.stderr, \
        proc.stderr


def test_20_a_push_killed_midway_leaves_an_upload_the_next_push_removes(tmp_path: Path
                                                                         ) -> None:
    big = make_tiny(tmp_path / "big", 'head -c 100000000 /dev/urandom > "$PREFIX/share/blob"')
    archives = big.cache / "archives"
    argv = big.argv("push", "tiny", "--to", str(big.cache), "--key", str(big.secret))
    env = big.env(big.work / "store-a")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (archives.is_dir() and any(n.startswith(".upload-") and n.endswith(".tmp")
                                             for n in os.listdir(archives))):
            assert proc.poll() is None and time.monotonic() < deadline, "push never uploaded"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    left = [n for n in os.listdir(archives) if n.startswith(".upload-")]
    assert left, "the kill came too late to leave an upload"
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert [n for n in os.listdir(archives) if n.startswith(".upload-")] == []
    assert len(os.listdir(archives)) == 1

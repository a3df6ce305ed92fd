"""Taking artifacts from caches (exchange/substitute.py).

Artifacts are made with install_artifact, pushed with the real push code to
directory caches, and pulled into other stores.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from packfixtures import make_artifact, two_level
from servers import free_port

from hdenv.exchange import substitute
from hdenv.exchange.backends import Cache, DirectoryCache, open_cache
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey
from hdenv.exchange.substitute import Fetched, MeterFactory, Substituter, terminal_meter
from hdenv.exchange.transfer import Meter, Sink
from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.store.layout import Store
from hdenv.store.verify import verify_artifact

T = TypeVar("T")


def pushed(tmp_path: Path) -> tuple[str, str, Cache, SecretKey]:
    """Two artifacts built in a store with a long root, pushed to a directory cache."""
    a = Store(tmp_path / "store-a-long-root").ensure()
    dep, top, phash = two_level(a)
    key = SecretKey.generate("k1")
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()
    push(a, [phash], cache, key, lambda _m: None)
    return dep, top, cache, key


def test_references_come_along_and_reasons_name_every_cache(tmp_path: Path) -> None:
    dep, top, cache, key = pushed(tmp_path)
    b = Store(tmp_path / "b").ensure()
    down = f"http://127.0.0.1:{free_port()}/nothing/"
    sub = Substituter(b, [open_cache(down), cache], [key.public()])
    got = sub.fetch(top)  # its reference `dep` is fetched first
    assert isinstance(got, Fetched) and got.signer == "k1"
    assert b.has_artifact(dep) and b.has_artifact(top)
    assert (b.artifact_dir(top) / "uses").read_text() == f"{b.artifact_dir(dep)}/lib\n"
    assert verify_artifact(b, top) == [] and verify_artifact(b, dep) == []
    missing = sub.fetch("nope/1/" + "a" * 32)
    assert missing == (f"{down}: unreachable ([Errno 111] Connection refused);"
                       f" {tmp_path / 'cache'}: not found")
    assert list(sub.dead) == [down]  # asked once, then skipped for the rest of the run


@pytest.mark.parametrize("way", ["arriving", "memory", "file"])
def test_an_archive_is_installed_as_it_arrives_from_memory_or_a_private_file_and_checked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """Archives whose unpacked size is signed are installed as they arrive; without it,
    small ones are downloaded into memory, big ones into the store's tmp (that file is
    gone afterwards); a byte changed in the cache is refused on every path."""
    dep, top, cache, key = pushed(tmp_path)
    if way != "arriving":
        monkeypatch.setattr(substitute, "streams", lambda _description: False)
    monkeypatch.setattr(substitute, "IN_MEMORY", 1 << 30 if way == "memory" else 0)
    b = Store(tmp_path / "b").ensure()
    sub = Substituter(b, [cache], [key.public()])
    assert isinstance(sub.fetch(dep), Fetched) and verify_artifact(b, dep) == []
    described = cache.description(top.split("/")[2])
    assert described is not None
    archive = tmp_path / "cache" / "archives" / f"{described['archive_sha256']}.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 1
    archive.write_bytes(bytes(data))
    got = sub.fetch(top)
    assert isinstance(got, str) and "hash mismatch" in got, got
    assert not b.has_artifact(top) and not b.own_artifact_dir(top).exists()
    assert list(b.tmp.rglob("*.tar.zst")) == []  # no download left behind


def test_a_description_filed_under_another_id_is_refused(tmp_path: Path) -> None:
    dep, top, cache, key = pushed(tmp_path)
    descs = tmp_path / "cache" / "artifacts"
    (descs / f"{top.split('/')[2]}.json").write_bytes(
        (descs / f"{dep.split('/')[2]}.json").read_bytes())
    b = Store(tmp_path / "b").ensure()
    got = Substituter(b, [cache], [key.public()]).fetch(top)
    assert got == f"{tmp_path / 'cache'}: hash mismatch: its description is for {dep}"
    assert not b.has_artifact(top)


def test_a_reference_taken_from_an_upstream_store_is_relocated_there(tmp_path: Path) -> None:
    dep, top, cache, key = pushed(tmp_path)
    site = Store(tmp_path / "site").ensure()  # the site store already has `dep`
    assert isinstance(Substituter(site, [cache], [key.public()]).fetch(dep), Fetched)
    mine = Store(tmp_path / "mine", upstreams=[site.root]).ensure()
    got = Substituter(mine, [cache], [key.public()]).fetch(top)
    assert isinstance(got, Fetched)
    assert not mine.has_own_artifact(dep) and mine.has_own_artifact(top)
    assert (mine.artifact_dir(top) / "uses").read_text() == f"{site.own_artifact_dir(dep)}/lib\n"


CONFIGURED_STACK = """
[packages.dep]
version = "1"
script = 'mkdir -p "$PREFIX/lib" && echo "dep at $PREFIX" > "$PREFIX/lib/where"'
[packages.top]
version = "1"
deps = ["dep"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\ncat %s/lib/where\\n' "$HDENV_DEP_DEP" > "$PREFIX/bin/top"
chmod +x "$PREFIX/bin/top"
'''
"""


def test_signing_key_caches_and_trusted_keys_come_from_config_toml(
        tmp_path: Path, hdenv_exe: str, hdenv_env: dict[str, str]) -> None:
    """No --key, no HDENV_CACHES/HDENV_TRUSTED_KEYS: config.toml alone names them all."""
    base = {k: v for k, v in hdenv_env.items()
            if k not in ("HDENV_CACHES", "HDENV_TRUSTED_KEYS", "HDENV_SIGNING_KEY")}
    base["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")

    def hd(store: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**base, "HDENV_STORE": str(store), "HDENV_CONFIG": str(config)}
        return subprocess.run([hdenv_exe, *args], env=env, capture_output=True, text=True,
                              timeout=300)

    stack = tmp_path / "s.toml"
    stack.write_text(CONFIGURED_STACK)
    a, cache = tmp_path / "store-a-with-a-longer-root", tmp_path / "cache"
    a_config = tmp_path / "a.toml"
    a_config.write_text("")
    k1 = hd(a, a_config, "cache", "keygen", "k1").stdout.strip()
    k2 = hd(a, a_config, "cache", "keygen", "k2").stdout.strip()
    assert k1.startswith("k1:") and k2.startswith("k2:")
    assert hd(a, a_config, "build", str(stack)).returncode == 0
    # two keys and nothing configured: push cannot guess which one to sign with
    refused = hd(a, a_config, "push", "s", "--to", str(cache))
    assert refused.returncode == 2 and "several signing keys" in refused.stderr
    k2_secret = tmp_path / "xdg" / "hdenv" / "keys" / "k2.secret"
    a_config.write_text(f'signing-key = "{k2_secret}"\n')
    shown = hd(a, a_config, "config").stdout
    assert f'signing-key = "{k2_secret}"' in shown and f"# {a_config}" in shown
    pushed = hd(a, a_config, "push", "s", "--to", str(cache))
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed 2 artifact(s)" in pushed.stderr

    # a store that trusts only k1 (from config) refuses the k2 signatures and builds
    b1, b1_config = tmp_path / "b1", tmp_path / "b1.toml"
    b1_config.write_text(f'caches = ["{cache}"]\ntrusted-keys = ["{k1}"]\n')
    built = hd(b1, b1_config, "build", str(stack))
    assert built.returncode == 0, built.stderr
    assert f"({cache}: untrusted key: signed by k2; trusted: k1); building from source" \
        in built.stderr
    assert "2 built" in built.stderr

    # the store that trusts k2 in its config.toml takes both from the cache
    b, b_config = tmp_path / "b", tmp_path / "b.toml"
    b_config.write_text(f'caches = ["{cache}"]\ntrusted-keys = ["{k2}"]\n')
    shown_lines = hd(b, b_config, "config").stdout.splitlines()
    assert any(line.startswith(f'caches = ["{cache}"]') and line.endswith(f"# {b_config}")
               for line in shown_lines), shown_lines
    assert any(line.startswith(f'trusted-keys = ["{k2}"]') and line.endswith(f"# {b_config}")
               for line in shown_lines), shown_lines
    got = hd(b, b_config, "build", str(stack))
    assert got.returncode == 0, got.stderr
    assert "0 built, 2 fetched" in got.stderr
    assert f"from {cache} (" in got.stderr and "signed by k2" in got.stderr
    top = Path(hd(b, b_config, "path", "s").stdout.strip()) / "bin" / "top"
    ran = subprocess.run([str(top)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert ran.stdout.startswith(f"dep at {b}/artifacts/dep/1/"), ran.stdout + ran.stderr
    verify = hd(b, b_config, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_fetch_many_installs_references_first_and_skips_what_a_failure_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dep, top, cache, key = pushed(tmp_path)
    b = Store(tmp_path / "b").ensure()
    sub = Substituter(b, [cache], [key.public()])
    refs = {top: [dep], dep: []}
    started: list[str] = []
    real_fetch = sub.fetch

    def recording_fetch(aid: str, meter: MeterFactory = terminal_meter) -> Fetched | str:
        started.append(aid)
        assert aid != top or b.has_artifact(dep)  # its reference arrived first
        return real_fetch(aid)

    monkeypatch.setattr(sub, "fetch", recording_fetch)
    got = sub.fetch_many([top, dep], refs.__getitem__, jobs=4)
    assert started == [dep, top]
    assert isinstance(got[dep], Fetched) and isinstance(got[top], Fetched)
    assert verify_artifact(b, top) == [] and verify_artifact(b, dep) == []
    # a reference that no cache has: what needs it is never asked for
    c = Store(tmp_path / "c").ensure()
    (tmp_path / "cache" / "artifacts" / f"{dep.split('/')[2]}.json").unlink()
    started.clear()
    sub2 = Substituter(c, [cache], [key.public()])
    got2 = sub2.fetch_many([top, dep], refs.__getitem__, jobs=4)
    assert got2[dep] == f"{tmp_path / 'cache'}: not found"
    assert got2[top] == f"needs {dep}, which no cache provided"
    assert not c.has_artifact(top) and not c.has_artifact(dep)


def test_fetch_many_has_several_transfers_in_flight(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dep, top, cache, key = pushed(tmp_path)
    sub = Substituter(Store(tmp_path / "b").ensure(), [cache], [key.public()])

    def meeting(timeout: float) -> Callable[[str, MeterFactory], Fetched | str]:
        barrier = threading.Barrier(2, timeout=timeout)

        def fetch(aid: str, meter: MeterFactory = terminal_meter) -> Fetched | str:
            barrier.wait()  # both must be running at once, or this breaks
            return "met"
        return fetch

    monkeypatch.setattr(sub, "fetch", meeting(30))
    assert sub.fetch_many([dep, top], lambda _aid: [], jobs=2) == {dep: "met", top: "met"}
    monkeypatch.setattr(sub, "fetch", meeting(1))
    with pytest.raises(threading.BrokenBarrierError):  # -j 1: one at a time, never both
        sub.fetch_many([dep, top], lambda _aid: [], jobs=1)


def test_fetch_many_keeps_to_jobs_transfers_while_more_artifacts_are_under_way(
        tmp_path: Path) -> None:
    """-j 2 with installs in processes: four artifacts are under way, so one downloads
    while another installs, but never more than two requests reach the cache at once."""
    a = Store(tmp_path / "a").ensure()

    def leaf(i: int) -> Callable[[Path], object]:
        return lambda prefix: (prefix / f"leaf{i}").write_bytes(bytes(range(256)) * 64 * i)

    ids = [make_artifact(a, f"leaf{i}", leaf(i)) for i in range(8)]
    spec = profile_spec(ids, {}, None)
    create_profile(a, spec)
    key = SecretKey.generate("k1")
    cache = open_cache(str(tmp_path / "cache"))
    push(a, [profile_hash(spec)], cache, key, lambda _m: None)
    counting = CountingCache(cache.url, tmp_path / "cache")
    b = Store(tmp_path / "b").ensure()
    got = Substituter(b, [counting], [key.public()]).fetch_many(ids, lambda _aid: [], jobs=2)
    assert all(isinstance(g, Fetched) for g in got.values()), got
    assert [verify_artifact(b, i) for i in ids] == [[]] * len(ids)
    assert counting.most == 2  # side by side (they each wait a while), and never three


@pytest.mark.parametrize("jobs", [1, 2])
def test_installs_in_processes_get_archives_above_in_pipe_as_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """With installs in worker processes (-j 2) an archive bigger than IN_PIPE reaches its
    worker as a private file, not through the pool's pipe; installing here (-j 1), it
    stays in memory up to IN_MEMORY. Either way no download is left in tmp/."""
    a = Store(tmp_path / "a").ensure()

    def data(i: int) -> Callable[[Path], object]:
        return lambda prefix: (prefix / f"data{i}").write_bytes(bytes(range(256)) * 16 * (i + 1))

    ids = [make_artifact(a, f"leaf{i}", data(i)) for i in range(3)]
    key = SecretKey.generate("k1")
    cache = open_cache(str(tmp_path / "cache"))
    spec = profile_spec(ids, {}, None)
    create_profile(a, spec)
    push(a, [profile_hash(spec)], cache, key, lambda _m: None)
    monkeypatch.setattr(substitute, "IN_PIPE", 0)
    files: list[Path] = []
    real = substitute.temp_file

    def counted(*args: Any) -> Any:
        made = real(*args)
        files.append(made[1])
        return made

    monkeypatch.setattr(substitute, "temp_file", counted)
    b = Store(tmp_path / "b").ensure()
    got = Substituter(b, [cache], [key.public()]).fetch_many(ids, lambda _aid: [], jobs=jobs)
    assert all(isinstance(g, Fetched) for g in got.values()), got
    assert [verify_artifact(b, i) for i in ids] == [[]] * len(ids)
    assert len(files) == (len(ids) if jobs > 1 else 0)
    assert list(b.tmp.rglob("*.tar.zst")) == []



@pytest.mark.parametrize(("sizes", "described", "in_workers"), [
    ([3 << 20, 3 << 20], True, False),  # few archives, mostly bytes: threads
    ([4096] * 6, True, True),  # many small ones: Python per artifact, processes
    ([3 << 20, 3 << 20], False, True),  # descriptions not at hand: processes
])
def test_a_pull_installs_in_threads_when_its_archives_are_mostly_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sizes: list[int], described: bool,
        in_workers: bool) -> None:
    """By the descriptions checked before the pull (reproduce --from has them all): few
    big archives install in this process's threads, many small ones in processes."""
    a = Store(tmp_path / "a").ensure()

    def data(i: int, size: int) -> Callable[[Path], object]:
        return lambda prefix: (prefix / f"data{i}").write_bytes(os.urandom(size))

    ids = [make_artifact(a, f"leaf{i}", data(i, size)) for i, size in enumerate(sizes)]
    key = SecretKey.generate("k1")
    cache = open_cache(str(tmp_path / "cache"))
    spec = profile_spec(ids, {}, None)
    create_profile(a, spec)
    push(a, [profile_hash(spec)], cache, key, lambda _m: None)
    pids = tmp_path / "pids"
    real = substitute.install_packed

    def noting_pid(*args: Any, **kwargs: Any) -> Any:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(substitute, "install_packed", noting_pid)
    prefetched = {}
    if described:
        for aid in ids:
            found = cache.description(aid.split("/")[2])
            assert found is not None
            prefetched[(cache.url, aid.split("/")[2])] = substitute.Checked(
                aid, found, substitute.check_entry(found, aid, [key.public()]))
    b = Store(tmp_path / "b").ensure()
    got = Substituter(b, [cache], [key.public()], prefetched=prefetched).fetch_many(
        ids, lambda _aid: [], jobs=2)
    assert all(isinstance(g, Fetched) for g in got.values()), got
    assert [verify_artifact(b, i) for i in ids] == [[]] * len(ids)
    here = [int(pid) == os.getpid() for pid in pids.read_text().split()]
    assert len(here) == len(ids) and not any(here) if in_workers else all(here)


class CountingCache(DirectoryCache):
    """A cache whose requests take 50 ms each and are counted while they run."""

    def __init__(self, url: str, root: Path):
        super().__init__(url, root)
        self.now = self.most = 0
        self.lock = threading.Lock()

    def _counted(self, call: Callable[[], T]) -> T:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.05)
            return call()
        finally:
            with self.lock:
                self.now -= 1

    def description(self, hash_: str) -> Any:
        return self._counted(lambda: super(CountingCache, self).description(hash_))

    def fetch_archive(self, sha: str, out: Sink, meter: Meter, limit: int | None = None
                      ) -> tuple[int, str]:
        return self._counted(lambda: super(CountingCache, self).fetch_archive(
            sha, out, meter, limit=limit))

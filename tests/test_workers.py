"""Installs in forked worker processes (exchange/workers.py), and fetch_many through them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_substitute import pushed

from hdenv.exchange import relocate, substitute, workers
from hdenv.exchange.pack import ArchiveRefused
from hdenv.exchange.relocate import CannotRelocate
from hdenv.exchange.substitute import Fetched, Substituter
from hdenv.store.layout import Store
from hdenv.store.verify import verify_artifact

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def where(tag: str) -> tuple[int, str]:
    return os.getpid(), tag


def refuse(aid: str) -> None:
    raise ArchiveRefused(aid, "no, thanks")


def test_a_task_runs_in_another_process_and_its_refusal_comes_back_whole() -> None:
    pool = workers.ForkedPool(2, where)
    try:
        pids = {pool(str(i))[0] for i in range(20)}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert pool("x")[1] == "x"
    finally:
        pool.close()
    pool = workers.ForkedPool(2, refuse)
    try:
        with pytest.raises(ArchiveRefused) as caught:
            pool("zlib/1/" + "a" * 32)
        assert caught.value.artifact == "zlib/1/" + "a" * 32
        assert caught.value.reason == "no, thanks"
    finally:
        pool.close()


ORPHANS = """
import os, sys, time
from hdenv.exchange import workers
pool = workers.ForkedPool(2, os.getpid)
pids = {pool() for _ in range(20)}
print(" ".join(map(str, sorted(pids))), flush=True)
os.kill(os.getpid(), 9)  # no shutdown, no atexit: as `kill -9` or the OOM killer does
"""


def test_workers_ignore_ctrl_c_and_end_with_the_puller() -> None:
    pool = workers.ForkedPool(2, os.getpid)
    try:
        pids = {pool() for _ in range(20)}
        for pid in pids:
            os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        time.sleep(0.2)
        assert {pool() for _ in range(20)} <= pids  # still there, still working
    finally:
        pool.close()
    proc = subprocess.run([sys.executable, "-c", ORPHANS], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    orphans = [int(p) for p in proc.stdout.split()]
    assert orphans
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in orphans):
        time.sleep(0.05)
    assert not [p for p in orphans if Path(f"/proc/{p}").exists()], "workers outlived it"


def test_fetch_many_installs_in_workers_and_hears_their_refusals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dep, top, cache, key = pushed(tmp_path)
    b = Store(tmp_path / "b").ensure()
    real = substitute.install_packed
    pids = tmp_path / "pids"

    def noting(*args: Any, **kwargs: Any) -> bool:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(substitute, "install_packed", noting)
    got = Substituter(b, [cache], [key.public()]).fetch_many(
        [dep, top], {top: [dep], dep: []}.__getitem__, jobs=2)
    assert isinstance(got[dep], Fetched) and isinstance(got[top], Fetched)
    installed_by = [int(p) for p in pids.read_text().split()]
    assert len(installed_by) == 2 and os.getpid() not in installed_by
    assert verify_artifact(b, dep) == [] and verify_artifact(b, top) == []
    installers = {(b.artifact_meta(a).get("installed_from") or {}).get("source")
                  for a in (dep, top)}
    assert installers == {cache.url}

    def cannot(self: relocate.Relocator, rel: str, data: bytes) -> bytes:
        raise CannotRelocate(f"{rel} is in the way")

    monkeypatch.setattr(relocate.Relocator, "file_data", cannot)  # the forked workers too
    c = Store(tmp_path / "c").ensure()
    got = Substituter(c, [cache], [key.public()]).fetch_many(
        [dep, top], {top: [dep], dep: []}.__getitem__, jobs=2)
    refused = got[dep]
    assert isinstance(refused, str) and "cannot relocate:" in refused, got
    assert got[top] == f"needs {dep}, which no cache provided"
    assert not c.has_artifact(dep) and not c.own_artifact_dir(dep).exists()

"""Installing an archive while it downloads (exchange/arriving.py).

The pipe on its own, then real pulls from a directory cache into a store with
another root: a real program whose run path patchelf must rewrite, an archive
swapped or cut short in the cache, and a signed unpacked size the archive
overruns.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from packfixtures import make_artifact
from test_relocate import build_program

from hdenv.exchange import relocate, substitute
from hdenv.exchange.arriving import Abandoned, Arriving
from hdenv.exchange.backends import Cache, open_cache
from hdenv.exchange.pack import UNPACKED_SIZE
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey, sign
from hdenv.exchange.substitute import Fetched, Substituter
from hdenv.store.layout import Store
from hdenv.store.verify import verify_artifact

# -- the pipe ---------------------------------------------------------------


def test_a_read_takes_what_has_arrived_and_the_end_reads_empty() -> None:
    pipe = Arriving()
    pipe.write(b"abc")
    pipe.write(b"defg")
    assert pipe.read(5) == b"abcde"  # across two writes
    assert pipe.read(100) == b"fg"  # what there is: it does not wait for 100
    def more() -> None:
        pipe.write(b"hi")
        pipe.end()

    later = threading.Timer(0.05, more)
    later.start()
    assert pipe.read(10) == b"hi"  # waited for it
    assert pipe.read(10) == b""
    later.join()


def test_the_download_waits_while_the_pipe_holds_its_limit() -> None:
    pipe = Arriving(hold=8)
    pipe.write(b"12345678")
    wrote = threading.Event()

    def write() -> None:
        pipe.write(b"9")
        wrote.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not wrote.wait(0.2)  # full: the download waits for the installer
    assert pipe.read(3) == b"123"
    assert wrote.wait(5)
    writer.join()
    pipe.end()
    assert pipe.read(-1) == b"456789"


def test_after_drop_writes_keep_nothing_and_after_stop_they_raise() -> None:
    pipe = Arriving(hold=4)
    pipe.write(b"1234")
    pipe.drop()
    assert pipe.write(b"5678" * 10) == 40  # accepted at once, kept nowhere
    assert pipe.read(10) == b""
    pipe.stop()
    with pytest.raises(Abandoned):
        pipe.write(b"x")


# -- pulls that install as they arrive ---------------------------------------


def with_program(work: Path, extra: int) -> Any:
    """An artifact with a real program (its run path into its own lib) and `extra` bytes
    of noise, so that two variants differ in size."""
    def fill(prefix: Path) -> None:
        build_program(work, prefix)
        (prefix / "share" / "noise").write_bytes(os.urandom(extra))
    return fill


@pytest.fixture
def pulled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A program pushed from a store with a long root; patchelf's runs recorded."""
    a = Store(tmp_path / "store-a-with-a-long-root").ensure()
    app = make_artifact(a, "app", with_program(tmp_path, 64 << 10))
    other = make_artifact(a, "other", with_program(tmp_path, 1 << 10))
    key = SecretKey.generate("k1")
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()
    push(a, [app, other], cache, key, lambda _m: None)
    patched: list[str] = []
    real = relocate.set_runpath

    def recorded(path: Any, entries: Any, **kw: Any) -> None:
        patched.append(str(path))
        real(path, entries, **kw)

    monkeypatch.setattr(relocate, "set_runpath", recorded)
    return {"a": a, "app": app, "other": other, "cache": cache, "key": key,
            "patched": patched, "dir": tmp_path / "cache", "b": Store(tmp_path / "b").ensure()}


def archive_of(cache: Cache, root: Path, aid: str) -> Path:
    described = cache.description(aid.split("/")[2])
    assert described is not None and isinstance(described.get(UNPACKED_SIZE), int)
    return root / "archives" / f"{described['archive_sha256']}.tar.zst"


def fetch(p: dict[str, Any], aid: str) -> Fetched | str:
    return Substituter(p["b"], [p["cache"]], [p["key"].public()]).fetch(aid)


def nothing_left(store: Store, aid: str) -> None:
    assert not store.has_artifact(aid) and not store.own_artifact_dir(aid).exists()


def test_a_program_installed_as_it_arrives_is_patched_after_the_check_and_runs(
        pulled: dict[str, Any]) -> None:
    got = fetch(pulled, pulled["app"])
    assert isinstance(got, Fetched), got
    b: Store = pulled["b"]
    prog = b.artifact_dir(pulled["app"]) / "bin" / "prog"
    assert len(pulled["patched"]) == 1  # its run path, rewritten once the hash matched
    proc = subprocess.run([str(prog)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.startswith("42 "), proc
    assert verify_artifact(b, pulled["app"]) == []


def test_another_archive_in_its_place_is_written_but_never_patched_or_registered(
        pulled: dict[str, Any]) -> None:
    """The cache serves the smaller variant's archive, whole and valid, for the program:
    every file of it is written before the end shows the hash, and then refused."""
    cache, root = pulled["cache"], pulled["dir"]
    wanted = archive_of(cache, root, pulled["app"])
    os.chmod(wanted, 0o644)
    wanted.write_bytes(archive_of(cache, root, pulled["other"]).read_bytes())
    got = fetch(pulled, pulled["app"])
    assert isinstance(got, str) and "hash mismatch: archive has" in got, got
    assert pulled["patched"] == []  # patchelf never saw those bytes
    nothing_left(pulled["b"], pulled["app"])


def test_an_archive_cut_short_is_refused_for_its_size_not_as_a_corrupt_tar(
        pulled: dict[str, Any]) -> None:
    wanted = archive_of(pulled["cache"], pulled["dir"], pulled["app"])
    data = wanted.read_bytes()
    os.chmod(wanted, 0o644)
    wanted.write_bytes(data[:len(data) // 2])
    got = fetch(pulled, pulled["app"])
    assert got == (f"{pulled['dir']}: hash mismatch: archive has {len(data) // 2} bytes,"
                   f" {len(data)} described"), got
    nothing_left(pulled["b"], pulled["app"])


def test_an_archive_that_decompresses_past_its_signed_size_is_refused(
        pulled: dict[str, Any]) -> None:
    path = pulled["dir"] / "artifacts" / f"{pulled['app'].split('/')[2]}.json"
    described = json.loads(path.read_text())
    described = {k: v for k, v in described.items() if k != "signatures"}
    os.chmod(path, 0o644)
    path.write_text(json.dumps(sign({**described, UNPACKED_SIZE: 4096}, pulled["key"])))
    got = fetch(pulled, pulled["app"])
    assert got == (f"{pulled['dir']}: corrupt archive: decompresses to more than the 4096"
                   " bytes described"), got
    nothing_left(pulled["b"], pulled["app"])


def test_without_a_signed_unpacked_size_the_archive_is_checked_before_it_is_read(
        pulled: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """An older hdenv's description: downloaded whole, checked, then installed."""
    streamed: list[object] = []
    real = substitute.Streamed.start

    def start(*args: Any) -> Any:
        streamed.append(args)
        return real(*args)

    monkeypatch.setattr(substitute.Streamed, "start", start)
    path = pulled["dir"] / "artifacts" / f"{pulled['app'].split('/')[2]}.json"
    described = json.loads(path.read_text())
    described = {k: v for k, v in described.items() if k not in ("signatures", UNPACKED_SIZE)}
    os.chmod(path, 0o644)
    path.write_text(json.dumps(sign(described, pulled["key"])))
    assert isinstance(fetch(pulled, pulled["app"]), Fetched)
    assert streamed == [] and len(pulled["patched"]) == 1
    assert isinstance(fetch(pulled, pulled["other"]), Fetched)  # this one did stream
    assert len(streamed) == 1

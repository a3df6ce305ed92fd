"""The store's layout (store/layout.py): specs written many at once, and whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hdenv.errors import DamagedFile
from hdenv.store.artifacts import install_artifact
from hdenv.store.hashing import spec_hash
from hdenv.store.layout import Store
from hdenv.store.verify import verify_artifact


def test_write_specs_writes_each_once_and_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    specs = {}
    for i in range(40):
        spec = {"kind": "build", "name": f"p{i}", "version": "1", "deps": [], "script": "x" * i}
        specs[spec_hash(spec)] = spec
    first = next(iter(specs))
    store.write_spec(first, specs[first])
    before = os.stat(store.spec_path(first))
    store.write_specs(specs, jobs=4)
    for h, spec in specs.items():
        assert json.loads(store.spec_path(h).read_text()) == spec
        assert spec_hash(store.read_spec(h)) == h
    after = os.stat(store.spec_path(first))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # kept
    assert [p.name for p in store.specs.iterdir() if p.name.endswith(".tmp")] == []


def test_a_spec_a_power_cut_cut_short_is_reported_and_written_again(tmp_path: Path) -> None:
    """An artifact's spec is not synced (its artifact.json is, after it): what a power cut
    can leave is a short file, which `verify` names and the next install rewrites."""
    store = Store(tmp_path / "s").ensure()
    spec = {"kind": "build", "name": "p", "version": "1", "deps": [], "script": "true"}
    aid, _ = install_artifact(store, spec, lambda _prefix, _fd, _pfd: None, runtime_deps=[])
    hash_ = aid.rsplit("/", 1)[1]
    assert verify_artifact(store, aid) == []
    written = store.spec_path(hash_).read_bytes()
    for short in (b"", written[: len(written) // 2]):
        store.spec_path(hash_).write_bytes(short)
        assert verify_artifact(store, aid) == [
            f"{aid}: specs/{hash_}.json is damaged (not valid JSON; truncated?)"]
        with pytest.raises(DamagedFile):
            store.read_spec(hash_)
        install_artifact(store, spec, lambda _prefix, _fd, _pfd: None, runtime_deps=[])
        assert store.spec_path(hash_).read_bytes() == written
        assert verify_artifact(store, aid) == []
    store.spec_path(hash_).write_text(json.dumps({**spec, "script": "false"}, indent=None))
    assert verify_artifact(store, aid) == [
        f"{aid}: specs/{hash_}.json does not hash to the artifact's id"]


def test_verify_reads_a_spec_without_following_a_link_or_waiting_on_a_fifo(
        tmp_path: Path) -> None:
    """specs/ of a group store is every member's to write in: what is planted there is
    named as a problem, never read through or waited on."""
    import threading

    store = Store(tmp_path / "s").ensure()
    spec = {"kind": "build", "name": "p", "version": "1", "deps": [], "script": "true"}
    aid, _ = install_artifact(store, spec, lambda _prefix, _fd, _pfd: None, runtime_deps=[])
    hash_ = aid.rsplit("/", 1)[1]
    planted = store.spec_path(hash_)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(planted.read_bytes())  # the right spec, behind a link
    expected = [f"{aid}: specs/{hash_}.json is not a regular file (a link, a FIFO?)"]
    planted.unlink()
    planted.symlink_to(elsewhere)
    assert verify_artifact(store, aid) == expected
    planted.unlink()
    os.mkfifo(planted)
    found: list[list[str]] = []
    checker = threading.Thread(target=lambda: found.append(verify_artifact(store, aid)),
                               daemon=True)
    checker.start()
    checker.join(timeout=30)
    assert found == [expected]

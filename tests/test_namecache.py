"""The user's cache of package names (shell/namecache.py): kept, never stale, never trusted.

Stores are written by the layout contract (shellfixtures), as in test_byname's
store-level tests; the last test runs the real `hdenv avail` twice.
"""

from __future__ import annotations

import json
import os
import posix
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from shellfixtures import add_artifact, add_profile, fake_hash

from hdenv.shell import byname, namecache
from hdenv.store.index import Index

HDENV = str(Path(sys.executable).parent / "hdenv")


def build(root: Path, name: str, cflags: str) -> str:
    aid = f"{name}/1.0/" + fake_hash(f"{name}{cflags}")
    add_artifact(root, aid)
    (root / "artifacts" / aid / ".hdenv" / "spec.json").write_text(json.dumps(
        {"kind": "build", "name": name, "version": "1.0", "deps": [], "build_deps": [],
         "env": {"CFLAGS": cflags}}))
    return aid


def names(root: Path) -> dict[str, str]:
    return byname.Catalog([str(root)], Index([str(root)])).all_names()


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache directory, set where xdg.py reads it in-process (`posix.environ`, which
    os.environ copies at start-up and never writes back)."""
    home = tmp_path / "cache"
    monkeypatch.setitem(posix.environ, b"XDG_CACHE_HOME", os.fsencode(home))
    return home


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, str, str]:
    root = tmp_path / "store"
    o1, o2 = build(root, "app", "-O1"), build(root, "app", "-O2")
    add_profile(root, "fast", [o2])
    add_profile(root, "safe", [o1])
    return root, o1, o2


def cache_file(root: Path) -> Path:
    return Path(namecache.cache_path([str(root)]))


def test_names_are_kept_privately_and_reused(store: tuple[Path, str, str],
                                             cache_home: Path) -> None:
    root, o1, o2 = store
    first = names(root)
    assert first == {o1: "app/1.0-O1", o2: "app/1.0-O2"}
    path = cache_file(root)
    assert path.parent == cache_home / "hdenv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the specs are not read again: with one gone, a fresh reading would say otherwise
    (root / "artifacts" / o1 / ".hdenv" / "spec.json").unlink()
    assert names(root) == first


def test_a_new_profile_renames_at_once(store: tuple[Path, str, str], cache_home: Path) -> None:
    root, o1, o2 = store
    names(root)
    o3 = build(root, "app", "-O3")
    add_profile(root, "fast", [o3], generation=2)
    assert names(root) == {o1: "app/1.0-O1", o2: "app/1.0-O2", o3: "app/1.0-O3"}
    (root / "names" / "fast" / "2").unlink()  # a generation removed: the key changes back
    assert names(root) == {o1: "app/1.0-O1", o2: "app/1.0-O2"}


@pytest.mark.parametrize("planted", ["garbage", "wrong-shape", "other-key", "symlink"])
def test_a_bad_cache_file_is_a_miss(store: tuple[Path, str, str], cache_home: Path,
                                    tmp_path: Path, planted: str) -> None:
    root, o1, o2 = store
    path = cache_file(root)
    path.parent.mkdir(parents=True)
    lie = {o1: "evil/1", o2: "evil/2"}
    decoy = tmp_path / "decoy.json"
    decoy.write_text(json.dumps({"format": namecache.FORMAT, "roots": [str(root)],
                                 "profiles": "", "names": lie}))
    if planted == "garbage":
        path.write_bytes(b"\xff{not json")
    elif planted == "wrong-shape":
        key = " ".join(sorted(p.name for p in (root / "profiles").iterdir()))
        path.write_text(json.dumps({"format": namecache.FORMAT, "roots": [str(root)],
                                    "profiles": key, "names": {o1: ["not", "a", "name"]}}))
    elif planted == "other-key":
        path.write_text(decoy.read_text())
    else:
        key = " ".join(sorted(p.name for p in (root / "profiles").iterdir()))
        decoy.write_text(json.dumps({"format": namecache.FORMAT, "roots": [str(root)],
                                     "profiles": key, "names": lie}))
        before = decoy.read_text()
        path.symlink_to(decoy)
    assert names(root) == {o1: "app/1.0-O1", o2: "app/1.0-O2"}
    assert not path.is_symlink() and json.loads(path.read_text())["names"][o1] == "app/1.0-O1"
    if planted == "symlink":
        assert decoy.read_text() == before  # replaced, not written through


def test_an_unreadable_profile_is_not_remembered(store: tuple[Path, str, str],
                                                 cache_home: Path) -> None:
    root, o1, _o2 = store
    safe = Path(os.path.realpath(root / "names" / "safe" / "1"))
    (safe / ".hdenv" / "profile.json").unlink()
    assert o1 not in names(root)
    assert not cache_file(root).exists()


def test_no_cache_directory_is_no_error(store: tuple[Path, str, str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root, o1, o2 = store
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setitem(posix.environ, b"XDG_CACHE_HOME", os.fsencode(blocker))  # no hdenv/ in it
    assert names(root) == {o1: "app/1.0-O1", o2: "app/1.0-O2"}


def test_avail_through_the_program_reads_what_it_saved(store: tuple[Path, str, str],
                                                       tmp_path: Path) -> None:
    root, o1, _o2 = store
    env = {**os.environ, "HDENV_STORE": str(root), "HDENV_CONFIG": os.devnull,
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = subprocess.run([HDENV, "avail"], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "packages: app/1.0-O1" in first.stdout, first
    saved = json.loads((tmp_path / "cache" / "hdenv" / cache_file(root).name).read_text())
    assert saved["names"][o1] == "app/1.0-O1"
    (root / "artifacts" / o1 / ".hdenv" / "spec.json").unlink()  # only the cache can say -O1
    again = subprocess.run([HDENV, "avail"], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout == first.stdout, again

"""Private temp dirs in the store and removal of what dead runs left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hdenv.errors import StoreError
from hdenv.store import tmpdirs
from hdenv.store.layout import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").ensure()


def test_private_tmp_is_the_users_alone(store: Store) -> None:
    path = tmpdirs.private_tmp(store)
    assert path == store.tmp / str(os.geteuid())
    st = os.lstat(path)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700
    os.chmod(path, 0o777)  # widened by someone: narrowed again
    tmpdirs.private_tmp(store)
    assert os.lstat(path).st_mode & 0o777 == 0o700


def test_private_tmp_planted_as_symlink_or_by_another_user(store: Store, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store.tmp / str(os.geteuid())).symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symlink"):
        tmpdirs.temp_dir(store, "build-")
    os.unlink(store.tmp / str(os.geteuid()))
    if os.geteuid() == 0:
        (store.tmp / "0").mkdir()
        os.chown(store.tmp / "0", 4242, 4242)
        with pytest.raises(StoreError, match="belongs to uid 4242"):
            tmpdirs.temp_dir(store, "build-")
    assert os.listdir(elsewhere) == []


def test_dead_runs_are_cleaned_live_ones_kept(store: Store) -> None:
    mine = tmpdirs.temp_dir(store, "build-mine-")
    code = ("import sys, time; from pathlib import Path; from hdenv.store.layout import Store;"
            "from hdenv.store import tmpdirs; s = Store(Path(sys.argv[1]));"
            "print(tmpdirs.temp_dir(s, 'build-x-'), flush=True); time.sleep(int(sys.argv[2]))")
    live = subprocess.Popen([sys.executable, "-c", code, str(store.root), "60"],
                            stdout=subprocess.PIPE, text=True)
    dead = subprocess.run([sys.executable, "-c", code, str(store.root), "0"],
                          capture_output=True, text=True, check=True)
    try:
        live_dir = Path(live.stdout.readline().strip()) if live.stdout else Path()
        dead_dir = Path(dead.stdout.strip())
        assert dead_dir.is_dir() and live_dir.is_dir()
        removed = tmpdirs.clean_stale(store)
        assert removed == [dead_dir]
        assert mine.is_dir() and live_dir.is_dir()
        assert sorted(tmpdirs.leftovers(store)) == sorted([mine, live_dir])
    finally:
        live.kill()
        live.wait()
    tmpdirs.clean_stale(store)
    assert tmpdirs.leftovers(store) == [mine]


def test_old_layout_leftovers_are_removed_after_an_hour(store: Store) -> None:
    old, recent = store.tmp / "build-x-old", store.tmp / "profile-y-new"
    old.mkdir()
    recent.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    tmpdirs.clean_stale(store)
    assert not old.exists() and recent.exists()

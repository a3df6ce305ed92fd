"""Root refuses stores that other users could redirect its writes in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import require

from hdenv.errors import StoreError
from hdenv.store.layout import Store


def test_root_refuses_group_or_world_writable_store_dirs(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "the check applies to root only")
    store = Store(tmp_path / "store").ensure()
    os.chmod(store.locks, 0o775)
    with pytest.raises(StoreError, match=f"{store.locks} is writable by group"):
        store.ensure()
    os.chmod(store.locks, 0o755)
    os.chown(store.root, 4242, 4242)
    with pytest.raises(StoreError, match=f"{store.root} belongs to uid 4242"):
        store.ensure()
    os.chown(store.root, 0, 0)
    os.chmod(store.tmp, 0o1777)  # sticky, as /tmp: nobody can rename what is not theirs
    store.ensure()


def test_root_refuses_a_store_under_another_users_directory(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "the check applies to root only")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 4242, 4242)
    with pytest.raises(StoreError, match=f"{home} belongs to uid 4242"):
        Store(home / "store").ensure()
    assert not (home / "store").exists()

"""Stored sources: trusted while their stat is unchanged, re-hashed otherwise."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from hdenv.store import srcstat


def stored(src: Path, data: bytes) -> str:
    hex_ = hashlib.sha256(data).hexdigest()
    (src / "sha256").mkdir(parents=True, exist_ok=True)
    (src / "sha256" / hex_).write_bytes(data)
    return hex_


def test_unchanged_file_is_trusted_without_hashing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(srcstat, "RACY_NS", 0)  # the test cannot wait for ctime to age
    hex_ = stored(tmp_path, b"source bytes")
    old = time.time() - 10
    os.utime(tmp_path / "sha256" / hex_, (old, old))
    assert srcstat.intact(tmp_path, hex_)  # hashed, then recorded
    record = (tmp_path / "stat" / hex_).read_text()
    assert srcstat.intact(tmp_path, hex_)
    assert (tmp_path / "stat" / hex_).read_text() == record  # not re-hashed: not re-recorded


def test_rewritten_file_is_caught_even_with_its_mtime_put_back(tmp_path: Path) -> None:
    hex_ = stored(tmp_path, b"good bytes")
    path = tmp_path / "sha256" / hex_
    old = time.time() - 10
    os.utime(path, (old, old))
    assert srcstat.intact(tmp_path, hex_)
    path.write_bytes(b"evil bytes")  # same size
    os.utime(path, (old, old))
    assert not srcstat.intact(tmp_path, hex_)
    srcstat.discard(tmp_path, hex_)
    assert not path.exists() and not (tmp_path / "stat" / hex_).exists()

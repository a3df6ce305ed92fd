"""Stored sources are re-hashed before use unless provably untouched since their last check.

`src/sha256/HEX` is named by its content, but bytes on disk can change after
they were checked: another member of a shared store, a careless `chmod u+w`
and an editor, a disk error. Re-hashing every archive on every build would
cost seconds, so `src/stat/HEX` records the file's stat (device, inode, size,
mtime, ctime) when its content last hashed to HEX. A file whose stat still
matches is trusted: rewriting a file in place changes its ctime even when
the mtime is put back, and replacing it changes the inode. Anything else is
re-hashed, and a file that no longer matches its name is removed (the caller
fetches it again). A record made within two seconds of the file's last
change is not trusted (a change within the same timestamp tick could hide).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from . import storedirs
from .hashing import sha256_file

RACY_NS = 2_000_000_000


def _stat_path(src: Path, hex_: str) -> Path:
    return src / "stat" / hex_


def _key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def record(src: Path, hex_: str) -> None:
    """Remember that `src/sha256/HEX` hashes to HEX as it is now (best effort)."""
    checked = time.time_ns()
    with contextlib.suppress(OSError):
        st = os.stat(src / "sha256" / hex_)
        line = " ".join(str(n) for n in [*_key(st), checked])
        # src/stat/ through descriptors from the store root: never a planted link's target
        with storedirs.opened(src.parent, [src.name, "stat"]) as fd:
            storedirs.write_at(fd, hex_, line.encode() + b"\n", 0o644, src / "stat")


def _recorded_unchanged(src: Path, hex_: str, st: os.stat_result) -> bool:
    try:
        numbers = [int(n) for n in _stat_path(src, hex_).read_text().split()]
    except (OSError, ValueError):
        return False
    if len(numbers) != 6:
        return False
    key, checked = numbers[:5], numbers[5]
    return key == _key(st) and checked - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS


def intact(src: Path, hex_: str) -> bool:
    """Whether `src/sha256/HEX` still holds the bytes that hash to HEX (re-hashing if unsure)."""
    path = src / "sha256" / hex_
    try:
        st = os.stat(path)
    except OSError:
        return False
    if _recorded_unchanged(src, hex_, st):
        return True
    try:
        good = sha256_file(path) == hex_
    except OSError:
        return False
    if good:
        record(src, hex_)
    return good


def discard(src: Path, hex_: str) -> None:
    """Remove a stored source that failed its check, and its record."""
    for path in (src / "sha256" / hex_, _stat_path(src, hex_)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

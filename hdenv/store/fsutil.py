"""Small filesystem helpers with crash-safe semantics.

Everything the store writes goes through `atomic_write` (temp file + fsync +
rename) so a kill at any moment leaves either the old content or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any, mode: int = 0o644) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def make_writable(root: Path) -> None:
    """Undo `make_read_only` so a tree can be deleted or repaired."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, d) for d in dirnames)]:
            with contextlib.suppress(OSError):
                st = os.lstat(name)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(name, st.st_mode | stat.S_IWUSR)


def make_read_only(root: Path) -> None:
    """Drop write bits on every file and directory (symlinks have none)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o222)
    st = os.lstat(root)
    os.chmod(root, stat.S_IMODE(st.st_mode) & ~0o222)


def remove_tree(path: Path) -> None:
    """Remove a tree even if it was made read-only; missing is fine."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    make_writable(path)
    shutil.rmtree(path)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[int]:
    """An flock on `path`; yields the fd so it can be inherited by build processes.

    flock locks belong to the open file description, so a child that inherits
    the fd keeps the lock held even if hdenv itself is killed: a second hdenv
    then waits for orphaned `make` processes instead of racing them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            flags |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise BlockingIOError(str(path)) from e
            raise
        yield fd
    finally:
        os.close(fd)


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total

"""Lock files: opened without following planted links, never inherited by builds."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hdenv.errors import StoreError
from hdenv.store.fsutil import file_lock, lock_fd, open_lock_file


def test_lock_file_symlink_is_refused_and_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "x.lock").symlink_to(target)
    with pytest.raises(StoreError, match="is a symlink"):
        open_lock_file(tmp_path / "locks" / "x.lock")
    assert not target.exists()


def test_lock_file_hard_link_and_fifo_are_refused(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("secret")
    os.link(tmp_path / "victim", tmp_path / "h.lock")
    with pytest.raises(StoreError, match="a hard link"):
        open_lock_file(tmp_path / "h.lock")
    os.mkfifo(tmp_path / "f.lock")
    with pytest.raises(StoreError, match="not a regular file"):
        open_lock_file(tmp_path / "f.lock")


def test_lock_directory_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "locks").symlink_to(tmp_path / "real")
    with pytest.raises(StoreError, match="symlink"):
        open_lock_file(tmp_path / "locks" / "x.lock")
    assert os.listdir(tmp_path / "real") == []


def test_children_do_not_inherit_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "a.lock"
    with file_lock(path):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                 close_fds=False)
    try:
        # free although the child still runs (after the instant the kernel takes to
        # close a close-on-exec descriptor, which may end after Popen returned)
        fd = open_lock_file(path)
        for _ in range(100):
            try:
                lock_fd(fd, blocking=False)
                break
            except BlockingIOError:
                time.sleep(0.05)
        else:
            raise AssertionError("the child process holds the lock")
        os.close(fd)
    finally:
        child.kill()
        child.wait()


# -- OFD locks: NFS-coherent, and per open file like flock ------------------------


def test_locks_are_ofd_byte_range_locks(tmp_path: Path) -> None:
    """Byte-range (fcntl) locks are what NFS clients send to the server; flock may not be."""
    path = tmp_path / "nfs.lock"
    with file_lock(path):
        inode = os.stat(path).st_ino
        with open("/proc/locks") as f:
            mine = [line for line in f if f":{inode} " in line]
    assert len(mine) == 1 and " OFDLCK " in mine[0], mine


def test_two_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    """Plain POSIX (lockf) locks would let a second thread in: they belong to the process."""
    lock = tmp_path / "x.lock"
    entered = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with file_lock(lock):
            entered.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(10)
    try:
        with pytest.raises(BlockingIOError), file_lock(lock, blocking=False):
            pass
    finally:
        release.set()
        t.join()
    with file_lock(lock, blocking=False):
        pass


def test_shared_locks_coexist_and_exclude_an_exclusive_one(tmp_path: Path) -> None:
    lock = tmp_path / "gc.lock"
    with (file_lock(lock, shared=True), file_lock(lock, shared=True, blocking=False),
          pytest.raises(BlockingIOError), file_lock(lock, blocking=False)):
        pass

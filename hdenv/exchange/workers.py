"""Installs in forked worker processes, for pulls of many artifacts at once.

Downloads leave the GIL; installing does not, much: tar headers, relocation and
the manifest are Python, between system calls that create files. Two threads
installing 200 artifacts took 0.85 s against 1.0 s for one (each install 1.75
times slower beside the other); two processes installing half each took 0.6 s.
So a pull downloads in threads (`inorder.py`) and hands each checked archive to
one of `jobs + 1` processes to install (substitute.py says why one more) -- unless
its archives are few and big: then the install is mostly zstd and writes, which
leave the GIL, and threads do better (`substitute.BYTES_PER_FILE`).

The processes are forked, all at once, from the thread that makes the pool,
before the transfer threads start, so no lock is copied held; they get the
task (the substituter's install, with its store) from this process's memory,
not by pickling. Only Linux: elsewhere forking a process that has loaded
libraries is not safe (macOS), and the caller installs in its threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_tasks: dict[int, Callable[..., Any]] = {}
"""What the forked children run, by key: set before the fork, so they have it."""
_keys = itertools.count()


def _call(key: int, args: tuple[Any, ...]) -> Any:
    return _tasks[key](*args)


def _started() -> None:
    return None


def _quiet(parent: int) -> None:
    """A worker leaves interruptions to the puller: Ctrl-C reaches the whole process group,
    and the puller stops the transfers and waits for the installs under way (each is
    whole or absent, install_artifact); SIGTERM ends a worker as it ends any process
    (an install cut short is never registered, and the next one removes it), and the
    kernel sends it when the puller dies (a worker waiting for work would never hear of
    it otherwise: its siblings hold the queue's pipe open)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before that: nobody will ask for anything
        os._exit(0)


class ForkedPool:
    """`pool(*args)` runs `task(*args)` in one of `jobs` forked processes and returns its
    result (or raises its exception) in the calling thread."""

    def __init__(self, jobs: int, task: Callable[..., Any]):
        self.key = next(_keys)
        _tasks[self.key] = task
        self.pool = ProcessPoolExecutor(max_workers=jobs, initializer=_quiet,
                                        initargs=(os.getpid(),),
                                        mp_context=multiprocessing.get_context("fork"))
        try:
            self.pool.submit(_started).result()  # every worker forks now, from this thread
        except BaseException:
            self.close()
            raise

    def __call__(self, *args: Any) -> Any:
        return self.pool.submit(_call, self.key, args).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        _tasks.pop(self.key, None)


def available(jobs: int, count: int) -> bool:
    """Whether `count` installs with `jobs` at once are worth processes here."""
    return jobs > 1 and count > 1 and sys.platform.startswith("linux")

"""Build processes: each in its own process group, all stopped together on a signal.

A build script starts `make`, which starts compilers, which may leave
background processes behind. Each build therefore runs in a new session (its
own process group, out of reach of the terminal's Ctrl-C), and hdenv owns
the group's whole life:

- when the script's shell exits, whatever is left in its group is killed
  (before the shell is reaped, so the group id cannot have been reused): a
  failed build's `( sleep 1000 ) &` never outlives it;
- on Ctrl-C, SIGTERM or SIGHUP, `interruptible()` stops every running group
  (SIGTERM, then SIGKILL after a grace period), lets the builders remove what
  they had half-written, and raises `Interrupted`, which exits 128 + signal.

Builds run in worker threads, but Python delivers signals to the main
thread: the handler raises there, the scheduler calls `stop_all()`, and each
worker, its process gone, unwinds through its own cleanup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from ..errors import Interrupted
from ..exchange import transfer

GRACE_SECONDS = 2.0
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_lock = threading.Lock()
_running: dict[int, subprocess.Popen[bytes]] = {}
_stopping = threading.Event()
_signum = 0


def stopping() -> bool:
    """Whether a signal asked every build to stop (a build that fails now was stopped)."""
    return _stopping.is_set()


def stop_signal() -> int:
    """The signal that asked builds to stop (SIGINT if none was recorded)."""
    return _signum or signal.SIGINT


def run_in_group(argv: Sequence[str], *, cwd: Path, env: dict[str, str], log: IO[bytes],
                 pass_fds: Sequence[int] = ()) -> int:
    """Run `argv` in a new session until it exits, kill what it left behind, return its status.

    Raises `Interrupted` without starting anything once a stop was requested.
    """
    with _lock:
        if _stopping.is_set():
            raise Interrupted(stop_signal())
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, pass_fds=tuple(pass_fds), start_new_session=True,
        )
        _running[proc.pid] = proc
    try:
        # Wait without reaping: while the leader is a zombie its pid (the group id)
        # stays reserved, so the kill below cannot reach an unrelated group.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    finally:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        with _lock:
            _running.pop(proc.pid, None)
    return proc.returncode


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_all(signum: int = signal.SIGINT, grace: float = GRACE_SECONDS) -> int:
    """Stop every running build group: SIGTERM, then SIGKILL after `grace` seconds.

    Returns how many builds were running. New builds are refused from now on.
    """
    global _signum
    with _lock:
        _signum = _signum or signum
        _stopping.set()
        procs = list(_running.values())
    transfer.cancel_all()  # cache downloads in build threads stop too
    for proc in procs:
        _kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        while time.monotonic() < deadline and proc.returncode is None and proc.pid in _running:
            time.sleep(0.05)
    with _lock:
        left = list(_running.values())
    for proc in left:
        _kill_group(proc.pid, signal.SIGKILL)
    return len(procs)


def _raise_interrupted(signum: int, _frame: object) -> None:
    # Further signals while hdenv cleans up are ignored: the cleanup is bounded.
    for s in HANDLED:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` while the block runs (main thread).

    Whoever catches it must call `stop_all()` before waiting for build threads;
    the scheduler does. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _reset()
    old = {s: signal.getsignal(s) for s in HANDLED}
    for s in HANDLED:
        if old[s] is not signal.SIG_IGN:  # nohup: keep ignoring SIGHUP
            signal.signal(s, _raise_interrupted)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _reset()


def _reset() -> None:
    global _signum
    with _lock:
        _stopping.clear()
        _signum = 0
    transfer.reset_cancel()

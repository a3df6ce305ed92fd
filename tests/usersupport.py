"""Real second users for the shared-store tests, and process checks.

`other_users` creates Unix users (and a group they share) with useradd and
removes them afterwards; it needs root, which CI has. Names follow the
project rule: `hdenv10<letter>`, unique to this issue's tests.
`as_user` runs a command as one of them with setpriv (the environment is kept).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from conftest import require, require_tool

from hdenv.store.fsutil import make_writable


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def _quiet(*cmd: str) -> None:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def other_users(*names: str, group: str) -> Iterator[dict[str, User]]:
    """Create users `names` in a new group `group`; remove both afterwards.

    The real names get this process's id appended (`hdenv10a` becomes
    `hdenv10a4711`): every worktree runs the whole suite, often at once.
    The result is keyed by the names asked for.
    """
    require(os.geteuid() == 0, "creating a second user needs root (CI runs as root)")
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "setpriv"):
        require_tool(tool)
    suffix = str(os.getpid())
    real = {name: f"{name}{suffix}" for name in names}
    group = f"{group}{suffix}"
    for name in real.values():  # leftovers of an interrupted earlier run
        _quiet("userdel", name)
    _quiet("groupdel", group)
    subprocess.run(["groupadd", group], check=True)
    users: dict[str, User] = {}
    try:
        for name, real_name in real.items():
            subprocess.run(["useradd", "-M", "-N", "-g", group, "-d", "/nonexistent",
                            "-s", "/bin/sh", real_name], check=True)
            entry = pwd.getpwnam(real_name)
            users[name] = User(real_name, entry.pw_uid, entry.pw_gid)
        yield users
    finally:
        for name in real.values():
            _quiet("userdel", name)
        _quiet("groupdel", group)


def as_user(user: User, argv: Sequence[str], *, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 300,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--",
         *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def world_readable_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is root's alone); removed after."""
    path = Path(tempfile.mkdtemp(prefix="hdenv10-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        make_writable(path)
        shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether `pid` is dead, or dies within `within` seconds (SIGKILL takes a moment)."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True

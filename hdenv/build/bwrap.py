"""Run a build under bubblewrap: no network, the host read-only, private places hidden.

What the build sees (`sandbox = "auto"`, the default, or `"bwrap"`):

- the host file system read-only (`--ro-bind / /`), a fresh `/dev` and `/proc`;
- `/tmp`, `/root`, `/home`, `/opt`, `/usr/local` and the user's `$HOME` replaced
  by empty tmpfs: nothing private or site-local leaks into a build, and
  nothing it writes there survives it;
- of the host's headers and libraries, only the C library's, the compilers'
  and the declared ones (`jail.py`, passed in as `jail`);
- writable: only the build directory and `$PREFIX`;
- read-only: every artifact the build uses, and the installation prefixes of
  host programs that live under a hidden directory (a pyenv Python in
  `$HOME`), bound back in at their own paths, so a store under `/tmp` or
  `$HOME` works;
- its own network namespace with only a loopback device: no downloads, and no
  talking to services on the host's 127.0.0.1;
- all capabilities dropped, also when hdenv runs as root.

bwrap uses user namespaces when it is not setuid (Debian's is not), so it
works as a normal user where the kernel allows them. Whether it can run is
probed once per process; `auto` then says once that builds are not
sandboxed, `bwrap` fails with bwrap's own reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import BuildError

HIDDEN = ("/tmp", "/root", "/home", "/opt", "/usr/local")
MODES = ("auto", "bwrap", "none")


def hidden_dirs() -> list[str]:
    """Directories replaced by an empty tmpfs, as real paths, parents before children."""
    dirs = list(HIDDEN)
    home = os.environ.get("HOME")
    if home and os.path.isabs(home):
        dirs.append(home)
    out = []
    for d in dirs:
        real = os.path.realpath(d)
        if real != "/" and os.path.isdir(real) and real not in out:
            out.append(real)
    return sorted(out, key=lambda p: (p.count("/"), p))


def _under(path: str, dirs: Iterable[str]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why bubblewrap cannot sandbox a build here, or None when it can."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        proc = subprocess.run(
            [bwrap, *_base_args(), "--", "/bin/sh", "-c", "true"], stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap cannot run: {e}"
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"bwrap cannot run: {why}"
    return None


def _base_args() -> list[str]:
    return ["--die-with-parent", "--unshare-all", "--cap-drop", "ALL",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]


def use_sandbox(mode: str) -> tuple[bool, str | None]:
    """(sandbox builds?, a notice for the user) for a `sandbox` setting.

    BuildError when `bwrap` is required but cannot run.
    """
    if mode == "none":
        return False, None
    reason = unavailable_reason()
    if reason is None:
        return True, None
    if mode == "bwrap":
        raise BuildError(f"sandbox = \"bwrap\", but {reason}")
    return False, f"builds are not sandboxed: {reason} (sandbox = \"none\" silences this)"


def install_root(program: str) -> str:
    """The prefix a program belongs to: `/x/bin/prog` -> `/x`; else its directory."""
    parent = os.path.dirname(program)
    if os.path.basename(parent) in ("bin", "sbin", "libexec") or \
            os.path.basename(parent).startswith("lib"):
        return os.path.dirname(parent)
    return parent


def wrap(argv: Sequence[str], *, writable: Sequence[Path], readable: Sequence[Path | str],
         cwd: Path, writable_fds: Mapping[Path, int] | None = None,
         jail: Sequence[str] = ()) -> list[str]:
    """`argv` run under bwrap with `writable` and `readable` bound in (see module doc).

    `writable_fds` maps a path to an open directory descriptor bound there
    (`--bind-fd`; the caller passes the descriptor to the child): what is bound
    is the directory that was opened, whatever the path names by then.
    `jail` (`jail.bwrap_args`) comes after the hidden directories and before
    the binds, so a store or build directory is never hidden by it.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise BuildError("bubblewrap (bwrap) is not installed")
    hidden = hidden_dirs()
    args = [bwrap, *_base_args()]
    for d in hidden:
        args += ["--tmpfs", d]
    args += jail
    binds: dict[str, str] = {}
    for p in readable:
        real = os.path.realpath(p)
        if os.path.exists(real) and _under(real, hidden):
            binds.setdefault(str(p), "--ro-bind")
    for p in writable:
        binds[str(p)] = "--bind"
    by_fd = {str(p): fd for p, fd in (writable_fds or {}).items()}
    for p in by_fd:
        binds[p] = "--bind-fd"
    for dest in sorted(binds, key=lambda p: (p.count("/"), p)):
        if binds[dest] == "--bind-fd":
            args += ["--bind-fd", str(by_fd[dest]), dest]
        else:
            args += [binds[dest], os.path.realpath(dest), dest]
    args += ["--chdir", str(cwd), "--", *argv]
    return args

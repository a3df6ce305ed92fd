"""Real container tools for the `hdenv pack` tests: podman with a private store, umoci, bwrap.

Podman runs as root inside the test machine, where it may not raise resource
limits (no CAP_SYS_RESOURCE in a sandbox or CI container), use systemd's
cgroups or write the system's event log: every call gets a storage root and
run root under the test's temporary directory, the vfs storage driver (no
overlay mounts needed), cgroupfs, a file event log, and limits no higher
than this process's own.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import require_tool


def _limit(kind: int, cap: int) -> str:
    soft, _hard = resource.getrlimit(kind)
    value = cap if soft == resource.RLIM_INFINITY else min(soft, cap)
    return f"{value}:{value}"


class Podman:
    """Podman with private storage; `close()` removes its run root (podman refuses a run root
    longer than 50 characters, so it lives in a short directory of /tmp, not under `workdir`)."""

    def __init__(self, workdir: Path):
        self.exe = require_tool("podman")
        require_tool("runc")
        workdir.mkdir(parents=True, exist_ok=True)
        self.runroot = Path(tempfile.mkdtemp(prefix="hdp", dir="/tmp"))
        self.base = [self.exe, "--root", str(workdir / "root"), "--runroot", str(self.runroot),
                     "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", "runc"]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def run(self, image: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """`podman run --rm --network none IMAGE ARGV...` with limits it may set."""
        return self("run", "--rm", "--network", "none",
                    "--ulimit", f"nofile={_limit(resource.RLIMIT_NOFILE, 4096)}",
                    "--ulimit", f"nproc={_limit(resource.RLIMIT_NPROC, 1024)}",
                    image, *argv)


def bwrap_run(rootfs: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` with `rootfs` as / and nothing of the host's files: the image alone."""
    exe = require_tool("bwrap")
    setenv = [a for k, v in env.items() for a in ("--setenv", k, v)]
    return subprocess.run([exe, "--bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev",
                           "--unshare-all", "--clearenv", *setenv, "--chdir", "/", *argv],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def umoci_unpack(layout: Path, tag: str, dest: Path) -> Path:
    """`umoci unpack` the image; returns its rootfs."""
    exe = require_tool("umoci")
    done = subprocess.run([exe, "unpack", "--image", f"{layout}:{tag}", str(dest)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dest / "rootfs"

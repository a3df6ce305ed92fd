"""One file system from the layers: a plain tar, or a SquashFS image for Apptainer.

The layers are applied in order (a later layer's entry wins; a base image's
whiteouts remove what they name), and the result is written sorted with the
layers' fixed owners and times. SquashFS is made by `mksquashfs` from that
tree with the flags that make it reproducible: every file root's
(`-all-root`), every time and the file system's own time 0 or
`SOURCE_DATE_EPOCH` (`-all-time`, `-mkfs-time`), a new image (`-noappend`),
no extended attributes; mksquashfs sorts directories itself. The SquashFS
image also gets what Apptainer reads instead of an OCI config:
`/.singularity.d/env/90-hdenv.sh` (the profile's environment) and the mount
points it binds over (`/proc`, `/sys`, `/dev`, ...).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tarfile
from pathlib import Path

from ..build.processes import run_in_group
from ..errors import HdenvError
from .image import Image

MOUNT_POINTS = ("dev", "etc", "home", "proc", "root", "run", "sys", "tmp", "var/tmp")


class ToolFailed(HdenvError):
    """mksquashfs is missing or failed: exit 1, one line."""


Merged = dict[str, tuple[int, tarfile.TarInfo]]


def _flatten(image: Image) -> tuple[list[tarfile.TarFile], Merged]:
    tars = [tarfile.open(layer.path) for layer in image.layers]  # noqa: SIM115 (closed by the caller)
    final: dict[str, tuple[int, tarfile.TarInfo]] = {}

    def drop_under(prefix: str) -> None:
        for name in [n for n in final if n.startswith(prefix + "/")]:
            del final[name]

    for i, tar in enumerate(tars):
        for m in tar:
            name = os.path.normpath("/" + m.name).lstrip("/")
            if not name:
                continue
            base = os.path.basename(name)
            parent = os.path.dirname(name)
            if base == ".wh..wh..opq":
                drop_under(parent)
                continue
            if base.startswith(".wh."):
                gone = os.path.join(parent, base[4:])
                final.pop(gone, None)
                drop_under(gone)
                continue
            if not m.isdir():
                drop_under(name)
            m.name = name
            final[name] = (i, m)
    return tars, final


def write_tar(image: Image, out: Path) -> None:
    """The merged file system as one sorted tar (hard links of base layers kept as links)."""
    tars, final = _flatten(image)
    try:
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
            for name in sorted(final):
                i, m = final[name]
                info = m  # already normalised in our layers; base layers keep theirs
                if m.isfile():
                    f = tars[i].extractfile(m)
                    dst.addfile(info, f)
                else:
                    dst.addfile(info)
    finally:
        for t in tars:
            t.close()
    os.chmod(out, 0o644)


def _env_script(env: dict[str, str]) -> str:
    lines = ["# hdenv pack: the profile's environment, as `hdenv load` sets it"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def write_squashfs(image: Image, out: Path, work: Path, env: dict[str, str],
                   entrypoint: str | None) -> None:
    exe = shutil.which("mksquashfs")
    if exe is None:
        raise ToolFailed("mksquashfs is not installed (Debian: apt-get install squashfs-tools)")
    flat = work / "flat.tar"
    write_tar(image, flat)
    tree = work / "rootfs"
    tree.mkdir()
    with open(work / "untar.log", "wb") as log:
        status = run_in_group(["tar", "-C", str(tree), "-xpf", str(flat), "--numeric-owner"],
                              cwd=work, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                              log=log)
    if status != 0:
        raise ToolFailed(f"unpacking the layers failed: {_last_line(work / 'untar.log')}")
    flat.unlink()
    for d in MOUNT_POINTS:
        (tree / d).mkdir(parents=True, exist_ok=True)
    os.chmod(tree / "tmp", 0o1777)
    sing = tree / ".singularity.d"
    (sing / "env").mkdir(parents=True, exist_ok=True)
    (sing / "env" / "90-hdenv.sh").write_text(_env_script(env))
    if entrypoint is not None:
        (sing / "runscript").write_text(  # Apptainer sources env/ too; bare `sh` does not
            f"#!/bin/sh\n. /.singularity.d/env/90-hdenv.sh\nexec {entrypoint} \"$@\"\n")
        os.chmod(sing / "runscript", 0o755)
    when = os.environ.get("SOURCE_DATE_EPOCH", "0")
    when = when if when.isdigit() else "0"
    argv = [exe, str(tree), str(out), "-noappend", "-all-root", "-no-xattrs", "-no-progress",
            "-mkfs-time", when, "-all-time", when, "-quiet"]
    with open(work / "mksquashfs.log", "wb") as log:
        status = run_in_group(argv, cwd=work, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                              log=log)
    if status != 0:
        raise ToolFailed(f"mksquashfs failed: {_last_line(work / 'mksquashfs.log')}")
    os.chmod(out, 0o644)


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


__all__ = ["write_squashfs", "write_tar"]

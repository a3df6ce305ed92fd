"""Python in profiles: one interpreter seeing the packages of every artifact.

Choice: the profile is made a *virtual environment* of the interpreter it
contains (PEP 405), instead of copying the interpreter as Hashdist did.

- `PROFILE/pyvenv.cfg` says ``home = <directory of the real interpreter>``.
  When Python starts as ``PROFILE/bin/python3.X`` its startup code (getpath)
  looks for ``pyvenv.cfg`` beside the executable and one level up *without
  resolving symlinks first*, finds it, and sets ``sys.prefix`` to PROFILE while
  the standard library still comes from ``home``. `site` then adds
  ``PROFILE/lib/python3.X/site-packages``, the merged directory of the farm, so
  every artifact's packages are importable with no PYTHONPATH, even under
  ``env -i``. This is exactly what ``python -m venv --symlinks`` relies on.
- This only works if ``PROFILE/bin/python3.X`` is itself a symlink (or the
  binary) *inside* PROFILE/bin; the farm therefore keeps ``bin/`` a real
  directory when Python is present (never one folded link into an artifact),
  and links each interpreter name individually.
- Copying the interpreter would also work but duplicates a binary (and, for a
  shared-library build, needs its libpython found by RPATH from the copy); the
  venv technique costs one small text file and works for host and built Pythons.
- ``include-system-site-packages = false``: a profile must not silently see the
  packages installed next to a host interpreter; that is what makes the profile
  reproducible.
- Scripts that Python packages install carry a shebang naming the interpreter
  they were built with, which does not see the profile's other packages. Such
  scripts in the profile's ``bin/`` are copied (the farm entry is replaced) with
  the shebang rewritten to ``PROFILE/bin/python3.X``.
- ``lib/python3.X/site-packages`` is kept a real merged directory as well, so
  that a second artifact contributing packages later merges instead of
  conflicting with a folded link, and `.pth` files of all artifacts sit side by
  side where `site` processes them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from ..store.fsutil import atomic_write
from .farm import Excluder, Member

INTERPRETER = re.compile(r"^python(3\.\d+)$")
SHEBANG = re.compile(rb"^#!\s*(\S*/)?(env\s+(-S\s+)?)?python[0-9.]*(\s.*)?$")
PIP_EXEC = re.compile(rb"^'''exec' (\"[^\"]*\"|\S+)( .*)$")
MAX_SHEBANG = 127  # Linux before 5.1 truncates longer #! lines


def find_pythons(members: Sequence[Member], exclude: Sequence[str] = ()) -> dict[str, list[str]]:
    """Python versions ("3.11") found as `bin/python3.X` -> ids of artifacts providing them.

    Interpreters the profile excludes do not count, so `exclude` can resolve two Pythons.
    """
    excluder = Excluder(exclude)
    found: dict[str, list[str]] = {}
    for m in members:
        bindir = m.root / "bin"
        try:
            names = os.listdir(bindir)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            match = INTERPRETER.match(name)
            if match is None and name == "python3":
                # a host capture of `python3` alone: its version is the name it leads to
                match = INTERPRETER.match(os.path.basename(os.path.realpath(bindir / name)))
            if match and not excluder.excluded(m, ("bin", name)):
                ids = found.setdefault(match.group(1), [])
                if m.id not in ids:
                    ids.append(m.id)
    return found


def single_python(members: Sequence[Member], exclude: Sequence[str] = ()) -> str | None:
    """The one Python version of a profile, or None; two versions cannot share a prefix."""
    found = find_pythons(members, exclude)
    if len(found) > 1:
        listing = "; ".join(f"python{v} from {', '.join(ids)}" for v, ids in sorted(found.items()))
        raise UserError(
            f"profile contains several Python versions ({listing}); one profile holds one "
            "Python (exclude the others' bin/python3.X)"
        )
    return next(iter(found), None)


def keep_real_dirs(version: str) -> list[str]:
    """Directories the farm must keep real for the venv technique to work."""
    return ["bin", f"lib/python{version}/site-packages"]


def interpreter_version(real: str, fallback: str) -> str:
    """The full X.Y.Z of the interpreter (informational in pyvenv.cfg)."""
    code = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
    try:
        out = subprocess.run(
            [real, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin"}, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return fallback
    return out.stdout.strip() or fallback


def write_pyvenv_cfg(farm: Path, version: str) -> str:
    """Write `farm/pyvenv.cfg` pointing `home` at the real interpreter; returns home."""
    link = farm / "bin" / f"python{version}"
    real = os.path.realpath(link)
    if not os.path.isfile(real):
        raise UserError(f"bin/python{version} in the profile does not lead to an interpreter")
    home = os.path.dirname(real)
    full = interpreter_version(real, version)
    text = (
        f"home = {home}\n"
        "include-system-site-packages = false\n"
        f"version = {full}\n"
        f"executable = {real}\n"
    )
    atomic_write(farm / "pyvenv.cfg", text.encode())
    return home


def add_interpreter_aliases(farm: Path, version: str) -> None:
    """`python3` and `python` in the profile, when no artifact provides them."""
    bindir = farm / "bin"
    if not os.path.lexists(bindir / f"python{version}") and os.path.lexists(bindir / "python3"):
        os.symlink("python3", bindir / f"python{version}")  # what the venv's home is read from
    for alias in ("python3", "python"):
        if not os.path.lexists(bindir / alias):
            os.symlink(f"python{version}", bindir / alias)


def _new_head(lines: list[bytes], python: str) -> tuple[list[bytes], int] | None:
    """(new first lines, how many old lines they replace) for a Python script, else None."""
    first = lines[0].rstrip(b"\r\n")
    match = SHEBANG.match(first)
    if match:
        args = match.group(4) or b""
        if len(python) + 2 + len(args) <= MAX_SHEBANG:
            return [b"#!" + python.encode() + args + b"\n"], 1
        exec_line = f"'''exec' \"{python}\" \"$0\" \"$@\"\n".encode()
        return [b"#!/bin/sh\n", exec_line, b"' '''\n"], 1
    if first == b"#!/bin/sh" and len(lines) > 1:
        pip = PIP_EXEC.match(lines[1].rstrip(b"\n"))
        if pip and b"python" in pip.group(1):
            return [lines[0], f"'''exec' \"{python}\"".encode() + pip.group(2) + b"\n"], 2
    return None


def rewrite_scripts(farm: Path, prefix: Path, version: str) -> list[str]:
    """Replace links to Python scripts in farm/bin by copies running PREFIX/bin/python3.X.

    `prefix` is the profile's final path (the farm is built aside and renamed).
    Returns the names rewritten.
    """
    python = str(prefix / "bin" / f"python{version}")
    bindir = farm / "bin"
    rewritten: list[str] = []
    for entry in sorted(os.scandir(bindir), key=lambda e: e.name):
        if INTERPRETER.match(entry.name) or not entry.is_file():
            continue
        try:
            with open(entry.path, "rb") as f:
                head = f.read(2)
                if head != b"#!":
                    continue
                data = head + f.read()
        except OSError:
            continue
        lines = data.splitlines(keepends=True)
        head_lines = _new_head(lines, python)
        if head_lines is None:
            continue
        new, replaced = head_lines
        body = b"".join(new + lines[replaced:])
        os.unlink(entry.path)
        atomic_write(Path(entry.path), body, mode=0o755)
        rewritten.append(entry.name)
    return rewritten


def setup_python(farm: Path, prefix: Path, version: str) -> dict[str, object]:
    """Make the farm a venv of its interpreter; returns facts for profile.json."""
    add_interpreter_aliases(farm, version)
    home = write_pyvenv_cfg(farm, version)
    scripts = rewrite_scripts(farm, prefix, version)
    return {"version": version, "home": home, "scripts": scripts}

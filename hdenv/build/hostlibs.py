"""Host libraries: `libraries = [...]` of a host artifact, and what captured programs load.

A library is named by its soname (`libmpi.so.40`, looked up in the system
library directories the dynamic loader searches) or by an absolute path. Its
identity, like a program's, is its name, its resolved path and the version
its file name reports (`libmpi.so.40.30.4` -> `40.30.4`); its bytes' sha256
goes to the metadata. The artifact links it under both the name given and
its soname in `lib/`, so the link audit finds it as declared.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from ..errors import UserError
from ..store.elf import ET_DYN, ElfError, LoaderPath, read_elf, system_lib_dirs
from .linkaudit import is_libc

_LIB_VERSION = re.compile(r"\.so\.(\d[\w.]*)$")


def _version(real: str) -> str:
    m = _LIB_VERSION.search(os.path.basename(real))
    return m.group(1) if m else ""


def find_library(name: str) -> str:
    """The path a library name or absolute path stands for; UserError if there is none."""
    if "/" in name:
        if not os.path.isabs(name):
            raise UserError(f"host library {name!r}: give a soname or an absolute path")
        if not os.path.exists(name):
            raise UserError(f"host library {name} does not exist")
        return name
    for d in system_lib_dirs():
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    raise UserError(f"host library {name!r} is not in the system library directories"
                    f" ({', '.join(system_lib_dirs())}); give its absolute path")


def resolve(requested: Sequence[str], runtime: Sequence[tuple[str, str]],
            digest: Callable[[str], str]) -> dict[str, dict[str, str]]:
    """link name -> {path, version, soname, sha256} for the requested and runtime libraries."""
    out: dict[str, dict[str, str]] = {}
    for name in requested:
        found = find_library(name)
        real = os.path.realpath(found)
        try:
            info = read_elf(real)
        except (ElfError, OSError):
            info = None
        if info is None or info.type != ET_DYN:
            raise UserError(f"host library {found} is not a shared library")
        link = os.path.basename(found)
        if link in out:
            raise UserError(f"host library name {link!r} given twice")
        out[link] = {"path": real, "version": _version(real),
                     "soname": info.soname or link, "sha256": digest(real)}
    for soname, real in runtime:
        if soname not in out and not any(i["soname"] == soname for i in out.values()):
            out[soname] = {"path": real, "version": _version(real), "soname": soname,
                           "sha256": digest(real)}
    return out


PC_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
DEFAULT_PC_PATH = ("/usr/local/lib/{arch}/pkgconfig", "/usr/local/lib/pkgconfig",
                   "/usr/local/share/pkgconfig", "/usr/lib/{arch}/pkgconfig", "/usr/lib/pkgconfig",
                   "/usr/lib64/pkgconfig", "/usr/share/pkgconfig")


def split_pkgconfig(entries: Sequence[str]) -> tuple[list[str], list[str]]:
    """`pkgconfig = [...]`: (absolute directories, module names like "yaml-0.1")."""
    dirs = [e for e in entries if e.startswith("/")]
    modules = [e for e in entries if not e.startswith("/")]
    for m in modules:
        if not PC_MODULE.match(m):
            raise UserError(f"pkgconfig entry {m!r} is neither an absolute directory nor a"
                            " pkg-config module name")
    return dirs, list(dict.fromkeys(modules))


def pkgconfig_dirs(dirs: Sequence[str]) -> list[str]:
    """Validated `pkgconfig = [...]` directories: absolute, existing, in the order given."""
    for d in dirs:
        if not os.path.isabs(d) or not os.path.isdir(d):
            raise UserError(f"pkgconfig directory {d!r} is not an existing absolute directory")
    return list(dict.fromkeys(dirs))


def system_pc_path() -> list[str]:
    """Where the host's pkg-config looks by default (its own answer, else the usual list)."""
    import subprocess

    try:
        out = subprocess.run(["pkg-config", "--variable", "pc_path", "pkg-config"],
                             capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out:
        return [d for d in out.split(":") if d]
    arch = next((os.path.basename(d) for d in system_lib_dirs() if "-linux-" in d), "")
    return [d.format(arch=arch) for d in DEFAULT_PC_PATH if arch or "{arch}" not in d]


def find_pc_modules(modules: Sequence[str], who: str) -> dict[str, str]:
    """module -> the host's `.pc` file of it; one line naming `who` for one not found."""
    search = system_pc_path()
    out = {}
    for module in modules:
        found = next((os.path.join(d, f"{module}.pc") for d in search
                      if os.path.isfile(os.path.join(d, f"{module}.pc"))), None)
        if found is None:
            raise UserError(f"{who}: no pkg-config module {module!r} on this host (looked in"
                            f" {':'.join(search)}); its -dev package is not installed?")
        out[module] = found
    return out


def loads(programs: dict[str, str]) -> dict[str, dict[str, str]]:
    """program -> {soname: path} of the libraries it loads, glibc's left out."""
    loader = LoaderPath()
    out: dict[str, dict[str, str]] = {}
    for name, real in sorted(programs.items()):
        try:
            info = read_elf(real)
        except (ElfError, OSError):
            continue
        if info is None:
            continue
        libs = {}
        for lib in info.needed:
            if not is_libc(lib):
                found = loader.find(info, lib)
                libs[lib] = os.path.realpath(found.path) if found.path else ""
        if libs:
            out[name] = libs
    return out

"""What a captured compiler brings along: its binutils, target-prefixed names, runtime libraries.

A compiler driver is not one program. `gcc` runs `as` and `collect2`/`ld`
found on PATH (`gcc -print-prog-name=as` says `as`), libtool and autotools call
`ar`, `nm`, `ranlib` and `strip`, Debian's Python builds extensions with
`x86_64-linux-gnu-gcc` and autotools probes `TRIPLET-gcc` first when cross
information is around. So a captured GCC-compatible driver brings, by asking
the driver itself:

- each binutils program it would call (`-print-prog-name=TOOL`, looked up on
  the same PATH when the driver answers with a bare name);
- `cc` for `gcc` and `c++` for `g++` when they are the same program;
- `TRIPLET-NAME` (`-dumpmachine`) for the driver and its binutils when that
  name is the same program (never a cross compiler that happens to be there);
- the runtime libraries programs built with it load (libgcc_s, libstdc++ for
  C++, libgfortran for Fortran, ...), found with `-print-file-name`, so the
  link audit counts them as declared.

Only what belongs to the driver's own language is asked for, so installing
another compiler's runtime (gfortran next to gcc) changes no id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..store.elf import ET_DYN, ElfError, read_elf

DRIVER_RE = re.compile(
    r"^(?:[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*-)?"
    r"(gcc|g\+\+|c\+\+|cc|gfortran|f95|clang|clang\+\+)(?:-\d+(?:\.\d+)*)?$")
LANGUAGE = {"gcc": "c", "cc": "c", "clang": "c", "g++": "c++", "c++": "c++", "clang++": "c++",
            "gfortran": "fortran", "f95": "fortran"}
BINUTILS = ("as", "ld", "ar", "nm", "ranlib", "strip", "objcopy", "objdump", "readelf")
ALIASES = {"gcc": "cc", "g++": "c++"}
_C_RUNTIME = ("libgcc_s.so.1", "libgomp.so", "libatomic.so", "libquadmath.so", "libitm.so",
              "libasan.so", "liblsan.so", "libtsan.so", "libubsan.so")
RUNTIME = {"c": _C_RUNTIME, "c++": _C_RUNTIME + ("libstdc++.so",),
           "fortran": _C_RUNTIME + ("libgfortran.so",)}

Ask = Callable[[str, str, list[str]], str]
"""ask(real path, name, args): the driver's first output line (cached), '' on failure."""
Find = Callable[[str], "tuple[str, str] | None"]
"""find(name or absolute path): (link name, real path) on the capture's PATH, or None."""


@dataclass
class Brought:
    programs: list[tuple[str, str]]  # (link name, name or path to resolve)
    libraries: list[tuple[str, str]]  # (link name: the soname, real path)


def driver_language(name: str) -> str | None:
    """'c', 'c++' or 'fortran' for a GCC-compatible driver name, else None."""
    m = DRIVER_RE.match(name)
    return LANGUAGE[m.group(1)] if m else None


def brought_by(programs: list[tuple[str, str]], ask: Ask, find: Find) -> Brought:
    """Programs and libraries the compiler drivers among `programs` (name, real) bring."""
    have = {name for name, _ in programs}
    real_of = dict(programs)
    out = Brought([], [])

    def add(name: str, target: str) -> None:
        if name in have:
            return
        found = find(target)
        if found is None:
            return
        have.add(name)
        real_of[name] = found[1]
        out.programs.append((name, target))

    for name, real in programs:
        lang = driver_language(name)
        if lang is None:
            continue
        machine = ask(real, name, ["-dumpmachine"])
        mine = [name]
        for tool in BINUTILS:
            answer = ask(real, name, [f"-print-prog-name={tool}"])
            if answer and (os.path.isabs(answer) or "/" not in answer):
                add(tool, answer if os.path.isabs(answer) else tool)
                mine.append(tool)
        base = DRIVER_RE.match(name)
        alias = ALIASES.get(base.group(1)) if base else None
        if alias and alias not in have:
            found = find(alias)
            if found is not None and found[1] == real:
                add(alias, alias)
                mine.append(alias)
        if re.fullmatch(r"[A-Za-z0-9_]+(-[A-Za-z0-9_.]+)+", machine or ""):
            for n in mine:
                prefixed = f"{machine}-{n}"
                if n.startswith(machine + "-") or prefixed in have or n not in real_of:
                    continue
                found = find(prefixed)
                if found is not None and found[1] == real_of[n]:
                    add(prefixed, prefixed)
        for lib in RUNTIME[lang]:
            answer = ask(real, name, [f"-print-file-name={lib}"])
            hit = _shared_library(answer)
            if hit is not None and hit[0] not in {n for n, _ in out.libraries}:
                out.libraries.append(hit)
    return out


def _shared_library(path: str) -> tuple[str, str] | None:
    """(soname, real path) if `path` is a shared library (not a linker script), else None."""
    if not path or not os.path.isabs(path) or not os.path.exists(path):
        return None
    real = os.path.realpath(path)
    try:
        info = read_elf(real)
    except (ElfError, OSError):
        return None
    if info is None or info.type != ET_DYN:
        return None
    return info.soname or os.path.basename(real), real

"""Where an ELF file keeps its run path: byte ranges of DT_RPATH/DT_RUNPATH strings.

Relocation treats the run path apart from every other string: patchelf can
rewrite it to any length, while any other occurrence of the old store root
can only be overwritten in place. Knowing the exact byte ranges (not just
the values) tells the two apart, so a binary whose only mention of the old
root is its run path can move into a longer root. Read-only and stdlib-only:
the headers are parsed with `struct`, nothing is executed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ELF_MAGIC = b"\x7fELF"
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 5, 15, 29


@dataclass(frozen=True)
class RunPath:
    start: int  # file offset of the first byte of the string
    end: int  # file offset of its terminating NUL
    value: str
    tag: str  # "RPATH" or "RUNPATH"


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def run_paths(data: bytes) -> list[RunPath] | None:
    """The run path strings of an ELF image; [] if it has none, None if unreadable."""
    if not is_elf(data) or len(data) < 64:
        return None
    try:
        return _run_paths(data)
    except (struct.error, ValueError, IndexError):
        return None


def _run_paths(data: bytes) -> list[RunPath]:
    wide = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if wide:
        phoff, = struct.unpack_from(end + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
        phdr = end + "IIQQQQQQ"  # type, flags, offset, vaddr, paddr, filesz, memsz, align
    else:
        phoff, = struct.unpack_from(end + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
        phdr = end + "IIIIIIII"  # type, offset, vaddr, paddr, filesz, memsz, flags, align
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        fields = struct.unpack_from(phdr, data, phoff + i * phentsize)
        if wide:
            ptype, _, offset, vaddr, _, filesz = fields[:6]
        else:
            ptype, offset, vaddr, _, filesz = fields[:5]
        if ptype == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif ptype == PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return []
    entry = end + ("qQ" if wide else "iI")
    size = struct.calcsize(entry)
    strtab: int | None = None
    wanted: list[tuple[str, int]] = []
    for pos in range(dynamic[0], dynamic[0] + dynamic[1] - size + 1, size):
        tag, val = struct.unpack_from(entry, data, pos)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab = val
        elif tag in (DT_RPATH, DT_RUNPATH):
            wanted.append(("RPATH" if tag == DT_RPATH else "RUNPATH", val))
    if not wanted or strtab is None:
        return []
    base = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz), None)
    if base is None:
        raise ValueError("string table outside every loaded segment")
    out = []
    for tag, offset in wanted:
        start = base + offset
        stop = data.index(b"\0", start)
        out.append(RunPath(start, stop, data[start:stop].decode("utf-8", "surrogateescape"), tag))
    return out

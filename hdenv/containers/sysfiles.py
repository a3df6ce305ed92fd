"""The host files an image needs: what host artifacts point to, and the system libraries loaded.

Host artifacts are symlinks to host programs and libraries; in an image
those links must land on real files, so the files are copied in at the
same paths. Programs then need the C library, the dynamic loader and the
other system libraries they load, which an empty base lacks. They are found
from what the store recorded (a host artifact's `host_files` and `loads`, a
build's undeclared system libraries in `links`) and, since the link audit
leaves glibc and the loader out on purpose, by resolving every `DT_NEEDED`
and `PT_INTERP` of each ELF file in the closure and of each file added, as
the loader would (`store.elf.LoaderPath`), until nothing new appears. A
script's `#!` interpreter comes along too.

Each path keeps the host's shape: a directory that is a symlink on the host
(`/lib64 -> usr/lib64` on a merged-/usr system) is a symlink in the image,
and a library's soname link points at the real file, so the loader and
anything that reads `/proc/self/exe` see what they would see on the host.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HdenvError
from ..store import fdtree
from ..store.elf import ElfError, ElfInfo, LoaderPath, read_elf, walk_elf
from .closure import Closure
from .tarlayer import Entry, file_mode

MAX_LINKS = 40  # as the kernel's symlink limit: a loop ends here
PYTHON_RE = re.compile(r"^python(\d+\.\d+)$")
# Left out of a host Python's standard library: the host's own packages (a profile's
# Python is a venv without them) and what only CPython's developers run.
PYTHON_SKIP = frozenset({"site-packages", "dist-packages", "test", "idlelib", "turtledemo"})


class HostFileError(HdenvError):
    """A host file the image needs cannot be read: exit 1, one line."""


@dataclass
class SystemFiles:
    """The host paths to copy, as tar entries; `missing` are libraries no directory has."""

    entries: dict[str, Entry] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the regular files, host paths
    missing: list[str] = field(default_factory=list)
    skip_dirs: frozenset[str] = frozenset()  # directories the base image already has

    def add(self, path: str, depth: int = 0) -> str | None:
        """Add `path` (its directory links, leaf links and the file); returns the real file."""
        if depth > MAX_LINKS:
            raise HostFileError(f"{path}: too many levels of symbolic links")
        canon_dir = self._directory(os.path.dirname(os.path.normpath(path)), depth)
        leaf = os.path.join(canon_dir, os.path.basename(path))
        try:
            st = os.lstat(leaf)
        except OSError as e:
            raise HostFileError(f"cannot read host file {path}: {e.strerror}") from None
        name = leaf.lstrip("/")
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(leaf)
            self.entries.setdefault(name, Entry(name, "link", 0o777, target=target))
            return self.add(os.path.join(canon_dir, target), depth + 1)
        if stat.S_ISDIR(st.st_mode):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise HostFileError(f"host file {path} is not a regular file")
        if not os.access(leaf, os.R_OK):
            raise HostFileError(f"cannot read host file {leaf}: permission denied")
        if name not in self.entries:
            self.entries[name] = Entry(name, "file", file_mode(st.st_mode), source=Path(leaf))
            self.files.append(leaf)
        return leaf

    def _directory(self, d: str, depth: int) -> str:
        """`d` with its symlinked components resolved; the links become entries."""
        cur = "/"
        for comp in [c for c in d.split("/") if c]:
            cand = os.path.join(cur, comp)
            hops = depth
            while os.path.islink(cand):
                hops += 1
                if hops > MAX_LINKS:
                    raise HostFileError(f"{d}: too many levels of symbolic links")
                target = os.readlink(cand)
                name = cand.lstrip("/")
                if cand not in self.skip_dirs:
                    self.entries.setdefault(name, Entry(name, "link", 0o777, target=target))
                cand = os.path.normpath(os.path.join(os.path.dirname(cand), target))
                cand = self._directory(cand, hops) if cand != "/" else "/"
            cur = cand
        return cur


def _interpreter(path: str) -> str | None:
    """The `#!` interpreter of a script (absolute paths only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words or not words[0].startswith(b"/"):
        return None
    return os.fsdecode(words[0])


def _host_paths(closure: Closure) -> list[str]:
    """What the store recorded: host artifacts' files and loads, builds' undeclared libraries."""
    out: list[str] = []
    for part in closure.parts:
        meta = part.meta
        out += [str(p) for p in (meta.get("host_files") or {})]
        for libs in (meta.get("loads") or {}).values():
            out += [str(p) for p in libs.values() if p]
        links = meta.get("links") or {}
        out += [str(u.get("path")) for u in links.get("undeclared", []) if u.get("path")]
        if part.kind == "host":  # the links themselves: where the programs are
            for dirpath, _dirs, names in fdtree.walk(part.path):
                for n in names:
                    p = os.path.join(dirpath, n)
                    if os.path.islink(p) and os.readlink(p).startswith("/"):
                        target = os.readlink(p)
                        if not any(target.startswith(f"{r}/") for r in map(str, closure.roots())):
                            out.append(target)
    return out


def _inside(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(r) or path.startswith(f"{r}/") for r in roots)


def collect_system_files(closure: Closure, base_dirs: frozenset[str] = frozenset(),
                         extra: tuple[str, ...] = ()) -> SystemFiles:
    """Every host file the closure needs (and `extra` paths), with what they load, transitively."""
    found = SystemFiles(skip_dirs=base_dirs)
    loader = LoaderPath()
    roots = closure.roots()
    elves: list[ElfInfo] = []
    scripts: list[str] = []
    for part in closure.parts:
        if part.kind != "host":
            elves += list(walk_elf(part.path))
            scripts += _scripts(part.path)
    queue = _host_paths(closure) + list(extra)
    for info in elves:
        queue += _needs(loader, info, found)
    for s in scripts:
        interp = _interpreter(s)
        if interp is not None and not _inside(interp, roots):
            _queue_interpreter(interp, queue, found)
    done: set[str] = set()
    while queue:
        path = queue.pop()
        if path in done or _inside(path, roots):
            continue
        done.add(path)
        real = found.add(path)
        if real is None or real in done and real != path:
            continue
        done.add(real)
        queue += _runtime_tree(real, done)
        try:
            elf = read_elf(real)
        except ElfError:
            elf = None
        if elf is not None:
            queue += _needs(loader, elf, found)
        elif os.access(real, os.X_OK):
            interp = _interpreter(real)
            if interp is not None:
                _queue_interpreter(interp, queue, found)
    found.missing.sort()
    return found


def _queue_interpreter(interp: str, queue: list[str], found: SystemFiles) -> None:
    """A script's interpreter; one this machine lacks is noted (the script cannot run here
    either), never an error."""
    if os.path.exists(interp):
        queue.append(interp)
    elif interp not in found.missing:
        found.missing.append(interp)


def _runtime_tree(real: str, done: set[str]) -> list[str]:
    """What an interpreter cannot start without beside its binary: a Python's standard library.

    `PREFIX/bin/pythonX.Y` reads `PREFIX/lib/pythonX.Y` (found by its `os.py`,
    as CPython itself finds it); its extension modules' libraries follow from
    the ELF scan like any other file's.
    """
    m = PYTHON_RE.match(os.path.basename(real))
    if m is None:
        return []
    tree = os.path.join(os.path.dirname(os.path.dirname(real)), "lib", f"python{m.group(1)}")
    if tree in done or not os.path.isfile(os.path.join(tree, "os.py")):
        return []
    done.add(tree)
    out: list[str] = []
    stack = [tree]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if d == tree and e.name in PYTHON_SKIP:
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                out.append(e.path)
    return out


def _needs(loader: LoaderPath, info: ElfInfo, found: SystemFiles) -> list[str]:
    """The loader and libraries `info` loads (paths on this machine)."""
    out = [info.interp] if info.interp else []
    for lib in info.needed:
        hit = loader.find(info, lib)
        if hit.path is None:
            if lib not in found.missing:
                found.missing.append(lib)
        else:
            out.append(hit.path)
    return out


def _scripts(root: Path) -> list[str]:
    """Executable files under `root` that start with `#!` (metadata left out)."""
    out = []
    for dirpath, dirnames, names in fdtree.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".hdenv"]
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                with open(p, "rb") as f:
                    if f.read(2) == b"#!":
                        out.append(p)
    return out

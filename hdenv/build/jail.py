"""The build jail: of the host's headers and libraries, a build sees what it declared.

The sandbox (`bwrap.py`) shows the host read-only, so without this a build
finds whatever development files the machine happens to have: `#include
<yaml.h>` and `-lyaml` work here and fail on the next machine, and the
artifact's id never said it used them. Inside the jail a build sees, of the
host's development files, only:

- the C library and the kernel headers (`libc6-dev`, `linux-libc-dev`; on rpm
  hosts `glibc-devel`, `glibc-headers`, `kernel-headers`);
- the compilers' own dev files (`libgcc-N-dev`, `libstdc++-N-dev`,
  `libgfortran-N-dev`, `libstdc++-devel`) and each declared compiler's
  internal directory (`install:` of `-print-search-dirs`); a declared MPI
  wrapper's include and library directories and the libraries it links
  (`--showme`), a declared Python's headers (sysconfig's `include`);
- the files of the host artifacts it declared (`packages = [...]`,
  `libraries`, `pkgconfig`).

What is hidden: all of `/usr/include` but the allowed part and, in the
multiarch library directories (`/usr/lib/x86_64-linux-gnu`, `/usr/lib64`), the
development files only: unversioned `lib*.so` links and linker scripts (not a
library whose soname ends in `.so`, such as `libbfd-2.40-system.so`), `*.a`,
`*.la` and the `pkgconfig/` and `cmake/` directories. The versioned `.so.N`
runtime libraries stay: gcc, make, perl, cmake and sh load theirs from there.
`/usr/local` and `/opt` are already empty in the sandbox (`bwrap.HIDDEN`).

How: each area becomes a tmpfs of symlinks. The real directory is bound once
at `.hdenv-host` inside it, and every entry kept is a symlink into that (a
directory whose every entry is allowed is one link, so libc's 2,200 headers
are ~140 links; a link keeps its own target). A bind mount per entry instead
costs ~25 ms per 140 mounts and a second for the library directory's ~1,000
(mounts get slower as a namespace holds more of them); the symlinks cost
~10 ms in all per bwrap start (`benchmarks/bench_jail.py`). The jail keeps
honest builds honest; it is no wall against a build that goes looking in
`.hdenv-host` on purpose.

Masking single files with `--ro-bind /dev/null` does not work: most dev files
are symlinks, and a bind follows the link, so it would hide the runtime
library the link points at.

What the jail costs to work out (package lists, a scan of `/usr/include`) is
done once per process and kept per allowed set (`functools.lru_cache`); the
package lists, which `lib*.so` are link-time only, and the arguments of the
last few allowed sets are kept in the store's `cache/jail.json` while the
package database and the areas are unchanged (`use_cache`, `cache_data`; the
builder reads and writes that file through the store's descriptors, and
believes it only if it is the user's own). A header copied by hand into a
subdirectory of `/usr/include` changes none of that key: like every file no
package declares, it stays hidden until the package database changes.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import hostpkgs
from ..store.elf import ElfError, read_elf
from ..store.fsutil import atomic_write
from .toolchain import driver_language

INCLUDE_AREAS = ("/usr/include",)
HOST_COPY = ".hdenv-host"  # where an area's real directory is bound, inside it
DEV_FILE = re.compile(r"\.(a|la)$")
UNVERSIONED = re.compile(r"^lib.+\.so$")
MPI_WRAPPER = re.compile(r"^mpi(cc|cxx|c\+\+|CC|fort|f77|f90|f95|icc|icpc|ifort)$")
PYTHON = re.compile(r"^python3(\.\d+)?$")
DEV_DIRS = frozenset({"pkgconfig", "cmake"})
BASE_PACKAGES = {
    "deb": ("libc6-dev", "linux-libc-dev", "libgcc-*-dev", "libstdc++-*-dev",
            "libgfortran-*-dev"),
    "rpm": ("glibc-devel", "glibc-headers", "kernel-headers", "libstdc++-devel",
            "libgfortran"),
}
"""Always visible: the C library, the kernel headers, the GCC runtimes' dev files."""


def library_areas() -> list[str]:
    """The multiarch library directories (real directories, not links), as real paths."""
    out: list[str] = []
    for d in [*sorted(glob.glob("/usr/lib/*-linux-gnu*")), "/usr/lib64"]:
        if os.path.isdir(d) and not os.path.islink(d):
            real = os.path.realpath(d)
            if real not in out:
                out.append(real)
    return out


def normal(path: str) -> str:
    """`path` with its directory resolved (`/lib/x86_64-linux-gnu/x` -> `/usr/lib/...`)
    and the last component kept, so a link is still the link."""
    parent, name = os.path.split(path)
    return os.path.join(_real_dir(parent), name) if parent else path


@functools.lru_cache(maxsize=1024)
def _real_dir(path: str) -> str:
    return os.path.realpath(path)


_known: dict[str, Any] = {}
"""This process's answers: "base" (base_allowed), "link_time" (area -> names hidden as
link-time only); filled from the disk cache (`load_cache`) or worked out once."""


def base_allowed() -> frozenset[str]:
    """The files of BASE_PACKAGES installed here (normalised); empty without dpkg or rpm."""
    if "base" not in _known:
        kind = hostpkgs.manager()
        names = hostpkgs.matching(list(BASE_PACKAGES[kind])) if kind else []
        _known["base"] = frozenset(normal(p) for p in hostpkgs.files_of(names))
    base: frozenset[str] = _known["base"]
    return base


def forget() -> None:
    """Drop this process's answers (a benchmark's cold start; a test's changed host)."""
    _known.clear()
    _args.cache_clear()
    _tree.cache_clear()
    _link_time_name.cache_clear()
    _dev_inside.cache_clear()


CACHE_FORMAT = 3  # 2: dev_subdirs; 3: args
RACY_NS = 2_000_000_000  # a key this fresh may change again within one timestamp tick
STATE_PATHS = ("/var/lib/dpkg/status", "/var/lib/rpm")


def _host_key() -> list[Any]:
    """What the cached answers depend on: the package database and the areas' listings."""
    key: list[Any] = [CACHE_FORMAT, list(BASE_PACKAGES.get(hostpkgs.manager() or "", ()))]
    for p in [*STATE_PATHS, *INCLUDE_AREAS, *library_areas()]:
        try:
            st = os.stat(p)
        except OSError:
            key.append([p])
            continue
        key.append([p, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return key


CACHE_LIMIT = 64 * 1024 * 1024
"""The most `cache/jail.json` may hold (a real one is ~1 MB): more is not read."""


def load_cache(path: Path) -> None:
    """`use_cache` with the bytes of `path`, a file in a directory only this user can
    change (tests, the benchmark); a build reads the store's through its descriptors."""
    try:
        with open(path, "rb") as f:
            data = f.read(CACHE_LIMIT + 1)
    except OSError:
        return
    use_cache(data)


def use_cache(data: bytes | None) -> None:
    """Take base_allowed's and the link-time names' answers from `data` (the store's
    cache/jail.json) when the host is unchanged since; missing, stale, corrupt or hostile
    data (not JSON, wrong types, nested too deep, too big) is ignored: it is a cache.
    Saves ~45 ms of the ~60 ms the jail costs the first time in a process."""
    if "base" in _known or data is None or len(data) > CACHE_LIMIT:
        return
    try:
        parsed = json.loads(data)
        if not isinstance(parsed, dict) or parsed.get("key") != _host_key():
            return
        base = _paths(parsed["base"])
        link_time = _by_area(parsed["link_time"])
        dev_subdirs = _by_area(parsed["dev_subdirs"])
        args = _arg_lists(parsed["args"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return
    _known.update(base=base, link_time=link_time, dev_subdirs=dev_subdirs, args=args,
                  saved=True)


def _paths(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise TypeError("not a list of strings")
    return frozenset(value)


def _by_area(value: Any) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise TypeError("not a table")
    return {str(a): _paths(names) for a, names in value.items()}


def _arg_lists(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise TypeError("not a table")
    out = {}
    for key, args in value.items():
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise TypeError("not a list of strings")
        out[str(key)] = tuple(args)
    return out


def save_cache(path: Path) -> None:
    """`cache_data` written to `path` (tests, the benchmark: see `load_cache`)."""
    data = cache_data()
    if data is not None:
        with contextlib.suppress(OSError):
            atomic_write(path, data)


def cache_data() -> bytes | None:
    """This process's answers for the next one (the store's cache/jail.json), or None when
    they came from the cache or the host changed too recently to be sure the key will show
    the next change."""
    if "base" not in _known or _known.get("saved"):
        return None
    key = _host_key()
    newest = max((k[3] for k in key[2:] if len(k) > 3), default=0)
    if time.time_ns() - newest < RACY_NS:
        return None
    _known["saved"] = True
    link_time = {a: sorted(_link_time_names(a)) for a in library_areas()}
    dev_subdirs = {a: sorted(_dev_subdirs(a)) for a in library_areas()}
    args = {k: list(v) for k, v in _known.get("args", {}).items()}
    return (json.dumps({"key": key, "base": sorted(base_allowed()), "link_time": link_time,
                        "dev_subdirs": dev_subdirs, "args": args}, indent=2, sort_keys=True)
            + "\n").encode()


def _link_time_names(area: str) -> frozenset[str]:
    """The `lib*.so` names in `area` that only `-lNAME` uses (see `_link_time_name`)."""
    cached = _known.get("link_time", {}).get(area)
    if cached is not None:
        return frozenset(cached)
    try:
        names = os.listdir(area)
    except OSError:
        names = []
    found = frozenset(n for n in names if _link_time_name(os.path.join(area, n)))
    _known.setdefault("link_time", {})[area] = found
    return found


def available() -> bool:
    """Whether this host can be jailed: a package database says what libc's files are."""
    return bool(base_allowed())


@functools.lru_cache(maxsize=16)
def compiler_dirs(program: str) -> tuple[str, ...]:
    """A GCC-compatible driver's own directory (`install:` of `-print-search-dirs`).

    Its `libraries:` line is not taken: it names the system directories too.
    """
    try:
        out = subprocess.run([program, "-print-search-dirs"], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(os.path.realpath(line.split(":", 1)[1].strip()) for line in out.splitlines()
                 if line.startswith("install:") and line.split(":", 1)[1].strip())


@functools.lru_cache(maxsize=4)
def _tree(area: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(directory -> its entries' paths, symlink -> its target) under `area`, without
    recursion; symlinks to directories are entries, never entered."""
    children: dict[str, list[str]] = {}
    links: dict[str, str] = {}
    todo = [area]
    while todo:
        d = todo.pop()
        kids = children.setdefault(d, [])
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            kids.append(e.path)
            try:
                if e.is_symlink():
                    links[e.path] = os.readlink(e.path)
                elif e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
            except OSError:
                continue
    return children, links


def _include_args(area: str, allowed: frozenset[str]) -> list[str]:
    """A tmpfs of symlinks over `area` holding the allowed part only: a directory whose
    every entry is allowed is one link, a link is the same link, a file one link."""
    children, links = _tree(area)
    whole: dict[str, bool] = {}
    some: dict[str, bool] = {}
    for d in sorted(children, key=lambda p: -p.count("/")):  # children before parents
        kids = children[d]
        whole[d] = bool(kids) and all(whole.get(k, k in allowed) for k in kids)
        some[d] = any(some.get(k, k in allowed) for k in kids)
    copy = os.path.join(area, HOST_COPY)
    args = ["--tmpfs", area, "--ro-bind", area, copy]
    todo = [area]
    while todo:
        d = todo.pop()
        for k in children[d]:
            if k in children:  # a directory
                if whole[k]:
                    args += ["--symlink", copy + k[len(area):], k]
                elif some[k]:
                    args += ["--dir", k]
                    todo.append(k)
            elif k in allowed:
                args += ["--symlink", links.get(k, copy + k[len(area):]), k]
    return [*args, "--remount-ro", area]


def _library_args(area: str, allowed: frozenset[str]) -> list[str]:
    """A tmpfs of symlinks over `area`: every entry but the dev files, and the allowed ones."""
    copy = os.path.join(area, HOST_COPY)
    args = ["--tmpfs", area, "--ro-bind", area, copy]

    def keep(path: str) -> list[str]:
        try:
            target = os.readlink(path)  # a link keeps its own target (libz.so.1 -> libz.so.1.2)
        except OSError:
            parent = os.path.dirname(path)
            target = (f"{HOST_COPY}/{os.path.basename(path)}" if parent == area else
                      os.path.relpath(os.path.join(copy, os.path.relpath(path, area)), parent))
        return ["--symlink", target, path]

    try:
        names = sorted(os.listdir(area))
    except OSError:
        return []
    link_time = _link_time_names(area)
    for name in names:
        path = os.path.join(area, name)
        if name == HOST_COPY:
            continue
        if path not in allowed and name not in DEV_DIRS and os.path.isdir(path) \
                and not os.path.islink(path) and _dev_subdir(path):
            args += _subtree_args(path, allowed, keep)  # openmpi/include, perl/.../CORE
        elif path in allowed or not (DEV_FILE.search(name) or name in DEV_DIRS
                                     or name in link_time):
            args += keep(path)
        elif name in DEV_DIRS and os.path.isdir(path) and not os.path.islink(path):
            inside = sorted(p for p in allowed if p.startswith(path + "/"))
            made = {area}
            for p in inside:
                parent = os.path.dirname(p)
                missing = []
                while parent not in made:
                    missing.append(parent)
                    parent = os.path.dirname(parent)
                for d in reversed(missing):
                    args += ["--dir", d]
                    made.add(d)
                args += keep(p)
    return [*args, "--remount-ro", area]


HEADER = re.compile(r"\.(h|hh|hpp|hxx|inc)$")
DEV_SUBDIRS = frozenset({"include", *DEV_DIRS})


def _is_dev(entry: os.DirEntry[str]) -> bool:
    """A development file or directory inside a library directory's subdirectory."""
    try:
        if entry.is_dir(follow_symlinks=False):
            return entry.name in DEV_SUBDIRS
    except OSError:
        return False
    return bool(DEV_FILE.search(entry.name) or HEADER.search(entry.name)
                or _link_time_name(entry.path))


def _dev_subdirs(area: str) -> frozenset[str]:
    """The real subdirectories of `area` that hold development files (from the disk cache
    when the host is unchanged: scanning them all costs ~100 ms)."""
    cached = _known.get("dev_subdirs", {}).get(area)
    if cached is not None:
        return frozenset(cached)
    try:
        names = os.listdir(area)
    except OSError:
        names = []
    found = frozenset(p for p in (os.path.join(area, n) for n in names if n != HOST_COPY)
                      if os.path.isdir(p) and not os.path.islink(p) and _dev_inside(p))
    _known.setdefault("dev_subdirs", {})[area] = found
    return found


def _holders(allowed: frozenset[str], top: str) -> frozenset[str]:
    """The directories under `top` that hold something allowed (each allowed path's
    ancestors): one pass over `allowed`, not one per directory entry."""
    out: set[str] = set()
    for a in allowed:
        if a.startswith(top + "/"):
            parent = os.path.dirname(a)
            while len(parent) > len(top) and parent not in out:
                out.add(parent)
                parent = os.path.dirname(parent)
    return frozenset(out)


def _dev_subdir(path: str) -> bool:
    return path in _dev_subdirs(os.path.dirname(path))


@functools.lru_cache(maxsize=4096)
def _dev_inside(path: str) -> bool:
    """Whether the tree at `path` (a real directory) holds development files, without
    recursion: headers, `include/`, `*.a`, link-time `lib*.so` (`openmpi/include/mpi.h`)."""
    todo = [path]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue
        for e in entries:
            if _is_dev(e):
                return True
            try:
                if e.is_dir(follow_symlinks=False):
                    todo.append(e.path)
            except OSError:
                continue
    return False


def _subtree_args(top: str, allowed: frozenset[str],
                  keep: Callable[[str], list[str]]) -> list[str]:
    """A subdirectory of a library area that holds development files, rebuilt as real
    directories of links without them: runtime files (plugins, `.so.N`, `.mod`) kept,
    headers, `include/`, `*.a` and link-time `lib*.so` left out unless declared (a
    declared MPI's `openmpi/include` stays whole)."""
    args = ["--dir", top]
    holders = _holders(allowed, top)
    todo = [(top, False)]  # (directory, only what is allowed in it)
    while todo:
        d, only_allowed = todo.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            p = e.path
            if p in allowed:
                args += keep(p)
                continue
            try:
                real_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                real_dir = False
            holds_allowed = real_dir and p in holders
            if only_allowed or _is_dev(e):
                if holds_allowed:
                    args += ["--dir", p]
                    todo.append((p, True))
            elif real_dir and (holds_allowed or _dev_inside(p)):
                args += ["--dir", p]
                todo.append((p, False))
            else:
                args += keep(p)
    return args


@functools.lru_cache(maxsize=4096)
def _link_time_name(path: str) -> bool:
    """Whether `path` is only what `-lNAME` finds: a `lib*.so` that is a linker script, or
    a link to (or copy of) a library whose soname differs. A `lib*.so` that is its own
    soname (`libbfd-2.40-system.so`) is a runtime library: `as` and `ld` load it."""
    name = os.path.basename(path)
    if not UNVERSIONED.match(name):
        return False
    try:
        info = read_elf(os.path.realpath(path))
    except (ElfError, OSError):
        return True
    if info is None:
        return True  # a linker script (libc.so, libncurses.so)
    if info.soname is None:
        return os.path.islink(path)
    return info.soname != name


KEPT_ARGS = 16
"""Allowed sets whose arguments cache/jail.json keeps (a stack's builds use a few: the
base set, and one per declared compiler and MPI); the oldest go first."""


@functools.lru_cache(maxsize=32)
def _args(allowed: frozenset[str]) -> tuple[str, ...]:
    """The bwrap arguments for `allowed`, from the disk cache when the host is unchanged:
    working them out scans /usr/include and the library directories' dev subdirectories
    (~75 ms, ~1,800 opens here), on the critical path of the first build of every run."""
    key = hashlib.sha256("\0".join(sorted(allowed)).encode("utf-8", "surrogateescape")
                         ).hexdigest()
    known: dict[str, tuple[str, ...]] = _known.setdefault("args", {})
    if key in known:
        return known[key]
    found = _work_out_args(allowed)
    known[key] = found
    while len(known) > KEPT_ARGS:
        del known[next(iter(known))]
    _known["saved"] = False  # cache_data has something new to save
    return found


def _work_out_args(allowed: frozenset[str]) -> tuple[str, ...]:
    args: list[str] = []
    for area in INCLUDE_AREAS:
        if os.path.isdir(area):
            args += _include_args(os.path.realpath(area), allowed)
    for area in library_areas():
        args += _library_args(area, allowed)
    return tuple(args)


_working_out = threading.Lock()


def bwrap_args(extra: Iterable[str] = ()) -> list[str]:
    """The bwrap arguments that jail a build, `extra` (declared files and directories)
    allowed besides the base set; [] where the host cannot be jailed (no dpkg or rpm).

    One thread at a time: `-j 2` starts two builds at once, and both worked out the same
    jail (package lists, the scans of /usr/include) side by side, on the cores their
    builds need, before either cache held it."""
    with _working_out:
        return _bwrap_args(extra)


def _bwrap_args(extra: Iterable[str]) -> list[str]:
    base = base_allowed()
    if not base:
        return []
    more = set()
    for p in extra:
        if os.path.isabs(p):
            more.add(normal(p.rstrip("/") or "/"))
            more.add(os.path.realpath(p))
    more -= {*INCLUDE_AREAS, *library_areas()}  # a whole area is never allowed by the way
    return list(_args(base | _with_contents(more)))


def declared(host_specs: Iterable[dict[str, Any]]) -> list[str]:
    """What the host artifacts a build uses let it see: their packages' files, libraries,
    `pkgconfig` directories, absolute `env` values and their compilers' own directories."""
    out: list[str] = []
    for spec in host_specs:
        for info in spec.get("packages", {}).values():
            out += info.get("files", [])
        out += [i["path"] for i in spec.get("libraries", {}).values()]
        out += spec.get("pkgconfig", [])
        out += [v for v in spec.get("env", {}).values() if os.path.isabs(v)]
        for name, info in spec.get("programs", {}).items():
            if driver_language(name) is not None:
                out += compiler_dirs(info["path"])
            elif MPI_WRAPPER.match(name):
                out += wrapper_files(info["path"], name)
            elif PYTHON.match(name):
                out += python_headers(info["path"])
    return out


def _output(argv: list[str], program: str | None = None) -> str:
    """What `argv` prints; `program` runs as `argv[0]` (Open MPI's wrappers are one
    program, `opal_wrapper`, that tells the language by the name it was called by)."""
    try:
        return subprocess.run(argv, executable=program, capture_output=True, text=True,
                              timeout=30, check=False, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


@functools.lru_cache(maxsize=16)
def wrapper_files(program: str, name: str) -> tuple[str, ...]:
    """An MPI compiler wrapper's own files: the directories of its `-I` and `-L` flags and
    what each of its `-lNAME` finds in the library areas (Open MPI's `--showme:compile`
    and `--showme:link`, MPICH's `-compile_info` and `-link_info`): the wrapper adds them
    to every command line, so a build that declared it links them (`-lhwloc`)."""
    text = " ".join(_output([name, flag], program) for flag in ("--showme:compile",
                                                                "--showme:link"))
    if not text.strip():
        text = " ".join(_output([name, flag], program) for flag in ("-compile_info",
                                                                    "-link_info"))
    dirs = [t[2:] for t in text.split() if t[:2] in ("-I", "-L") and t[2:].startswith("/")]
    names = [t[2:] for t in text.split() if t.startswith("-l") and len(t) > 2]
    out = list(dirs)
    for lib in names:
        for d in [*dirs, *library_areas()]:
            for suffix in (".so", ".a"):
                if os.path.lexists(os.path.join(d, f"lib{lib}{suffix}")):
                    out.append(os.path.join(d, f"lib{lib}{suffix}"))
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=16)
def python_headers(program: str) -> tuple[str, ...]:
    """A Python interpreter's own headers (`Python.h`): its sysconfig include directories,
    which C extensions built with it need (`/usr/include/python3.11` and, on Debian,
    `/usr/include/x86_64-linux-gnu/python3.11`)."""
    text = _output([program, "-I", "-c", "import sysconfig as s; print(s.get_path('include'));"
                    " print(s.get_path('platinclude')); print(s.get_config_var('MULTIARCH'))"])
    lines = [line.strip() for line in text.splitlines()]
    if len(lines) != 3 or not lines[0].startswith("/"):
        return ()
    out = lines[:2]
    if lines[2] and lines[2] != "None":  # Debian: pyconfig.h includes <MULTIARCH/python3.X/...>
        out.append(os.path.join(os.path.dirname(lines[0]), lines[2], os.path.basename(lines[0])))
    return tuple(dict.fromkeys(out))


def _with_contents(paths: set[str]) -> frozenset[str]:
    """A declared directory (a compiler's own, a `pkgconfig` dir) counts as all it holds."""
    out = set(paths)
    areas = [*INCLUDE_AREAS, *library_areas()]
    for p in paths:
        area = next((a for a in areas if p.startswith(a + "/")), None)
        if area is None or not os.path.isdir(p) or os.path.islink(p):
            continue
        if area in INCLUDE_AREAS:
            children, _links = _tree(area)
            out.update(k for d, kids in children.items() if d == p or d.startswith(p + "/")
                       for k in kids)
    return frozenset(out)


def describe(areas: Sequence[str] | None = None) -> str:
    """One line for logs: what the jail hides."""
    where = ", ".join([*INCLUDE_AREAS, *(areas if areas is not None else library_areas())])
    return f"build jail: host development files hidden in {where}, but for declared ones"

"""Host artifacts: software from the host system captured as symlinks.

A host artifact is trusted software we did not build (the system gcc, a site
MPI, the basic POSIX tools). Its spec records, per program, the real file it
resolves to, that file's sha256 and its version output, so upgrading the host
changes the artifact id and everything built with it gets rebuilt.

Version managers (pyenv, rbenv, asdf, ...) put *shims* on PATH: tiny scripts
that decide at run time which real program to exec. Capturing a shim would
hash a file that never changes while the program behind it does, so shims are
resolved through their manager (`pyenv which python3`) or refused.

`hdenv build` re-captures host packages on every run to notice upgrades, so
(sha256, version output) per real path is cached in `<store>/cache/host.json`,
keyed by the file's stat; a warm capture runs no subprocess at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hostpkgs
from ..errors import BuildError, StoreError, UserError
from ..store import fdtree, storedirs
from ..store.artifacts import artifact_id, install_artifact
from ..store.elf import ET_DYN, ElfError, read_elf
from ..store.hashing import sha256_file
from ..store.layout import Store
from . import hostlibs, toolchain

BASIC_TOOLS_NAME = "posix-tools"

# What autotools `./configure && make && make install`, libtool and plain
# Makefiles (Lua's) call, modelled on Nix's stdenv. No compiler, assembler,
# linker or binutils (cc, gcc, cpp, as, ld, ar, nm, strip): a build only gets
# those from a declared host or built artifact, so an undeclared compiler can
# never leak into a build. Interpreters (perl, python) and macro processors
# (m4) are left out for the same reason: a package that needs one declares it.
#
# The list is fixed and every tool in it is required: nothing else from the
# host joins it, so installing or removing an unrelated program (m4, file,
# perl) never changes `posix-tools`, and with it every id.
REQUIRED_TOOLS: tuple[str, ...] = (
    "sh", "bash", "make", "sed", "grep", "awk", "tar", "gzip", "gunzip", "zcat",
    "bzip2", "bunzip2", "bzcat", "xz", "unxz", "xzcat", "patch", "diff", "cmp",
    "cat", "cp", "mv", "rm", "mkdir", "ln", "chmod", "ls", "tr", "sort", "expr",
    "install", "touch", "find", "xargs", "uniq", "cut", "head", "tail", "wc", "test", "[",
    "dirname", "basename", "env", "uname", "true", "false", "date", "printf", "echo",
    "sleep", "rmdir", "mktemp", "tee", "od", "pwd", "readlink", "realpath", "join", "comm",
    "paste", "tac", "seq", "stat", "id", "whoami", "hostname", "getconf", "nproc", "du",
    "dd", "md5sum", "sha256sum", "cksum", "split", "chown", "chgrp", "yes", "timeout", "nice",
)
BASIC_TOOLS: list[str] = list(REQUIRED_TOOLS)

# Version managers whose shims we know how to ask "which real program?".
SHIM_MANAGERS: tuple[str, ...] = (
    "pyenv", "rbenv", "nodenv", "goenv", "jenv", "plenv", "asdf", "mise", "rtx",
)

VERSION_FLAGS: tuple[str, ...] = ("--version", "-V", "-version")
VERSION_TIMEOUT = 5.0
VERSION_LINES = 4
VERSION_LINE_CHARS = 200
SHIM_SNIFF_BYTES = 4096
# A cache entry whose file changed less than this before we hashed it may have
# been rewritten again within the same timestamp tick (git's "racy clean"
# problem); its content is re-hashed, though its version output is kept when
# the content turns out unchanged.
RACY_NS = 2_000_000_000
CACHE_FORMAT = 1
CACHE_LIMIT = 64 * 1024 * 1024  # the most cache/host.json may hold: more is not read
COLD_WORKERS = 4

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_VERSION_RE = re.compile(r"\d+(?:\.\d+)+")
_VERSION_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_FAILED_RE = re.compile(r"\[(?:exit -?\d+|timed out)\]$")


# -- resolving programs ------------------------------------------------------

def _search_path(search_path: str | None) -> str:
    return os.environ.get("PATH", os.defpath) if search_path is None else search_path


# dir -> (stat key, names in it): listing a PATH directory once is much cheaper
# than probing every tool in every directory, and `hdenv build` looks up the
# same ~80 names on every run.
_DIR_NAMES: dict[str, tuple[tuple[int, int, int], frozenset[str]]] = {}


def _dir_names(d: str) -> frozenset[str] | None:
    """Names in directory `d` (None if unreadable), cached while it is unchanged."""
    try:
        st = os.stat(d)
    except OSError:
        return None
    key = (st.st_dev, st.st_ino, st.st_mtime_ns)
    cached = _DIR_NAMES.get(d)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        names = frozenset(os.listdir(d))
    except OSError:
        return None
    if time.time_ns() - st.st_mtime_ns > RACY_NS:  # else it may change within one tick
        _DIR_NAMES[d] = (key, names)
    return names


def _path_dirs(search_path: str) -> list[tuple[str, frozenset[str] | None]]:
    """The PATH directories with their listings, looked at once per lookup batch.

    Empty entries (meaning "the current directory" to a shell) are skipped:
    what gets captured must not depend on where hdenv was started.
    """
    return [(d, _dir_names(d)) for d in search_path.split(os.pathsep) if d]


def _which_in(name: str, dirs: list[tuple[str, frozenset[str] | None]]) -> str | None:
    for d, names in dirs:
        if names is not None and name not in names:
            continue
        p = os.path.join(d, name)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.stat(p).st_mode) and os.access(p, os.X_OK):
                return p
    return None


def _which(name: str, search_path: str) -> str | None:
    """First executable `name` on `search_path`."""
    return _which_in(name, _path_dirs(search_path))


def _link_name(name_or_path: str) -> str:
    """The name the program is linked as in `bin/` (and called as)."""
    return os.path.basename(name_or_path) if "/" in name_or_path else name_or_path


def _find(name_or_path: str, dirs: list[tuple[str, frozenset[str] | None]]) -> str:
    """The path the user means, before following symlinks."""
    if not name_or_path or name_or_path.endswith("/"):
        raise UserError(f"not a program name or path: {name_or_path!r}")
    if "/" in name_or_path:
        if not os.path.isabs(name_or_path):
            raise UserError(
                f"host program {name_or_path!r}: give a bare name (looked up on PATH) "
                "or an absolute path"
            )
        return name_or_path
    found = _which_in(name_or_path, dirs)
    if found is None:
        raise UserError(f"host program {name_or_path!r} not found on PATH")
    return found


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![a-z0-9_]){re.escape(word)}(?![a-z0-9_])", text) is not None


def _execs_manager(body: str, manager: str) -> bool:
    """Whether a script body hands over to `MANAGER exec` as shims do.

    Looking for the hand-over rather than any mention keeps real programs
    installed under ~/.pyenv/versions (pip, whose `#!` names a pyenv python)
    from counting as shims.
    """
    return re.search(rf"(?<![a-z0-9_]){re.escape(manager)}[\"']?\s+exec\b", body) is not None


def _shim_manager(found: str, real: str, known_plain: bool = False) -> str | None:
    """Which version manager `found` is a shim of ('' if unknown), None if not a shim.

    A shim is a file under a `shims` directory, a `#!` script whose body runs
    `MANAGER exec` or mentions shims, or (mise, rtx) a link to the manager
    itself. `known_plain` says the content was checked before (it is in the
    cache), which saves reading every captured file on every build.
    """
    base = os.path.basename(real)
    if base in SHIM_MANAGERS and os.path.basename(found) != base:
        return base
    in_shims_dir = "/shims/" in found or "/shims/" in real
    text = None if known_plain else _sniff_script(real)
    body = text.lower().partition("\n")[2] if text is not None else ""
    execs = [m for m in SHIM_MANAGERS if m in body and _execs_manager(body, m)]
    if not (in_shims_dir or execs or _mentions(body, "shims")):
        return None
    if execs:
        return execs[0]
    where = body + " " + (found + " " + real).lower()
    return next((m for m in SHIM_MANAGERS if _mentions(where, m)), "")


def _sniff_script(path: str) -> str | None:
    """The start of `path` if it is a `#!` script, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(SHIM_SNIFF_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    return head.decode("utf-8", "replace")


def _manager_executable(manager: str, real: str, search_path: str) -> str | None:
    """Locate the manager the shim would call: itself, a path in its text, or PATH."""
    if os.path.basename(real) == manager:
        return real
    text = _sniff_script(real) or ""
    for m in re.finditer(rf"(/[^\s\"'`;]*/{re.escape(manager)})(?=[\s\"'`;]|$)", text):
        if os.access(m.group(1), os.X_OK) and os.path.isfile(m.group(1)):
            return m.group(1)
    for path in (search_path, os.environ.get("PATH", os.defpath)):
        found = _which(manager, path)
        if found is not None:
            return found
    return None


def _manager_env(search_path: str) -> dict[str, str]:
    """The user's environment, with `search_path` searched first.

    Managers are scripts that need the ordinary tools (bash, env) from the
    user's PATH even when programs are looked up on another `search_path`.
    """
    user_path = os.environ.get("PATH", os.defpath)
    path = user_path if search_path == user_path else search_path + os.pathsep + user_path
    return dict(os.environ, PATH=path)


def _resolve_shim(name: str, found: str, real: str, manager: str, search_path: str) -> str:
    """Ask the manager which real program the shim would run now, or refuse.

    The manager runs with the user's environment (PYENV_VERSION, the current
    directory's .python-version, ...) because that is what decides what the
    shim would have run for them.
    """
    what = f"{found} is a {manager or 'version-manager'} shim"
    hint = ("pass the real program's absolute path instead"
            f" (e.g. from `{manager or 'TOOL'} which {name}`)")
    if not manager:
        raise UserError(f"{what} of an unknown kind; {hint}")
    tool = _manager_executable(manager, real, search_path)
    if tool is None:
        raise UserError(f"{what} and {manager} was not found; {hint}")
    try:
        proc = subprocess.run(
            [tool, "which", name], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, errors="replace", env=_manager_env(search_path),
            timeout=VERSION_TIMEOUT * 2,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"{what} and `{manager} which {name}` failed ({e}); {hint}") from None
    lines = proc.stdout.strip().splitlines()
    target = lines[-1].strip() if lines else ""
    if proc.returncode != 0 or not os.path.isabs(target):
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(f"{what} and `{manager} which {name}` failed ({why}); {hint}")
    resolved = os.path.realpath(target)
    if not (os.path.isfile(resolved) and os.access(resolved, os.X_OK)):
        raise UserError(f"{what} resolving to {target}, which is not an executable file")
    if _shim_manager(target, resolved) is not None:
        raise UserError(f"{what} resolving to another shim ({target}); {hint}")
    return resolved


Known = Callable[[str, os.stat_result], bool]
"""known(real, st): whether the file was captured before with this stat."""


def _resolve(name_or_path: str, search_path: str, dirs: list[tuple[str, frozenset[str] | None]],
             known: Known | None = None) -> tuple[str, str, os.stat_result]:
    """(link name, real path, its stat) for one requested program."""
    found = _find(name_or_path, dirs)
    real = os.path.realpath(found)
    try:
        st = os.stat(real)
    except OSError:
        raise UserError(f"host program {found} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"host program {found} is not a file")
    if not os.access(real, os.X_OK):
        raise UserError(f"host program {found} is not executable")
    name = _link_name(name_or_path)
    manager = _shim_manager(found, real, known is not None and known(real, st))
    if manager is not None:
        real = _resolve_shim(name, found, real, manager, search_path)
        st = os.stat(real)
    return name, real, st


def resolve_program(name_or_path: str, search_path: str | None = None) -> Path:
    """The real file a program name or absolute path stands for, shims resolved.

    Raises UserError when it is missing, not executable, or a shim that cannot
    be resolved to the program behind it.
    """
    path = _search_path(search_path)
    return Path(_resolve(name_or_path, path, _path_dirs(path))[1])


# -- version output ----------------------------------------------------------

def _run_version(name: str, real: str, flag: str | list[str]) -> tuple[str, int | None]:
    """(first lines of stdout+stderr, exit status or None on timeout).

    argv[0] is the link name so multi-call binaries (bunzip2 -> bzip2, busybox)
    answer as what they are captured as; cwd, locale and environment are fixed
    so the output depends on the program only.
    """
    env = {"LC_ALL": "C", "LANG": "C", "PATH": os.path.dirname(real) + os.pathsep + os.defpath}
    try:
        proc = subprocess.Popen(
            [name, *([flag] if isinstance(flag, str) else flag)], executable=real,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True,
        )
    except OSError as e:
        return f"cannot run: {e.strerror}", 127
    try:
        out, _ = proc.communicate(timeout=VERSION_TIMEOUT)
        status: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = None
    lines = out.decode("utf-8", "replace").splitlines()
    text = "\n".join(line.rstrip()[:VERSION_LINE_CHARS] for line in lines[:VERSION_LINES])
    return text.strip(), status


def version_output(name: str, real: str) -> str:
    """What `NAME --version` (or -V, -version) says, with a failing exit status folded in.

    The first flag that exits 0 with some output wins; if none does, the
    `--version` attempt is recorded with its status, which still identifies
    the program (e.g. dash has no version flag at all).
    """
    first: tuple[str, int | None] | None = None
    for flag in VERSION_FLAGS:
        text, status = _run_version(name, real, flag)
        if first is None:
            first = (text, status)
        if status == 0 and text:
            return text
        if status is None:
            break
    assert first is not None
    text, status = first
    suffix = "[timed out]" if status is None else ("" if status == 0 else f"[exit {status}]")
    return "\n".join(s for s in (text, suffix) if s)


# -- the cache ---------------------------------------------------------------

def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@dataclass
class _Probe:
    """What we know about one real file: its content hash and version outputs by name."""

    key: list[int]
    sha256: str
    checked_ns: int
    versions: dict[str, str]


class HostCache:
    """(sha256, version output) per real path, valid while the file's stat is unchanged.

    A missing or corrupt cache file is an empty cache: it only saves time.
    """

    def __init__(self, store: Store):
        self.store = store
        self.path = cache_path(store)
        self.entries: dict[str, _Probe] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        # through the store's descriptors, and only a regular file of this user's: in a
        # group store a member can plant a link at cache/ or the file, a FIFO, or a file
        # of theirs whose hashes and versions the victim's host artifacts would record
        raw = self.store.read_own_file(("cache",), self.path.name, CACHE_LIMIT)
        if raw is None:
            return
        try:
            data = json.loads(raw)
            if data.get("format") != CACHE_FORMAT:
                return
            for path, e in data["entries"].items():
                self.entries[path] = _Probe(
                    [int(x) for x in e["key"]], str(e["sha256"]), int(e["checked_ns"]),
                    {str(k): str(v) for k, v in e["versions"].items()},
                )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            self.entries = {}

    def save(self) -> None:
        if not self.dirty or not self.store.root.is_dir():
            return  # a memo of an existing store; a dry run never creates a store for it
        entries = {
            p: {"key": e.key, "sha256": e.sha256, "checked_ns": e.checked_ns,
                "versions": e.versions}
            for p, e in self.entries.items()
            if os.path.exists(p)
        }
        data = json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=2,
                          sort_keys=True) + "\n"
        with contextlib.suppress(OSError, StoreError):  # only a cache; never through a link
            self.store.write_file(("cache",), self.path.name, data.encode())
        self.dirty = False

    def knows(self, real: str, st: os.stat_result) -> bool:
        """Whether `real` was probed before and is provably unchanged since (stat `st`)."""
        e = self.entries.get(real)
        return (
            e is not None
            and e.key == _stat_key(st)
            and e.checked_ns - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS
        )

    def lookup(self, real: str, name: str, st: os.stat_result) -> tuple[str, str] | None:
        """Cached (sha256, version) if the file is provably unchanged, else None."""
        e = self.entries.get(real)
        if e is None or name not in e.versions or not self.knows(real, st):
            return None
        return e.sha256, e.versions[name]

    def probe(self, real: str, name: str) -> tuple[str, str]:
        """Hash and query the file (reusing the version output if its content is unchanged)."""
        checked = time.time_ns()
        st = os.stat(real)
        digest = sha256_file(real)
        old = self.entries.get(real)
        versions = dict(old.versions) if old is not None and old.sha256 == digest else {}
        if name not in versions:
            versions[name] = version_output(name, real)
        self.entries[real] = _Probe(_stat_key(st), digest, checked, versions)
        self.dirty = True
        return digest, versions[name]


    def ask(self, real: str, name: str, args: list[str]) -> str:
        """The first line `NAME ARGS` prints (a compiler's `-print-prog-name=as`), cached
        like version output; '' when it fails."""
        key = "\0".join([name, *args])
        st = os.stat(real)
        e = self.entries.get(real)
        if e is None or not self.knows(real, st):
            self.probe(real, name)
            e = self.entries[real]
        if key not in e.versions:
            text, status = _run_version(name, real, args)
            e.versions[key] = text.splitlines()[0].strip() if status == 0 and text else ""
            self.dirty = True
        return e.versions[key]

    def digest(self, real: str) -> str:
        """The sha256 of a file that is never run (a library), cached by its stat."""
        st = os.stat(real)
        e = self.entries.get(real)
        if e is not None and self.knows(real, st):
            return e.sha256
        checked = time.time_ns()
        digest = sha256_file(real)
        keep = e.versions if e is not None and e.sha256 == digest else {}
        self.entries[real] = _Probe(_stat_key(st), digest, checked, dict(keep))
        self.dirty = True
        return digest


def cache_path(store: Store) -> Path:
    return store.root / "cache" / "host.json"


# -- specs and artifacts -----------------------------------------------------

def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise UserError(f"bad host package name {name!r} (letters, digits, '.', '_', '+', '-')")


Resolved = tuple[str, str, os.stat_result]  # link name, real path, its stat


def _resolve_all(programs: Sequence[str], search_path: str, cache: HostCache,
                 libraries: Sequence[str] = (), packages: Sequence[str] = ()) -> list[Resolved]:
    if not programs and not libraries and not packages:
        raise UserError("a host package needs at least one program, library or package")
    dirs = _path_dirs(search_path)
    out: list[Resolved] = []
    seen: dict[str, str] = {}
    for requested in programs:
        resolved = _resolve(requested, search_path, dirs, cache.knows)
        name = resolved[0]
        if name in seen:
            raise UserError(f"host program name {name!r} given twice ({seen[name]}, {requested})")
        seen[name] = requested
        out.append(resolved)
    return out


def _probe_all(cache: HostCache, resolved: list[Resolved]) -> dict[str, dict[str, str]]:
    """name -> {path, sha256, version}; cache misses are probed in parallel."""
    results: dict[str, tuple[str, str]] = {}
    by_path: dict[str, list[str]] = {}
    for name, real, st in resolved:
        hit = cache.lookup(real, name, st)
        if hit is None:
            by_path.setdefault(real, []).append(name)
        else:
            results[name] = hit
    if by_path:
        # Each worker owns one path, so two names of one file (bzip2, bunzip2)
        # are probed one after the other and share the content hash.
        def probe_path(real: str) -> list[tuple[str, tuple[str, str]]]:
            return [(n, cache.probe(real, n)) for n in by_path[real]]

        with ThreadPoolExecutor(max_workers=min(COLD_WORKERS, len(by_path))) as pool:
            for done in pool.map(probe_path, list(by_path)):
                results.update(done)
        cache.save()
    return {
        name: {"path": real, "sha256": results[name][0], "version": results[name][1]}
        for name, real, _st in resolved
    }


def version_of(text: str) -> str:
    """The version number in a program's version output (`host` when there is none)."""
    m = _VERSION_RE.search(text)
    return m.group(0) if m else "host"


@dataclass(frozen=True)
class HostRequest:
    """What a stack file's `[host.NAME]` (or `hdenv host capture`) asks to capture."""

    name: str
    programs: tuple[str, ...]
    libraries: tuple[str, ...] = ()
    family: str | None = None
    version: str | None = None  # `version = "4.1.4"`
    version_from: str | None = None  # `version-from = "mpirun"`; default: the first program
    env: tuple[tuple[str, str], ...] = ()
    pkgconfig: tuple[str, ...] = ()
    identity: str = "version"  # "content": byte hashes enter the id too
    packages: tuple[str, ...] = ()  # `packages = ["libyaml-dev"]`: every file of each


_LIBRARY_RE = re.compile(r"^lib[^/]*\.so(\.[0-9][\w.]*)?$")


def looks_like_library(arg: str) -> bool:
    """Whether a `host capture` argument names a shared library rather than a program."""
    return _LIBRARY_RE.match(os.path.basename(arg)) is not None


def _expand(cache: HostCache, resolved: list[Resolved], search_path: str,
            dirs: list[tuple[str, frozenset[str] | None]]) -> tuple[list[Resolved],
                                                                     list[tuple[str, str]]]:
    """The programs and runtime libraries the captured compilers bring (see toolchain)."""

    def find(name_or_path: str) -> tuple[str, str] | None:
        try:
            got = _resolve(name_or_path, search_path, dirs, cache.knows)
        except (UserError, OSError):
            return None
        return got[0], got[1]

    brought = toolchain.brought_by([(n, r) for n, r, _ in resolved], cache.ask, find)
    extra: list[Resolved] = []
    for name, target in brought.programs:
        _, real, st = _resolve(target, search_path, dirs, cache.knows)
        extra.append((name, real, st))
    return extra, brought.libraries


def describe(store: Store, request: HostRequest, *,
             search_path: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, metadata) of a capture of `request` as it would be now; nothing is created.

    The spec (hence the id) holds names, resolved paths and reported versions;
    the metadata the sha256 of every captured file and the shared libraries
    the programs load, for `verify` and `report` to notice drift. With
    `identity = "content"` the hashes enter the spec too.
    """
    _check_name(request.name)
    path = _search_path(search_path)
    dirs = _path_dirs(path)
    cache = HostCache(store)
    pc_dirs, pc_modules = hostlibs.split_pkgconfig(request.pkgconfig)
    by_package = _module_packages(request, pc_modules)
    names = [*request.packages, *(n for n in by_package if n not in request.packages)]
    packages = hostpkgs.installed(names, f"host {request.name}") if names else []
    resolved = _resolve_all(request.programs, path, cache, request.libraries, names)
    extra, runtime_libs = _expand(cache, resolved, path, dirs)
    probed = _probe_all(cache, resolved + extra)
    libraries = hostlibs.resolve([*request.libraries, *_package_libraries(request, packages)],
                                 runtime_libs, cache.digest)
    cache.save()
    content = request.identity == "content"
    files = {i["path"]: i["sha256"] for i in [*probed.values(), *libraries.values()]}
    programs = {n: {k: v for k, v in i.items() if k != "sha256" or content}
                for n, i in probed.items()}
    libs = {n: {k: v for k, v in i.items() if k != "sha256" or content}
            for n, i in libraries.items()}
    spec: dict[str, Any] = {
        "kind": "host",
        "name": request.name,
        "version": _spec_version(request, probed, libraries, resolved, packages),
        "programs": programs,
        "family": request.family,
    }
    if libs:
        spec["libraries"] = libs
    if request.env:
        spec["env"] = dict(sorted(request.env))
    if pc_dirs:
        spec["pkgconfig"] = hostlibs.pkgconfig_dirs(pc_dirs)
    if pc_modules:
        spec["pkgconfig_modules"] = pc_modules
    if packages:  # names, versions and files enter the id: an upgrade makes a new artifact
        spec["packages"] = {p.name: {"version": p.version, "arch": p.arch, "manager": p.manager,
                                     "files": p.files} for p in packages}
        for name, modules in by_package.items():
            if name not in request.packages:  # there for its .pc files: only those named
                spec["packages"][name]["pkgconfig_only"] = modules
    meta = {"host_files": files,
            "loads": hostlibs.loads({n: i["path"] for n, i in probed.items()})}
    return spec, meta


def _module_packages(request: HostRequest, modules: list[str]) -> dict[str, list[str]]:
    """`pkgconfig = ["yaml-0.1"]`: the packages owning those modules' `.pc` files -> the
    modules each owns. The package brings the headers and libraries the `.pc` file names;
    its other `.pc` files stay out of the artifact (only the named modules are exposed)."""
    if not modules:
        return {}
    who = f"host {request.name}"
    files = hostlibs.find_pc_modules(modules, who)
    owned: dict[str, list[str]] = {}
    for package in hostpkgs.owners(list(files.values())):
        owned[package.name] = [m for m, f in files.items() if f in package.files]
    missing = [m for m in modules if not any(m in ms for ms in owned.values())]
    if missing:
        raise UserError(f"{who}: no installed package owns {files[missing[0]]} (pkg-config"
                        f" module {missing[0]!r}); pkgconfig modules need dpkg or rpm to tell"
                        " which package brings its headers and libraries")
    return owned


def _spec_version(request: HostRequest, probed: dict[str, dict[str, str]],
                  libraries: dict[str, dict[str, str]], resolved: list[Resolved],
                  packages: list[hostpkgs.HostPackage]) -> str:
    """`version`, else the version `version-from` (default: the first program) reports."""
    if request.version is not None:
        if not _VERSION_OK.match(request.version):
            raise UserError(f"host {request.name}: bad version {request.version!r}")
        return request.version
    source = request.version_from or (resolved[0][0] if resolved else None)
    if source is None and packages:  # packages (and maybe libraries): the first package's
        return _package_version(packages[0].version)
    if source is None:  # libraries only: the first one's version
        first = next(iter(libraries.values()), {})
        return first.get("version") or "host"
    if source not in probed:
        raise UserError(f"host {request.name}: version-from names {source!r}, which is not "
                        f"one of its programs ({', '.join(sorted(probed))})")
    text = probed[source]["version"]
    return "host" if _FAILED_RE.search(text) else version_of(text)


def _package_version(version: str) -> str:
    """A distro version as an artifact version: `1:1.2.13.dfsg-1` -> `1.2.13.dfsg-1`."""
    plain = re.sub(r"[^A-Za-z0-9_.+-]", "_", version.partition(":")[2] or version)
    return plain if _VERSION_OK.match(plain) else "host"


def _package_libraries(request: HostRequest, packages: list[hostpkgs.HostPackage]) -> list[str]:
    """The shared libraries among the packages' files, by absolute path: declared, so the link
    audit counts them as this host artifact's (`libyaml.so` -> libyaml-0.so.2)."""
    named = {os.path.basename(lib) for lib in request.libraries}
    out: list[str] = []
    for package in packages:
        for path in package.files:
            base = os.path.basename(path)
            if _LIBRARY_RE.match(base) and base not in named and _is_shared_object(path):
                named.add(base)
                out.append(path)
    return out


def _is_shared_object(path: str) -> bool:
    try:
        info = read_elf(os.path.realpath(path))
    except (ElfError, OSError):
        return False
    return info is not None and info.type == ET_DYN


def host_spec(store: Store, name: str, programs: Sequence[str], *,
              family: str | None = None, search_path: str | None = None,
              **more: Any) -> dict[str, Any]:
    """The spec a capture of `programs` would have now (nothing is created).

    VERSION comes from `version`, else from `version_from`'s version output,
    else from the first program's, so list the main program first.
    """
    request = HostRequest(name, tuple(programs), family=family, **more)
    return describe(store, request, search_path=search_path)[0]


def package_layout(path: str) -> list[str]:
    """Where a package's file goes in the artifact, relative to it: the path without `/usr`
    (`/usr/include/yaml.h` -> `include/yaml.h`), and a library or `.pc` file in a multiarch
    directory also in `lib/` itself, where the build's LIBRARY_PATH and pkg-config look."""
    rel = path[len("/usr/"):] if path.startswith("/usr/") else path.lstrip("/")
    out = [rel]
    parts = rel.split("/")
    if len(parts) >= 3 and parts[0] == "lib" and "-linux-" in parts[1]:
        out.append("/".join(["lib", *parts[2:]]))
    return out


def _pc_text(path: str, prefix: Path) -> str:
    """A package's `.pc` file pointing into the artifact: every variable whose value starts
    with `/usr` (`prefix=/usr`, a literal `libdir=/usr/lib/...`) starts with the artifact."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        var, eq, value = line.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", var.strip()) and (
                value.strip() == "/usr" or value.strip().startswith("/usr/")):
            line = f"{var}={prefix}{value.strip()[len('/usr'):]}"
        out.append(line)
    return "\n".join(out) + "\n"


class _Dirs:
    """Directories of an artifact being populated, made and opened through descriptors from
    the artifact directory's own (`prefix_fd`), each component without following a link.

    By path, a host artifact's files went wherever its directories' names led: in a group
    store the artifact directory lets the group search it while it is built, and a
    directory made with the group's umask (`include/`, `lib/`) would let a member plant a
    link in it for the next `mkdir -p` and write to follow. Directories are made 0755
    here (never the group's to write) and entered by descriptor.
    """

    def __init__(self, prefix: Path, prefix_fd: int):
        self.prefix = prefix
        self.fds: dict[tuple[str, ...], int] = {(): prefix_fd}

    def fd(self, parts: tuple[str, ...]) -> int | None:
        """The directory `parts` below the artifact (made if missing), or None where a link
        or a file of an earlier entry is in the way (the first one to get there has it)."""
        if parts in self.fds:
            return self.fds[parts]
        parent = self.fd(parts[:-1])
        if parent is None:
            return None
        try:
            fd = storedirs.open_below(parent, self.prefix.joinpath(*parts[:-1]), parts[-1:],
                                      mode=0o755)
        except StoreError:
            return None
        self.fds[parts] = fd
        return fd

    def close(self) -> None:
        for parts, fd in self.fds.items():
            if parts:
                os.close(fd)


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _place(dirs: _Dirs, rel: str, make: Callable[[int, str], None]) -> None:
    """`make(dir_fd, name)` for the entry `rel` of the artifact, unless something is there."""
    *parents, name = rel.split("/")
    fd = dirs.fd(tuple(parents))
    if fd is not None and not _exists_at(fd, name):
        make(fd, name)


def _link_to(target: str) -> Callable[[int, str], None]:
    return lambda fd, name: os.symlink(target, name, dir_fd=fd)


def _file_of(text: str) -> Callable[[int, str], None]:
    data = text.encode("utf-8", "surrogateescape")
    return lambda fd, name: fdtree.write_at(fd, name, data, 0o644)


def _populate_packages(spec: dict[str, Any], prefix: Path, dirs: _Dirs) -> None:
    for info in spec.get("packages", {}).values():
        only = {f"{m}.pc" for m in info.get("pkgconfig_only", [])}
        for path in info["files"]:
            if only and path.endswith(".pc") and os.path.basename(path) not in only:
                continue
            for rel in package_layout(path):  # the first package (or spelling) has it
                if path.endswith(".pc"):
                    _place(dirs, rel, _file_of(_pc_text(path, prefix)))
                else:
                    _place(dirs, rel, _link_to(path))


def _populate_links(spec: dict[str, Any]) -> Any:
    def populate(prefix: Path, _lock_fd: int, prefix_fd: int) -> None:
        dirs = _Dirs(prefix, prefix_fd)
        try:
            _populate_packages(spec, prefix, dirs)
            dirs.fd(("bin",))
            for prog, info in sorted(spec["programs"].items()):  # a package's may be there
                _place(dirs, f"bin/{prog}", _link_to(info["path"]))
            libs = spec.get("libraries", {})
            if libs:
                dirs.fd(("lib",))
            for name, info in sorted(libs.items()):
                for link in dict.fromkeys([name, info.get("soname") or name]):
                    _place(dirs, f"lib/{link}", _link_to(info["path"]))
        finally:
            dirs.close()
    return populate


def install_host_spec(store: Store, spec: dict[str, Any],
                      meta: dict[str, Any] | None = None) -> str:
    """Create the artifact of a host spec (if missing) and return its id."""
    aid = artifact_id(spec)
    if store.has_artifact(aid):
        return aid
    aid, _ = install_artifact(store, spec, _populate_links(spec), runtime_deps=[],
                              extra_meta=meta, spawns=False)  # links only, made here
    return aid


def capture_request(store: Store, request: HostRequest, *, search_path: str | None = None) -> str:
    """Capture what `request` describes as a host artifact and return its id; idempotent."""
    spec, meta = describe(store, request, search_path=search_path)
    return install_host_spec(store, spec, meta)


def capture(store: Store, name: str, programs: Sequence[str], *,
            family: str | None = None, search_path: str | None = None, **more: Any) -> str:
    """Capture host programs as artifact NAME and return its id; idempotent."""
    request = HostRequest(name, tuple(programs), family=family, **more)
    return capture_request(store, request, search_path=search_path)


SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
"""Where builds' basic tools come from: the system's directories, never the user's
PATH, which may hold a loaded hdenv profile or a version manager's shims."""


def basic_tool_programs(search_path: str = SYSTEM_PATH) -> list[str]:
    """Absolute paths of the basic tools on the system PATH; BuildError if one is missing.

    Paths rather than names, so the capture does not search PATH again.
    """
    dirs = _path_dirs(_search_path(search_path))
    found = {t: _which_in(t, dirs) for t in BASIC_TOOLS}
    missing = [t for t in REQUIRED_TOOLS if found[t] is None]
    if missing:
        raise BuildError(
            f"required host tools not found on PATH: {' '.join(missing)} "
            "(builds need them; install them or fix PATH)"
        )
    return [p for p in found.values() if p is not None]


def basic_tools_request(search_path: str = SYSTEM_PATH, identity: str = "version") -> HostRequest:
    return HostRequest(BASIC_TOOLS_NAME, tuple(basic_tool_programs(search_path)),
                       identity=identity)


def basic_tools_spec(store: Store, search_path: str = SYSTEM_PATH,
                     identity: str = "version") -> dict[str, Any]:
    """The `posix-tools` spec without creating it (for planning and --dry-run)."""
    return describe(store, basic_tools_request(search_path, identity),
                    search_path=search_path)[0]


def capture_basic_tools(store: Store, search_path: str = SYSTEM_PATH,
                        identity: str = "version") -> str:
    """Capture the basic POSIX build tools as the `posix-tools` artifact; returns its id."""
    return capture_request(store, basic_tools_request(search_path, identity),
                           search_path=search_path)


"""After a build: complete the run paths, then check every library every ELF file loads.

Run paths are completed after install rather than through compiler wrappers:
a wrapper only sees the compilers it wraps, while libtool, CMake, Python's
sysconfig and MPI wrappers call compilers and linkers by absolute path or by
target-prefixed names, and Fortran or Go toolchains link on their own. The
installed files are the ground truth, whatever produced them, so hdenv reads
each one's `DT_NEEDED` and run path and resolves each needed library the way
the dynamic loader will:

- found in the artifact itself or a runtime dependency: fine;
- provided by the artifact or a runtime dependency, but the loader would take
  it from the system's default directories (libtool passed its own `-rpath`,
  so `LD_RUN_PATH` was ignored; CMake dropped its build run path): the
  provider's directory is *appended* to the file's run path (patchelf). hdenv
  completes run paths; it never overrides an entry the build chose, but drops
  entries into the artifact or a dependency that do not exist (`$PREFIX/lib64`
  from `LD_RUN_PATH` when the build made no `lib64`);
- provided by a dependency but found through an entry the build itself put
  in the run path that points at the system (the build linked the system's
  copy): the build fails, naming the file, the library and both places;
- provided only by a build-only dependency: the build fails (the library is
  needed at run time, so the dependency belongs in `deps`); a host library
  counts as build-only too when its host artifact is only in `build-deps`,
  except a compiler's runtime libraries (libstdc++, libgfortran, ...), which
  come with the compiler a package is built with;
- taken from the host system and provided by no declared host artifact: an
  *undeclared system library*, listed in the build output and `hdenv show`,
  an error with `strict-links = true`. libc and the dynamic loader are
  expected and never listed; a declared compiler's runtime libraries
  (libstdc++, libgfortran, ...) are declared by its host artifact.

What this cannot see: a library loaded with `dlopen`, and a pure-Python
fallback taken because a C extension was not built at all.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HdenvError
from ..store import fdtree
from ..store.artifacts import runtime_closure
from ..store.elf import (
    ET_DYN,
    ElfError,
    ElfInfo,
    LoaderPath,
    PatchelfMissing,
    read_elf,
    read_elf_fd,
    set_runpath,
    set_runpath_fd,
    walk_elf,
    walk_elf_at,
)
from ..store.layout import Store
from .toolchain import driver_language

# glibc's own libraries and the dynamic loaders: always taken from the host.
LIBC = frozenset({
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "libanl.so.1", "libnsl.so.1", "libBrokenLocale.so.1", "libmvec.so.1",
    "libthread_db.so.1", "libc_malloc_debug.so.0", "libmemusage.so", "libpcprofile.so",
    "linux-vdso.so.1", "linux-gate.so.1",
})
_LIBC_RE = re.compile(r"^(ld-linux[\w.-]*\.so\.\d+|ld64\.so\.\d+|ld\.so\.\d+|libnss_\w+\.so\.\d+)$")


def is_libc(name: str) -> bool:
    return name in LIBC or _LIBC_RE.match(name) is not None


@dataclass
class Provider:
    """An artifact (or the one being built) and the shared libraries it offers by file name."""

    ident: str
    root: Path
    role: str  # "own", "runtime", "build-only" or "host"
    libs: dict[str, str]  # file name -> absolute path

    def owns(self, path: str) -> bool:
        return path == str(self.root) or path.startswith(str(self.root) + os.sep)


@dataclass
class AuditResult:
    errors: list[str] = field(default_factory=list)
    undeclared: list[dict[str, str]] = field(default_factory=list)  # file, library, path
    missing: list[dict[str, str]] = field(default_factory=list)  # file, library
    completed: list[str] = field(default_factory=list)  # files whose run path was completed
    libraries: dict[str, str] = field(default_factory=dict)  # what the artifact offers
    files: int = 0  # ELF files audited
    loads: dict[str, str] = field(default_factory=dict)  # library -> who provides it

    def summary(self) -> str:
        """One line saying what the audit looked at and where each library came from.

        A passing audit is otherwise silent, so without this a reader of
        `build -v` cannot tell "checked and fine" from "nothing to check".
        """
        by: dict[str, list[str]] = {}
        for lib, who in sorted(self.loads.items()):
            by.setdefault(who, []).append(lib)
        parts = [f"{who}: {', '.join(libs)}" for who, libs in sorted(by.items())]
        done = f"; run path completed in {len(self.completed)}" if self.completed else ""
        problems = len(self.errors) + len(self.undeclared) + len(self.missing)
        verdict = "passed" if problems == 0 else f"{problems} problem(s)"
        return (f"link audit {verdict}: {self.files} ELF file(s)"
                + (f", {len(self.loads)} librar{'y' if len(self.loads) == 1 else 'ies'}"
                   f" ({'; '.join(parts)})" if parts else ", no shared libraries loaded")
                + done)

    def meta(self) -> dict[str, Any]:
        """What goes into artifact.json (`hdenv show` and dependent builds read it)."""
        return {"libraries": self.libraries,
                "links": {"undeclared": self.undeclared, "missing": self.missing,
                          "completed": self.completed}}


def shared_libraries(root: Path, root_fd: int | None = None) -> dict[str, str]:
    """File name -> absolute path of every shared object under `root` (links included).

    When two directories hold the same name, the shallower one wins (`lib/`
    over a plugin directory), as that is where a run path would point. With
    `root_fd` (`root` open), the tree is read through descriptors (`_shared_at`).
    """
    if root_fd is not None:
        return _shared_at(root, root_fd)
    found: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in fdtree.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".hdenv"]
        depth = dirpath.count(os.sep)
        for name in filenames:
            if ".so" not in name:
                continue
            p = os.path.join(dirpath, name)
            real = os.path.realpath(p)
            try:
                info = read_elf(real) if os.path.isfile(real) else None
            except Exception:  # noqa: BLE001 - a broken file is simply not a library
                info = None
            if info is None or info.type != ET_DYN:
                continue
            if name not in found or (depth, p) < found[name]:
                found[name] = (depth, p)
    return {name: p for name, (_, p) in sorted(found.items())}


def _shared_at(root: Path, root_fd: int) -> dict[str, str]:
    """`shared_libraries` of the directory open as `root_fd`: directories entered through
    descriptors, a file opened without following a link, a link followed from the
    descriptor of the directory it is in (`libz.so -> libz.so.1` stays in the tree)."""
    found: dict[str, tuple[int, str]] = {}
    for dir_fd, name, rel, st in fdtree.walk_at(root_fd, add=0,
                                                descend=lambda rel, _st: rel != ".hdenv"):
        if ".so" not in name or rel == ".hdenv":
            continue
        if stat.S_ISREG(st.st_mode):
            fd = fdtree.open_file_at(dir_fd, name)
        elif stat.S_ISLNK(st.st_mode):
            fd = _open_through_link(dir_fd, name)
        else:
            continue
        if fd is None:
            continue
        p = str(root / rel)
        try:
            info = read_elf_fd(fd, p)
        except ElfError:  # a broken file is simply not a library
            info = None
        finally:
            os.close(fd)
        if info is None or info.type != ET_DYN:
            continue
        depth = rel.count("/")
        if name not in found or (depth, p) < found[name]:
            found[name] = (depth, p)
    return {name: p for name, (_, p) in sorted(found.items())}


def _open_through_link(dir_fd: int, name: str) -> int | None:
    """The regular file the link `name` in the open directory leads to, opened without
    blocking (a FIFO cannot hang the audit), or None."""
    try:
        fd = os.open(f"{fdtree.proc_path(dir_fd)}/{name}",
                     os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    return fdtree.regular_or_close(fd)


def providers(store: Store, deps: list[str], build_deps: list[str]) -> list[Provider]:
    """Runtime dependencies (direct ones first), then build-only ones, as providers.

    Host artifacts provide the libraries linked in their `lib/`: as runtime
    providers when they are runtime dependencies, or when they are compilers
    (a compiler's runtime libraries, libstdc++ or libgfortran, come with the
    compiler a package builds with); a host library that is only a build
    dependency is build-only like any other, so linking it at run time fails
    the audit. Built artifacts provide the libraries their metadata lists
    (older artifacts are walked).
    """
    runtime = deps + [a for a in runtime_closure(store, deps) if a not in deps]
    build_only = [a for a in build_deps + runtime_closure(store, build_deps)
                  if a not in runtime]
    out: list[Provider] = []
    for aid, role in [(a, "runtime") for a in runtime] + [(a, "build-only") for a in build_only]:
        if any(p.ident == aid for p in out):
            continue
        root = store.artifact_dir(aid)
        meta = store.artifact_meta(aid)
        if meta.get("kind") == "host":
            libdir = root / "lib"
            names = sorted(os.listdir(libdir)) if libdir.is_dir() else []
            host_role = "host" if role == "runtime" or _is_compiler(store, aid) else role
            out.append(Provider(aid, root, host_role, {n: str(libdir / n) for n in names}))
            continue
        recorded = meta.get("libraries")
        libs = ({n: str(root / rel) for n, rel in recorded.items()}
                if isinstance(recorded, dict) else shared_libraries(root))
        out.append(Provider(aid, root, role, libs))
    return out


def _is_compiler(store: Store, aid: str) -> bool:
    """A host artifact of `family = "compiler"`, or one that captured a compiler driver."""
    try:
        spec = store.read_spec(aid.rsplit("/", 1)[1])
    except (OSError, ValueError, HdenvError):
        return False
    return spec.get("family") == "compiler" or \
        any(driver_language(name) for name in spec.get("programs", {}))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _dangling(entry: str, prefix: Path, providers: list[Provider]) -> bool:
    """A run-path entry into this artifact or a dependency that does not exist (`lib64`
    named by `LD_RUN_PATH` before anyone knew whether the build would make one)."""
    inside = entry == str(prefix) or entry.startswith(str(prefix) + os.sep) or \
        any(p.owns(entry) for p in providers)
    return inside and not os.path.isdir(entry)


def _is_transient(entry: str, transient: tuple[str, ...]) -> bool:
    return any(entry == t or entry.startswith(t + os.sep) for t in transient)


def audit(prefix: Path, providers: list[Provider], *, transient: tuple[str, ...],
          loader: LoaderPath | None = None, complete: bool = True,
          root_fd: int | None = None) -> AuditResult:
    """Complete run paths of the ELF files under `prefix`, then check what they load.

    `providers` are the dependencies (runtime first, in search order), build-only
    dependencies and declared host artifacts; the artifact itself is added
    here. Run-path entries under `transient` (the build directory) are dropped.

    With `root_fd` (`prefix` open: the directory a build was given), the artifact's
    files are listed, read and patched through descriptors from it, each opened
    without following a link, and only files of this user's are patched: in a group
    store a member can rename a directory above `prefix` and put a link to the
    builder's own files in its place, and patchelf by path would rewrite those. What
    the loader would find (`LoaderPath.find`) is still looked up by path: a swap can
    mislead the audit's verdict, never make it write.
    """
    loader = loader or LoaderPath()
    result = AuditResult()
    own = Provider("", prefix, "own", shared_libraries(prefix, root_fd))
    result.libraries = {n: os.path.relpath(p, prefix) for n, p in own.libs.items()}
    chain = [own] + [p for p in providers if p.role == "runtime"]
    hosts = [p for p in providers if p.role == "host"]
    build_only = [p for p in providers if p.role == "build-only"]
    elves = list(walk_elf(prefix) if root_fd is None else walk_elf_at(root_fd, prefix))
    result.files = len(elves)
    if complete:
        _complete(prefix, elves, chain + hosts, transient, loader, result, root_fd)
        elves = [_reread(e, prefix, root_fd) or e for e in elves]
    known = chain + hosts + build_only
    for info in elves:
        for lib in info.needed:
            if is_libc(lib):
                result.loads[lib] = "system"
            else:
                _check(prefix, info, lib, chain, hosts, build_only, known, loader, result)
    return result


def _reread(info: ElfInfo, prefix: Path, root_fd: int | None) -> ElfInfo | None:
    """`info`'s file read again (after patchelf), through descriptors with `root_fd`."""
    if root_fd is None:
        return read_elf(info.path)
    fd = fdtree.open_file_below(root_fd, os.path.relpath(info.path, prefix))
    if fd is None:
        return None
    try:
        return read_elf_fd(fd, info.path)
    except ElfError:
        return None
    finally:
        os.close(fd)


def _set_runpath(info: ElfInfo, entries: list[str], prefix: Path, root_fd: int | None) -> None:
    """Give `info`'s file the run path `entries`: by path, or with `root_fd` through a
    descriptor opened from it without following a link, if the file is this user's."""
    if root_fd is None:
        set_runpath(info.path, entries)
        return
    rel = os.path.relpath(info.path, prefix)
    fd = fdtree.open_file_below(root_fd, rel)
    if fd is None:
        raise OSError(f"{rel} is no longer a regular file of the artifact (replaced while it"
                      " was audited)")
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise OSError(f"{rel} is another user's file, not the build's: not patched")
        set_runpath_fd(fd, entries, shown=info.path)
    finally:
        os.close(fd)


def _who(provider: Provider) -> str:
    """How the summary names a provider: its NAME/VERSION, or `own` for the artifact itself."""
    if not provider.ident:
        return "own"
    name, _, rest = provider.ident.partition("/")
    return f"{name}/{rest.partition('/')[0]}" if rest else name


def _provider_for(lib: str, providers: list[Provider]) -> tuple[Provider, str] | None:
    for p in providers:
        if lib in p.libs:
            return p, p.libs[lib]
    return None


def _complete(prefix: Path, elves: list[ElfInfo], providers: list[Provider],
              transient: tuple[str, ...], loader: LoaderPath, result: AuditResult,
              root_fd: int | None = None) -> None:
    """Append the providing directory for libraries the loader would miss or take elsewhere."""
    for info in elves:
        if not info.dynamic:
            continue
        current = list(info.search_path)
        kept = [e for e in current if not _is_transient(loader.expand(info, e), transient)
                and not _dangling(loader.expand(info, e), prefix, providers)]
        additions: list[str] = []
        for lib in info.needed:
            hit = _provider_for(lib, providers)
            if hit is None or is_libc(lib):
                continue
            _, want = hit
            found = loader.find(info, lib)
            if found.path is not None and _same_file(found.path, want):
                continue
            if found.via in ("rpath", "runpath") and found.entry is not None and not \
                    _is_transient(found.entry, transient):
                continue  # the build chose this entry: reported by the check, not overridden
            d = os.path.dirname(want)
            if d not in kept and d not in additions:
                additions.append(d)
        if additions or kept != current:
            try:
                _set_runpath(info, kept + additions, prefix, root_fd)
            except PatchelfMissing as e:
                result.errors.append(f"cannot complete the run path of "
                                     f"{os.path.relpath(info.path, prefix)}: {e}")
                return
            except OSError as e:
                result.errors.append(str(e))
                continue
            if additions:
                result.completed.append(os.path.relpath(info.path, prefix))


def _check(prefix: Path, info: ElfInfo, lib: str, chain: list[Provider], hosts: list[Provider],
           build_only: list[Provider], known: list[Provider], loader: LoaderPath,
           result: AuditResult) -> None:
    rel = os.path.relpath(info.path, prefix)
    found = loader.find(info, lib)
    hit = _provider_for(lib, chain)
    if hit is not None:
        provider, want = hit
        if found.path is not None and (_same_file(found.path, want) or
                                       any(p.owns(found.path) for p in chain)):
            result.loads[lib] = _who(provider)
            return
        where = found.path or "nowhere (not found)"
        who = provider.ident or "this package"
        result.errors.append(f"{rel} needs {lib}: it loads {where}, but {who} provides {want}")
        return
    owning = next((p for p in chain if found.path is not None and p.owns(found.path)), None)
    if owning is not None:
        result.loads[lib] = _who(owning)
        return
    hit = _provider_for(lib, build_only)
    if hit is not None:
        result.errors.append(f"{rel} needs {lib} at run time, which only the build-only "
                             f"dependency {hit[0].ident} provides ({hit[1]}): declare it in deps")
        return
    if found.path is None:
        result.missing.append({"file": rel, "library": lib})
        return
    owner = next((p for p in known if p.owns(found.path)), None)
    if owner is not None and owner.role != "host":
        result.errors.append(f"{rel} needs {lib}: it loads {found.path} from {owner.ident}, "
                             "which is not a runtime dependency: declare it in deps")
        return
    real = os.path.realpath(found.path)
    for host in hosts:
        if lib in host.libs or any(os.path.realpath(p) == real for p in host.libs.values()):
            result.loads[lib] = _who(host)
            return
    result.undeclared.append({"file": rel, "library": lib, "path": found.path})

"""Run one build in a cleared environment and install it as an artifact.

The environment holds only what the spec names: PREFIX, HDENV_JOBS,
`HDENV_DEP_<NAME>` for every dependency (and the upstream conventions only
where they mean what they say: `<NAME>_ROOT` for a built prefix, `<Pkg>_DIR`
for a CMake package directory), search paths built from the dependencies
(and their runtime closure) and the declared host artifacts, the basic POSIX
tools, and the spec's own env. A compiler that was not declared is simply not
on PATH.

Run paths are not this module's promise: `LD_RUN_PATH` is set, but GNU ld
ignores it as soon as anything passes its own `-rpath` (libtool does), so it
only serves test programs run before install. After install the link audit
(`linkaudit.audit`) reads every ELF file the build installed and completes
its run path with patchelf, whatever the build system passed to the linker.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..config import Settings
from ..errors import BuildError, Interrupted, StoreError
from ..oserrors import describe as describe_os_error
from ..store import fdtree
from ..store.artifacts import check_building, install_artifact, runtime_closure
from ..store.fsutil import remove_tree
from ..store.layout import Store
from ..store.sharing import current_umask
from ..store.sources import SourceStore
from ..store.tmpdirs import temp_dir
from . import bwrap, jail, linkaudit, missing, processes, rootalias
from .plan import Node

LOG_TAIL_LINES = 25


def env_var_name(package: str) -> str:
    """`HDENV_DEP_<NAME>` for a dependency: upper case, other characters as `_`.

    Namespaced, because `<NAME>_DIR` and `<NAME>_ROOT` already mean something
    to the tools a build runs: CMake and h5py read `HDF5_DIR` as HDF5's CMake
    package directory, so a prefix there breaks them (`Boost_DIR`, `MPI_DIR`,
    `Python_DIR` the same).
    """
    return "HDENV_DEP_" + "".join(c if c.isalnum() else "_" for c in package).upper()


def convention_vars(package: str, prefix: Path, built: bool) -> dict[str, str]:
    """The upstream variables whose meaning this dependency fits, and only those.

    `<NAME>_ROOT` (CMake's find_package prefix, many Makefiles' too) for a
    built artifact, a real prefix; never for a host artifact, a directory of
    symlinks that find modules cannot use. `<Pkg>_DIR` only to a directory
    holding `<Pkg>Config.cmake` or `<pkg>-config.cmake` of this package.
    """
    out = {}
    upper = "".join(c if c.isalnum() else "_" for c in package).upper()
    if built:
        out[f"{upper}_ROOT"] = str(prefix)
    for config in sorted([*prefix.glob("lib*/cmake/*/*onfig.cmake"),
                          *prefix.glob("share/cmake/*/*onfig.cmake")]):
        stem = config.name[: -len("Config.cmake")] if config.name.endswith("Config.cmake") \
            else config.name[: -len("-config.cmake")]
        if stem.lower() == package.lower() and stem.isidentifier():
            out.setdefault(f"{stem}_DIR", str(config.parent))
    return out


def build_environment(store: Store, node: Node, prefix: Path, build_dir: Path,
                      jobs: int, alias: Path | None = None) -> dict[str, str]:
    """The build's whole environment; with `alias` (rootalias), store paths go through it."""
    spec = node.spec
    direct = node.deps + node.build_deps
    closure = runtime_closure(store, direct)
    ordered = direct + [a for a in closure if a not in direct]
    dirs = [store.artifact_dir(a) for a in ordered]
    tools_dir = store.artifact_dir(spec["tools"])

    def existing(*parts: str) -> list[str]:
        found = []
        for d in dirs:
            for part in parts:
                p = d / part
                if p.is_dir():
                    found.append(str(p))
        return found

    lib_dirs = existing("lib", "lib64")
    # Run paths for test programs run before install; installed files get
    # theirs completed by the link audit. Only runtime dependencies, never
    # host or build-only artifacts: a run path must not point at what gc may drop.
    runtime = runtime_closure(store, node.deps)
    run_dirs = [str(store.artifact_dir(a) / part) for a in runtime for part in ("lib", "lib64")
                if not _is_host(store, a) and (store.artifact_dir(a) / part).is_dir()]
    host_specs = [_read_spec(store, a) for a in direct if _is_host(store, a)]
    pc_dirs = existing("lib/pkgconfig", "share/pkgconfig") + [
        d for hs in host_specs for d in hs.get("pkgconfig", [])]
    empty_pc = build_dir / "no-pkgconfig"
    env = {
        "PREFIX": str(prefix),
        "HDENV_JOBS": str(jobs),
        "PATH": os.pathsep.join([*existing("bin"), str(tools_dir / "bin")]),
        "CPATH": os.pathsep.join(existing("include")),
        "LIBRARY_PATH": os.pathsep.join(lib_dirs),
        "LD_RUN_PATH": os.pathsep.join([str(prefix / "lib"), str(prefix / "lib64"), *run_dirs]),
        # pkg-config sees the dependencies' .pc files only, never the system's
        "PKG_CONFIG_PATH": os.pathsep.join(pc_dirs),
        "PKG_CONFIG_LIBDIR": os.pathsep.join(pc_dirs) or str(empty_pc),
        "CMAKE_PREFIX_PATH": os.pathsep.join(str(d) for d in dirs),
        # Python packages among the dependencies are importable while this builds,
        # and installs into $PREFIX take the posix_prefix scheme (_python_prefix_scheme)
        "PYTHONPATH": os.pathsep.join([*(str(p) for d in dirs for p in sorted(
            d.glob("lib/python3*/site-packages")) if p.is_dir()),
            str(build_dir / PY_SCHEME_DIR)]),
        "HOME": str(build_dir / "home"),
        "TMPDIR": str(build_dir / "tmp"),
        "LC_ALL": "C",
        "LANG": "C",
        "TERM": "dumb",
        "SHELL": str(tools_dir / "bin" / "sh"),
        "SOURCE_DATE_EPOCH": "315532800",
    }
    for aid in direct:
        dep_prefix = store.artifact_dir(aid)
        env[env_var_name(aid.split("/")[0])] = str(dep_prefix)
        for var, value in convention_vars(aid.split("/")[0], dep_prefix,
                                          built=not _is_host(store, aid)).items():
            env.setdefault(var, value)
    env = {k: v for k, v in env.items() if v}
    for hs in host_specs:  # `env = {...}` of the declared host artifacts, then the package's
        env.update(hs.get("env", {}))
    env.update(spec.get("env", {}))
    _map_build_dir(env, build_dir)
    if alias is not None:
        rootalias.alias_environment(env, store.root, alias)
    return env


# What autoconf uses when CFLAGS is unset: setting the variable must not lose it.
DEFAULT_COMPILE_FLAGS = "-g -O2"
# The name every build directory takes in debug info and __FILE__.
FIXED_BUILD_DIR = "/build"


def _map_build_dir(env: dict[str, str], build_dir: Path) -> None:
    """Make C, C++ and Fortran compilers write `/build` where the build directory is.

    The build directory is a fresh `<store>/tmp/build-*` path: without the map
    it ends up in debug info (DW_AT_comp_dir, file names) and `__FILE__`
    strings, so artifacts differ from build to build and carry a store path
    no relocation knows of. gcc (8+) and clang (10+) take `-ffile-prefix-map`
    and leave it out of the producer string they record. A package's own flags
    (its `env`) keep their value, with the map appended.
    """
    mapping = f"-ffile-prefix-map={build_dir}={FIXED_BUILD_DIR}"
    for var in ("CFLAGS", "CXXFLAGS", "FFLAGS", "FCFLAGS"):
        env[var] = f"{env.get(var, DEFAULT_COMPILE_FLAGS)} {mapping}".strip()


def _is_host(store: Store, aid: str) -> bool:
    return bool(store.artifact_meta(aid).get("kind") == "host")


@dataclass
class BuildOptions:
    """Settings that change how a build runs, never what it is (none enters a spec)."""

    strict_links: bool = True  # undeclared system libraries fail the build
    sandbox: bool = False  # run under bubblewrap (decided once per `hdenv build`)
    jail: bool = True  # in the sandbox, hide undeclared host dev files (jail.py)
    note: Callable[[str], None] = field(default=lambda _msg: None)  # one line for the user
    # substitute(id, say, meter) -> True if a binary cache provided it (exchange.substitute)
    substitute: Callable[[str, Callable[[str], None], Any], bool] | None = None
    # where the build ran (a batch job's id and node), for later readers:
    log_first: str = ""  # the build log's first line
    meta: dict[str, Any] = field(default_factory=dict)  # added to artifact.json
    skip_checks: bool = False  # `--skip-checks`, `[stack] checks = "never"` (said in the log)
    keep_failed: bool = False  # `--keep-failed`: a failed build's directory stays (logs/)
    verbose: bool = False  # `-v`: say what passed too (the link audit's summary)


@dataclass(frozen=True)
class RunFlags:
    """What the person running `hdenv build` asked for on the command line, in one value.

    Carried from the CLI down to `build_options` unchanged, so a new flag is
    one field here rather than one more parameter on every function between.
    """

    skip_checks: bool = False
    keep_failed: bool = False
    verbose: bool = False


def build_options(settings: Settings, stream: TextIO | None = None,
                  flags: RunFlags | None = None) -> BuildOptions:
    """Options for the builds of one `hdenv build`; says once if builds are not sandboxed."""
    flags = flags or RunFlags()
    sandboxed, notice = bwrap.use_sandbox(settings.sandbox)
    if notice and stream is not None:
        print(f"hdenv: {notice}", file=stream)
    return BuildOptions(strict_links=settings.strict_links, sandbox=sandboxed, jail=settings.jail,
                        skip_checks=flags.skip_checks, keep_failed=flags.keep_failed,
                        verbose=flags.verbose)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64 * 1024:]
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def fetch_sources(node: Node, sources: SourceStore) -> None:
    """Have every source of `node` in the store (a batch job may have no network)."""
    for hint in node.source_hints:
        sources.ensure(hint["key"], urls=[hint["url"]] if hint.get("url") else [],
                       name=hint.get("filename"), git_url=hint.get("git"))


def fetch_all_sources(nodes: list[Node], sources: SourceStore) -> list[str]:
    """Fetch every source and patch of `nodes` now; one line per key that failed.

    Run before the first build, so a wrong hash in a patch or source the tenth
    package needs is reported before an hour of builds rather than after;
    each key once, however many packages (matrix variants) share it.
    """
    users: dict[str, list[str]] = {}
    hints: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for hint in node.source_hints:
            hints.setdefault(hint["key"], hint)
            users.setdefault(hint["key"], []).append(node.spec["name"])
    failed: list[str] = []
    for key, hint in hints.items():
        try:
            sources.ensure(key, urls=[hint["url"]] if hint.get("url") else [],
                           name=hint.get("filename"), git_url=hint.get("git"))
        except BuildError as e:
            failed.append(f"{', '.join(dict.fromkeys(users[key]))}: {e.message}")
    return failed


def build_node(store: Store, node: Node, sources: SourceStore, *, jobs: int,
               on_wait: Callable[[], None] | None = None,
               on_log: Callable[[Path], None] | None = None,
               options: BuildOptions | None = None) -> tuple[str, bool]:
    """Build `node` unless present; returns (id, built_now). Raises BuildError on failure."""
    options = options or BuildOptions()
    spec = node.spec
    fetch_sources(node, sources)
    store.tmp.mkdir(parents=True, exist_ok=True)
    build_dir = temp_dir(store, f"build-{spec['name']}-")
    log_path = build_dir / "build.log"

    meta: dict[str, Any] = dict(options.meta)  # populate adds; install_artifact reads it after

    def populate(prefix: Path, guard_fd: int, prefix_fd: int) -> None:
        if options.log_first:
            log_path.write_text(options.log_first.rstrip("\n") + "\n", encoding="utf-8")
        if on_log is not None:  # where to follow it while it runs (the progress display says)
            on_log(log_path)
        with rootalias.root_alias(store, used_artifacts(store, node), node.id) as alias:
            _run_script(store, node, sources, prefix, build_dir, log_path, jobs, guard_fd,
                        prefix_fd, sandboxed=options.sandbox, jailed=options.jail, alias=alias)
            _finish(store, node, prefix, prefix_fd, alias, log_path)
            meta.update(_audit_links(store, node, prefix, prefix_fd, build_dir, log_path,
                                     options))
            _run_checks(store, node, prefix, build_dir, log_path, jobs, guard_fd, options,
                        alias)

    try:
        return install_artifact(store, spec, populate, runtime_deps=node.deps, log_path=log_path,
                                on_wait=on_wait, extra_meta=meta,
                                on_note=lambda m: options.note(f"{node.id}: {m}"))
    except BuildError:
        raise
    except subprocess.CalledProcessError as e:
        not_kept = ""
        try:
            kept = _keep_failed_log(store, node, log_path)
        except OSError:  # e.g. the disk is full: show the tail from where it is
            kept = log_path
        except StoreError as refused:  # logs/ is a planted link: the tail, and why no log
            kept = log_path
            not_kept = f"\nthe log was not kept: {refused.message}"
        what = (f"check `{e.cmd}` of {node.id} failed" if isinstance(e, CheckFailed)
                else f"build of {node.id} failed")
        where = _keep_build_dir(store, node, build_dir) if options.keep_failed else None
        kept_dir = f"\nbuild directory kept: {where}" if where else ""
        hidden = _hidden_files(kept, build_dir) if options.sandbox and options.jail else []
        raise BuildError(
            f"{what} (exit {e.returncode}); log: {kept}{kept_dir}{not_kept}\n"
            f"--- last lines of the build log ---\n{tail(kept)}{missing.joined(hidden)}"
        ) from None
    except Interrupted:
        if log_path.exists():  # where a stopped build had got to (a batch job out of time)
            _keep_failed_log(store, node, log_path)
        raise
    except OSError as e:  # a full disk while writing the artifact's metadata, ...
        described = describe_os_error(e)
        if described is None:
            raise
        raise BuildError(f"build of {node.id} failed: {described[0]}") from None
    finally:
        if build_dir.exists():
            remove_tree(build_dir)


def _hidden_files(log: Path, build_dir: Path) -> list[str]:
    """What the jail hid that a failed build looked for: from its log, else from the check
    that stopped an autoconf configure (`config.log` in the sources or one level down)."""
    found = missing.explain_file(log)
    src = build_dir / "src"
    for config_log in [src / "config.log", *sorted(src.glob("*/config.log"))]:
        if found:
            break
        found = missing.explain_config_log(config_log)
    return found


def kept_build_dir(store: Store, aid: str) -> Path:
    """Where `--keep-failed` leaves a failed build's directory (beside its failed log).

    Not in tmp/: the next build removes what dead runs left there.
    """
    return store.root / "logs" / f"{aid.replace('/', '-')}.build"


def _keep_build_dir(store: Store, node: Node, build_dir: Path) -> Path | None:
    """Move the failed build's directory (in our private tmp/) to logs/, through descriptors.

    In a group store a member can swap logs/ or the entry's name for a
    symlink; by path, the removal of an old copy and the rename would follow
    it. Here logs/ is opened without following a link and whatever is at the
    name (a planted link included) is removed as found, never entered.
    """
    dest = kept_build_dir(store, node.id)
    try:
        src = fdtree.open_dir(build_dir.parent)  # our private tmp/<uid>/ (0700, checked)
        try:
            with store.opened("logs") as logs:
                fdtree.remove_at(logs, dest.name, dest)
                os.rename(build_dir.name, dest.name, src_dir_fd=src, dst_dir_fd=logs)
        finally:
            os.close(src)
    except (OSError, StoreError):
        return None
    return dest


def _finish(store: Store, node: Node, prefix: Path, prefix_fd: int, alias: Path,
            log_path: Path) -> None:
    """What the build wrote in its alias (rootalias) is rewritten from the alias to the
    real root, then moved into the artifact directory `install_artifact` made (its
    descriptor), never to where a path leads."""
    own = rootalias.own_dir(alias, node.id)
    try:
        own_fd = fdtree.open_dirs(alias, own.relative_to(alias).parts)
    except OSError:  # ELOOP, ENOTDIR, ENOENT: the alias is private, so the build did it
        raise BuildError(f"build of {node.id} failed: its script replaced $PREFIX ({own})"
                         " with a link or a file, or removed it; a build installs into"
                         " $PREFIX") from None
    try:
        changed = rootalias.unalias(own_fd, alias, store.root)
    finally:
        os.close(own_fd)
    rootalias.move_into(alias, node.id, prefix_fd, prefix)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"hdenv: {changed} file(s) rewritten from the build's padded root alias"
                  f" to {store.root}\n")


def _audit_links(store: Store, node: Node, prefix: Path, prefix_fd: int, build_dir: Path,
                 log_path: Path, options: BuildOptions) -> dict[str, Any]:
    """Complete run paths and check what every installed ELF file loads (see linkaudit):
    the files read and patched through descriptors from `prefix_fd`, the directory the
    build was given, never by a path a member of a group store could redirect."""
    providers = linkaudit.providers(store, node.deps, node.build_deps)
    result = linkaudit.audit(prefix, providers, transient=(str(build_dir), str(store.tmp)),
                             root_fd=prefix_fd)
    lines = [f"hdenv: run path completed: {f}" for f in result.completed]
    lines.append(f"hdenv: {result.summary()}")
    for u in result.undeclared:
        lines.append(f"hdenv: undeclared system library {u['library']} ({u['path']}), "
                     f"needed by {u['file']}")
    for m in result.missing:
        lines.append(f"hdenv: warning: {m['file']} needs {m['library']}, found nowhere")
    lines += [f"hdenv: link error: {e}" for e in result.errors]
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("".join(line + "\n" for line in lines))
    if result.errors:
        raise BuildError(f"link audit of {node.id} failed:\n  " + "\n  ".join(result.errors))
    if result.undeclared:
        libs = sorted({f"{u['library']} ({u['path']})" for u in result.undeclared})
        if options.strict_links:
            raise BuildError(f"{node.id} loads undeclared system libraries (strict-links): "
                             + ", ".join(libs) + missing.undeclared_hint(
                                 sorted({u["path"] for u in result.undeclared})))
        options.note(f"{node.id}: undeclared system libraries: {', '.join(libs)}")
    for m in result.missing:
        options.note(f"warning: {node.id}: {m['file']} needs {m['library']}, found nowhere")
    if options.verbose:
        options.note(f"{node.id}: {result.summary()}")
    return result.meta()


def failed_log_path(store: Store, aid: str) -> Path:
    return store.root / "logs" / f"{aid.replace('/', '-')}.failed.log"


def _keep_failed_log(store: Store, node: Node, log_path: Path) -> Path:
    """The artifact directory is removed on failure; keep its log where the user can read it."""
    kept = failed_log_path(store, node.id)
    data = log_path.read_bytes() if log_path.exists() else b""
    store.write_file(("logs",), kept.name, data)  # through logs/'s descriptor
    return kept


PY_SCHEME_DIR = "hdenv-python"
PY_SCHEME = """\
# Written by hdenv for this build: `pip install --prefix "$PREFIX"` and setuptools
# install into PREFIX/lib/pythonX.Y/site-packages (the posix_prefix scheme), as on
# an unpatched Python, whatever the distribution made the default (Debian's
# posix_local writes PREFIX/local/lib/pythonX.Y/dist-packages, which nothing finds).
import sysconfig

_distro_preferred = sysconfig.get_preferred_scheme


def _preferred(key):
    return "posix_prefix" if key == "prefix" else _distro_preferred(key)


sysconfig.get_preferred_scheme = _preferred
"""


def _python_prefix_scheme(build_dir: Path) -> None:
    """A `sitecustomize` on the build's PYTHONPATH that makes installs use posix_prefix."""
    (build_dir / PY_SCHEME_DIR).mkdir()
    (build_dir / PY_SCHEME_DIR / "sitecustomize.py").write_text(PY_SCHEME, encoding="utf-8")


def prepare(store: Store, node: Node, sources: SourceStore, prefix: Path, build_dir: Path,
            jobs: int, alias: Path | None = None) -> tuple[Path, Path, dict[str, str]]:
    """Lay out `build_dir` as the build sees it: sources unpacked, patches ready, the script.

    Returns (source directory, script, environment); `hdenv build-env` opens a
    shell in exactly this.
    """
    spec: dict[str, Any] = node.spec
    src = build_dir / "src"
    src.mkdir()
    (build_dir / "home").mkdir()
    (build_dir / "tmp").mkdir()
    _python_prefix_scheme(build_dir)
    for entry in spec["sources"]:
        dest = src / entry["target"] if entry.get("target") else src
        dest.mkdir(parents=True, exist_ok=True)
        sources.unpack(entry["key"], dest, strip=entry.get("strip", 0),
                       filename=entry.get("filename"), keep=entry.get("unpack") is False)
    script = build_dir / "hdenv-build.sh"
    prologue = _patch_prologue(sources, spec.get("patches", []), build_dir)
    script.write_text("set -e\n" + _umask_line() + prologue + spec["script"] + "\n",
                      encoding="utf-8")
    return src, script, build_environment(store, node, prefix, build_dir, jobs, alias)


def _umask_line() -> str:
    """The build's umask: hdenv's, but never letting the group write.

    In a shared store hdenv opens its umask to the group (sharing.adopt), and the
    artifact directory lets the group in (search only) while it is built, so
    that other members can see whether it is done. A directory the build made
    writable by the group would let any member plant a symlink in it for the
    build's next `cp` or `make install` to write through; the group gets its
    bits on every directory when the artifact is made read-only anyway.
    """
    return f"umask {current_umask() | stat.S_IWGRP:03o}\n"


def in_sandbox(store: Store, node: Node, argv: list[str], *, writable: list[Path], cwd: Path,
               sandboxed: bool, readable: tuple[str, ...] = (),
               writable_fds: dict[Path, int] | None = None, jailed: bool = True,
               alias: Path | None = None) -> list[str]:
    """`argv` as the build runs it: under bubblewrap when builds are sandboxed, and there
    (unless `jailed` is False) seeing only the host dev files it declared, and the
    store root's `alias` (rootalias), writable."""
    if not sandboxed:
        return argv
    used = used_artifacts(store, node)
    allowed: list[str] = []
    if jailed:
        # cache/jail.json through the store's descriptors: in a group store a member can
        # plant a link at cache/ or the file, or a FIFO, or write what it holds; only a
        # regular file of this user's is read, and a new one replaces whatever is there
        jail.use_cache(store.read_own_file(("cache",), "jail.json", jail.CACHE_LIMIT))
        allowed = jail.bwrap_args(jail.declared(
            _read_spec(store, a) for a in used if _is_host(store, a)))
        data = jail.cache_data()
        if data is not None:
            with contextlib.suppress(OSError, StoreError):  # only a cache
                store.write_file(("cache",), "jail.json", data)
    # the alias: the build's own directory to write, links to what it uses
    return bwrap.wrap(argv, writable=[*writable, *([alias] if alias is not None else [])],
                      readable=[*_sandbox_reads(store, used), *readable], cwd=cwd,
                      writable_fds=writable_fds, jail=allowed)


def _run_script(store: Store, node: Node, sources: SourceStore, prefix: Path, build_dir: Path,
                log_path: Path, jobs: int, guard_fd: int, prefix_fd: int,
                sandboxed: bool = False, jailed: bool = True,
                alias: Path | None = None) -> None:
    """Run the build's script. It writes into its own directory in the root `alias`, in
    the user's private tmp dir (sandboxed or not), never into the store: a member of a
    group store who exchanges the artifact's path for a link meanwhile redirects nothing
    (what it wrote is moved in through descriptors afterwards: `_finish`). Without an
    alias (`build-env` and tests) the artifact directory is bound by descriptor."""
    src, script, env = prepare(store, node, sources, prefix, build_dir, jobs, alias)
    sh = store.artifact_dir(node.spec["tools"]) / "bin" / "sh"
    check_building(store, node.id, prefix_fd)  # a link swapped in already: no script runs
    with open(log_path, "ab") as log:
        log.write(f"hdenv: building {node.id}\n".encode())
        log.flush()
        if not sandboxed:
            argv = [str(sh), str(script)]
            rc = processes.run_in_group(argv, cwd=src, env=env, log=log, pass_fds=(guard_fd,))
        elif alias is not None:
            argv = in_sandbox(store, node, [str(sh), str(script)], writable=[build_dir],
                              cwd=src, sandboxed=True, jailed=jailed, alias=alias)
            rc = processes.run_in_group(argv, cwd=src, env=env, log=log, pass_fds=(guard_fd,))
        else:
            argv = in_sandbox(store, node, [str(sh), str(script)], writable=[build_dir],
                              cwd=src, sandboxed=True, writable_fds={prefix: prefix_fd},
                              jailed=jailed)
            rc = processes.run_in_group(argv, cwd=src, env=env, log=log,
                                        pass_fds=(guard_fd, prefix_fd))
    if rc != 0:
        if processes.stopping():
            raise Interrupted(processes.stop_signal())
        raise subprocess.CalledProcessError(rc, str(script))


class CheckFailed(subprocess.CalledProcessError):
    """A check of the package (its `check` or `import` list) exited non-zero."""


def check_environment(env: dict[str, str], prefix: Path) -> dict[str, str]:
    """The build's environment with the package itself first: its programs and modules."""
    out = dict(env)
    out["PATH"] = os.pathsep.join(p for p in (str(prefix / "bin"), env.get("PATH", "")) if p)
    site = [str(p) for p in sorted(prefix.glob("lib/python3*/site-packages")) if p.is_dir()]
    out["PYTHONPATH"] = os.pathsep.join([*site, *filter(None, [env.get("PYTHONPATH", "")])])
    return out


def _run_checks(store: Store, node: Node, prefix: Path, build_dir: Path, log_path: Path,
                jobs: int, guard_fd: int, options: BuildOptions,
                alias: Path | None = None) -> None:
    """Each check after install, in the build's sandbox and directory; the first failure
    fails the build (a package that built but cannot `import` is not done)."""
    checks = node.spec.get("checks", [])
    if not checks:
        return
    if options.skip_checks:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"hdenv: {len(checks)} check(s) skipped (--skip-checks or"
                      " [stack] checks = \"never\")\n")
        return
    env = check_environment(build_environment(store, node, prefix, build_dir, jobs, alias),
                            prefix)
    sh = store.artifact_dir(node.spec["tools"]) / "bin" / "sh"
    src = build_dir / "src"
    for n, command in enumerate(checks, start=1):
        script = build_dir / f"hdenv-check-{n}.sh"
        script.write_text(_umask_line() + command + "\n", encoding="utf-8")
        with open(log_path, "ab") as log:
            log.write(f"hdenv: check: {command}\n".encode())
            log.flush()
            argv = in_sandbox(store, node, [str(sh), str(script)], writable=[build_dir],
                              cwd=src, sandboxed=options.sandbox, readable=(str(prefix),),
                              jailed=options.jail, alias=alias)
            rc = processes.run_in_group(argv, cwd=src, env=env, log=log, pass_fds=(guard_fd,))
        if rc != 0:
            if processes.stopping():
                raise Interrupted(processes.stop_signal())
            raise CheckFailed(rc, command)


def used_artifacts(store: Store, node: Node) -> list[str]:
    """Every artifact a build uses: its inputs and the runtime closure of its dependencies."""
    return list(dict.fromkeys(node.inputs + runtime_closure(store, node.deps + node.build_deps)))


def _sandbox_reads(store: Store, used: list[str]) -> list[str]:
    """What a sandboxed build must see: the artifacts it uses and where host software lives."""
    out = []
    for aid in used:
        out.append(str(store.artifact_dir(aid)))
        spec = _read_spec(store, aid)
        if spec.get("kind") == "host":
            out += [bwrap.install_root(i["path"]) for i in spec.get("programs", {}).values()]
            out += [bwrap.install_root(i["path"]) for i in spec.get("libraries", {}).values()]
            out += spec.get("pkgconfig", [])
            out += [v for v in spec.get("env", {}).values() if os.path.isabs(v)]
    return out


def _read_spec(store: Store, aid: str) -> dict[str, Any]:
    spec: dict[str, Any] = store.read_spec(aid.rsplit("/", 1)[1])
    return spec


def _patch_prologue(sources: SourceStore, keys: list[str], build_dir: Path) -> str:
    """Shell lines applying the spec's patches with `patch -p1`, in order, before the script.

    The patches are copied into the build directory first, so the build (and
    its sandbox) never needs to see the source store.
    """
    if not keys:
        return ""
    pdir = build_dir / "patches"
    pdir.mkdir()
    lines = []
    for n, key in enumerate(keys, start=1):
        path = sources.path(key)
        if not path.is_file():
            raise BuildError(f"patch {key} is not in the source store")
        name = f"{n:02d}-" + re.sub(r"[^A-Za-z0-9._+-]", "_", sources.name_of(key) or "patch")
        shutil.copyfile(path, pdir / name)
        quoted = shlex.quote(str(pdir / name))
        lines.append(f"echo 'hdenv: applying {name}'\n"
                     f"patch -p1 --batch --no-backup-if-mismatch -i {quoted}\n")
    return "".join(lines)

"""Run one build in a cleared environment and install it as an artifact.

The environment holds only what the spec names: PREFIX, HDENV_JOBS,
`<DEP>_DIR` for every dependency, search paths built from the dependencies
(and their runtime closure) and the declared host artifacts, the basic POSIX
tools, and the spec's own env. A compiler that was not declared is simply not
on PATH. Libraries are found at run time through an RPATH: GNU ld records
`LD_RUN_PATH` in every executable and shared library it links when no
`-rpath` is given, which reaches every build system without compiler wrappers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BuildError
from ..store.artifacts import install_artifact, runtime_closure
from ..store.fsutil import atomic_write, remove_tree
from ..store.layout import Store
from ..store.sources import SourceStore
from .plan import Node

LOG_TAIL_LINES = 25


def env_var_name(package: str) -> str:
    """`<NAME>_DIR` variable for a dependency: upper case, other characters as `_`."""
    return "".join(c if c.isalnum() else "_" for c in package).upper() + "_DIR"


def build_environment(store: Store, node: Node, prefix: Path, build_dir: Path,
                      jobs: int) -> dict[str, str]:
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
    env = {
        "PREFIX": str(prefix),
        "HDENV_JOBS": str(jobs),
        "PATH": os.pathsep.join([*existing("bin"), str(tools_dir / "bin")]),
        "CPATH": os.pathsep.join(existing("include")),
        "LIBRARY_PATH": os.pathsep.join(lib_dirs),
        "LD_RUN_PATH": os.pathsep.join([str(prefix / "lib"), str(prefix / "lib64"), *lib_dirs]),
        "PKG_CONFIG_PATH": os.pathsep.join(existing("lib/pkgconfig", "share/pkgconfig")),
        "CMAKE_PREFIX_PATH": os.pathsep.join(str(d) for d in dirs),
        "HOME": str(build_dir / "home"),
        "TMPDIR": str(build_dir / "tmp"),
        "LC_ALL": "C",
        "LANG": "C",
        "TERM": "dumb",
        "SHELL": str(tools_dir / "bin" / "sh"),
        "SOURCE_DATE_EPOCH": "315532800",
    }
    for aid in direct:
        env[env_var_name(aid.split("/")[0])] = str(store.artifact_dir(aid))
    env = {k: v for k, v in env.items() if v}
    env.update(spec.get("env", {}))
    return env


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64 * 1024:]
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def build_node(store: Store, node: Node, sources: SourceStore, *, jobs: int,
               on_wait: Callable[[], None] | None = None) -> tuple[str, bool]:
    """Build `node` unless present; returns (id, built_now). Raises BuildError on failure."""
    spec = node.spec
    for hint in node.source_hints:
        sources.ensure(hint["key"], urls=[hint["url"]] if hint.get("url") else [],
                       git_url=hint.get("git"))
    store.tmp.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f"build-{spec['name']}-", dir=store.tmp))
    log_path = build_dir / "build.log"

    def populate(prefix: Path, lock_fd: int) -> None:
        _run_script(store, node, sources, prefix, build_dir, log_path, jobs, lock_fd)

    try:
        return install_artifact(store, spec, populate, runtime_deps=node.deps, log_path=log_path,
                                on_wait=on_wait)
    except BuildError:
        raise
    except subprocess.CalledProcessError as e:
        kept = _keep_failed_log(store, node, log_path)
        raise BuildError(
            f"build of {node.id} failed (exit {e.returncode}); log: {kept}\n"
            f"--- last lines of the build log ---\n{tail(kept)}"
        ) from None
    finally:
        remove_tree(build_dir)


def _keep_failed_log(store: Store, node: Node, log_path: Path) -> Path:
    """The artifact directory is removed on failure; keep its log where the user can read it."""
    kept = store.root / "logs" / f"{node.id.replace('/', '-')}.failed.log"
    data = log_path.read_bytes() if log_path.exists() else b""
    atomic_write(kept, data)
    return kept


def _run_script(store: Store, node: Node, sources: SourceStore, prefix: Path, build_dir: Path,
                log_path: Path, jobs: int, lock_fd: int) -> None:
    spec: dict[str, Any] = node.spec
    src = build_dir / "src"
    src.mkdir()
    (build_dir / "home").mkdir()
    (build_dir / "tmp").mkdir()
    for entry in spec["sources"]:
        dest = src / entry["target"] if entry.get("target") else src
        dest.mkdir(parents=True, exist_ok=True)
        sources.unpack(entry["key"], dest, strip=entry.get("strip", 0),
                       filename=entry.get("filename"), keep=entry.get("unpack") is False)
    script = build_dir / "hdenv-build.sh"
    prologue = _patch_prologue(sources, spec.get("patches", []), build_dir)
    script.write_text("set -e\n" + prologue + spec["script"] + "\n", encoding="utf-8")
    env = build_environment(store, node, prefix, build_dir, jobs)
    sh = store.artifact_dir(spec["tools"]) / "bin" / "sh"
    with open(log_path, "ab") as log:
        log.write(f"hdenv: building {node.id}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [str(sh), str(script)], cwd=src, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, pass_fds=(lock_fd,), start_new_session=True,
        )
        try:
            rc = proc.wait()
        except BaseException:
            _kill_group(proc)
            raise
    if rc != 0:
        raise subprocess.CalledProcessError(rc, str(script))


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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """On Ctrl-C or an error elsewhere, stop the whole build, not just its shell."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

"""`hdenv build-env`: a shell (or a command) inside one package's build, to debug it.

What Spack's `build-env` and Nix's `nix develop` give: the same cleared
environment, the same sandbox and the same unpacked, patched source
directory that the build gets, so a failure can be replayed by hand
(`sh ../hdenv-build.sh`, or step by step). Two differences from a build, on
purpose: `$PREFIX` is a scratch directory beside the sources (nothing is
written into the store's artifact path, which only a build under its lock may
fill), and the directory is kept, under `logs/`, until the user removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..config import Settings
from ..errors import UserError
from ..recipes.repos import site_refs
from ..store import fdtree
from ..store.gcroots import BuildRoots
from ..store.layout import Store
from ..store.sources import SourceStore
from .builder import build_options, fetch_sources, in_sandbox, prepare, used_artifacts
from .plan import Node, plan_stack
from .preflight import preflight
from .progress import labels
from .rootalias import root_alias
from .stackbuild import plan_roots
from .stackfile import load_stack


def build_env(path: Path, settings: Settings, package: str, command: Sequence[str], *,
              overrides: Mapping[str, str] | None = None) -> int:
    """Run `command` (default: an interactive shell) in `package`'s build; its exit code."""
    stack = load_stack(path, overrides, settings.host_files, site_refs(settings))
    preflight(stack)
    store = Store(settings.store, settings.upstreams).ensure()
    sources = SourceStore(store, settings.mirrors)
    with BuildRoots(store) as roots:
        with roots.holding():
            plan = plan_stack(stack, store, sources, host_identity=settings.host_identity)
            roots.add(plan_roots(plan))
        node = _the_node(plan.nodes, package, path)
        missing = [i for i in node.inputs if not store.has_artifact(i)]
        if missing:
            raise UserError(f"{package} needs {', '.join(missing)}, which are not built yet:"
                            f" run `hdenv build {path}` first (it may fail at {package};"
                            " that is fine)")
        fetch_sources(node, sources)
        build_dir = store.root / "logs" / f"{node.id.replace('/', '-')}.env"
        with store.opened("logs") as logs:  # never through a link planted at logs/ or the name
            fdtree.remove_at(logs, build_dir.name, build_dir)
            os.mkdir(build_dir.name, 0o700, dir_fd=logs)
        prefix = build_dir / "prefix"
        prefix.mkdir()
        with root_alias(store, used_artifacts(store, node)) as alias:  # as the build sees them
            src, script, env = prepare(store, node, sources, prefix, build_dir, settings.jobs,
                                       alias)
            options = build_options(settings)
            shell = [command[0], *command[1:]] if command else _interactive_shell(store, node)
            env["PS1"] = f"[build-env {package}] \\w\\$ "
            print(f"hdenv: build directory {build_dir} (kept; remove it when done); the build"
                  f" script is {script}; PREFIX is the scratch directory {prefix}",
                  file=sys.stderr)
            argv = in_sandbox(store, node, shell, writable=[build_dir], cwd=src,
                              sandboxed=options.sandbox, jailed=options.jail, alias=alias)
            return subprocess.run(argv, cwd=src, env=env).returncode


def _the_node(nodes: Mapping[str, Node], package: str, path: Path) -> Node:
    found = [n for n in nodes.values() if n.kind == "build" and n.spec["name"] == package]
    if not found:
        names = sorted({n.spec["name"] for n in nodes.values() if n.kind == "build"})
        raise UserError(f"{path}: no package {package!r} (packages: {', '.join(names)})")
    if len(found) > 1:
        seen = labels((n.id, n.variant) for n in found)
        raise UserError(f"{package} is built in {len(found)} variants"
                        f" ({', '.join(sorted(seen[n.id] for n in found))}):"
                        " choose one with --set KEY=VALUE")
    return found[0]


def _interactive_shell(store: Store, node: Node) -> list[str]:
    """bash if the system has it (what people debug in), else the build's own sh."""
    bash = shutil.which("bash", path="/usr/bin:/bin")
    if bash and os.access(bash, os.X_OK):
        return [bash, "--norc", "--noprofile", "-i"]
    return [str(store.artifact_dir(node.spec["tools"]) / "bin" / "sh"), "-i"]

"""`hdenv modulefiles`: collect, plan, render, then replace the tree.

Every decision (what is covered, levels, names, defaults, file contents) is
made in memory first; only then is anything written, so bad input leaves an
existing tree as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..store.layout import Store
from . import catalog, content, hierarchy, writer
from .render import FORMATS, Renderer


@dataclass
class Outcome:
    modulepath: Path  # what users `module use`
    modules: int
    profiles: int
    warnings: list[str] = field(default_factory=list)
    lmodrc: Path | None = None  # with --spider-cache: the rc file naming the cache


def write_modulefiles(store: Store, out: Path, fmt: str, refs: list[str], *,
                      spider_cache: bool = False) -> Outcome:
    if fmt not in FORMATS:
        raise UserError(f"unknown modulefile format {fmt!r}: choose {' or '.join(FORMATS)}")
    out = Path(os.path.abspath(out))  # not resolved: modules name the path given
    writer.check_target(out)
    tool = writer.check_cache_path(out, store.root) if spider_cache else None
    found = catalog.collect(store, refs)
    if not found.nodes and not found.profiles:
        raise UserError("nothing to write: the store has no named profiles"
                        " (build a stack first, or name artifacts)")
    layout = hierarchy.plan_layout(found.nodes, found.profiles)
    modules, marks = content.build_modules(store, found, layout, out)
    files = Renderer(FORMATS[fmt]).files(modules, marks)
    core = out / layout.level_dirs[hierarchy.CORE]
    writer.replace_tree(out, files, sorted(set(layout.level_dirs.values())),
                        {"format": fmt, "refs": refs, "modulepath": str(core)})
    outcome = Outcome(core, len(modules), len(found.profiles), layout.warnings)
    if fmt == "tcl":
        outcome.warnings.extend(_tcl_path_warnings(out))
    if tool is not None:
        outcome.lmodrc = writer.build_spider_cache(tool, out, str(core))
    return outcome


def _tcl_path_warnings(out: Path) -> list[str]:
    """Where the readers of Tcl modulefiles fail to find or read a tree (measured)."""
    warnings = []
    special = sorted(set(str(out)) & set("$[]{}"))
    if special:
        warnings.append(f"Environment Modules 5 finds no modulefile under a path with"
                        f" {' '.join(special)}: {out}")
    if any(c.isspace() for c in str(out)):
        warnings.append(f"Lmod cannot read Tcl modulefiles under a path with whitespace"
                        f" (its tcl2lua splits it); use --format lmod for Lmod: {out}")
    return warnings

"""What each module does, independent of Lua or Tcl.

A profile module changes what `hdenv load` changes for the same profile (the
variables come from the fast load path's own table, plus CPATH and
LIBRARY_PATH that compilers read), sets the profile's `env` and declares its
`family`. An artifact module does the same for the artifact's prefix, sets
`<NAME>_ROOT`, a host artifact's `env`, and `depends_on` its runtime
dependencies only (not the whole closure: each dependency loads its own).
Only directories that exist are prepended, so a module adds nothing empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UserError
from ..shell.fastload import PATH_DIRS, PREFIX_VAR, python_site_dirs
from ..store.layout import Store
from .catalog import Catalog
from .hierarchy import Layout, Placement

# Compilers find headers and libraries of a loaded module through these, as
# Lmod sites' modules commonly set them; added after the fast path's own list.
COMPILER_DIRS = (("CPATH", "include"), ("LIBRARY_PATH", "lib"))


def load_dirs() -> list[tuple[str, str]]:
    """(variable, sub-directory) a load prepends, "" meaning the prefix itself."""
    out = [(var, sub) for var, sub, _keep in PATH_DIRS]
    out += [(var, sub) for var, sub in COMPILER_DIRS if var not in {v for v, _s in out}]
    return [*out, (PREFIX_VAR, "")]


@dataclass
class Module:
    """One modulefile's content; `path` is relative to the tree, without extension."""

    path: str
    name: str
    version: str
    whatis: list[str]
    help: str
    family: str | None = None
    depends: list[str] = field(default_factory=list)
    prepend: list[tuple[str, str]] = field(default_factory=list)
    setenv: list[tuple[str, str]] = field(default_factory=list)
    modulepath: list[str] = field(default_factory=list)


@dataclass
class DefaultMark:
    """`dir` (relative, the NAME directory) defaults to `name/version`."""

    dir: str
    name: str
    version: str


def env_name(name: str) -> str:
    """`json-c` -> `JSON_C`, for `<NAME>_ROOT`."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
    return f"_{out}" if out[:1].isdigit() else out


def _check_var(var: str, where: str) -> str:
    if not (var.isascii() and var.isidentifier()):
        raise UserError(f"{where}: invalid environment variable name {var!r}")
    return var


def _check_family(family: Any, where: str) -> str | None:
    """Lmod and Environment Modules turn a family into a variable name."""
    if family is None:
        return None
    if not isinstance(family, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", family):
        raise UserError(f"{where}: family {family!r} cannot be a module family"
                        " (letters, digits and _)")
    return family


def _prepends(prefix: Path) -> list[tuple[str, str]]:
    out = []
    for var, sub in load_dirs():
        path = prefix / sub if sub else prefix
        if not sub or path.is_dir():
            out.append((var, check_value(var, str(path), "the store path")))
    out += [("PYTHONPATH", check_value("PYTHONPATH", d, "the store path"))
            for d in python_site_dirs(str(prefix))]  # as `hdenv load` does
    return out


def check_value(var: str, value: str, where: str) -> str:
    """Refuse line breaks: Lmod and Environment Modules print them unquoted to the shell.

    Both write `export VAR=...` code that a newline would end, so the rest of
    the value would run as a command in the user's shell.
    """
    if "\n" in value or "\r" in value:
        raise UserError(f"{where}: the value of {var} contains a line break, which Lmod and"
                        " Environment Modules would hand to the shell as code")
    return value


def _env(env: Any, where: str) -> list[tuple[str, str]]:
    if not isinstance(env, dict):
        return []
    return [(_check_var(str(k), where), check_value(str(k), str(v), where))
            for k, v in sorted(env.items())]


def _description(*sources: dict[str, Any]) -> str | None:
    for source in sources:
        value = source.get("description")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def build_modules(store: Store, catalog: Catalog, layout: Layout,
                  out: Path) -> tuple[list[Module], list[DefaultMark]]:
    """Every module and default mark of the tree rooted at `out` (its final path)."""
    modules = []
    for p in layout.placements:
        if p.kind == "artifact":
            module = _artifact_module(store, catalog, p)
        else:
            module = _profile_module(store, catalog, p)
        module.path = f"{layout.level_dirs[p.level]}/{p.name}/{p.version}"
        if p.opens is not None:
            opened = str(out / layout.level_dirs[p.opens])
            module.modulepath = [check_value("MODULEPATH", opened, "--out")]
        modules.append(module)
    marks = [DefaultMark(f"{layout.level_dirs[level]}/{name}", name, version)
             for (level, name), version in sorted(layout.defaults.items())]
    return modules, marks


def _artifact_module(store: Store, catalog: Catalog, p: Placement) -> Module:
    spec, meta = catalog.specs[p.ident], catalog.metas[p.ident]
    prefix = store.artifact_dir(p.ident)
    node = catalog.nodes[p.ident]
    about = store.about(p.ident.rsplit("/", 1)[1])
    description = _description(about, spec, meta) or f"{node.name} {node.version}"
    text = [description, "", f"hdenv artifact {p.ident}", f"prefix: {prefix}"]
    if node.family == "compiler":
        text.append("Loading it makes the modules built with it available.")
    elif node.family == "mpi":
        text.append("Loading it makes the modules built with it and this compiler available.")
    if p.depends:
        text.append(f"Loads its runtime dependencies: {', '.join(p.depends)}")
    text.append(f"Generated by hdenv {__version__}; `hdenv show {p.ident}` says more.")
    env = _env(spec.get("env"), p.ident) if spec.get("kind") == "host" else []
    return Module(
        path="", name=p.name, version=p.version,
        whatis=[f"Description: {description}", f"Artifact: {p.ident}"],
        help="\n".join(text), family=_check_family(node.family, p.ident), depends=list(p.depends),
        prepend=_prepends(prefix),
        setenv=[(f"{env_name(node.name)}_ROOT", str(prefix)), *env],
    )


def _profile_module(store: Store, catalog: Catalog, p: Placement) -> Module:
    meta = catalog.profile_metas[p.ident]
    prefix = store.profile_dir(p.ident)
    description = _description(store.about(p.ident), meta) or f"hdenv profile {p.name}"
    members = ", ".join(a.rsplit("/", 1)[0] for a in meta.get("artifacts", []))
    text = [description, "", f"generation {p.generation} of the hdenv profile {p.name}",
            f"hash: {p.ident}", f"prefix: {prefix}", f"contains: {members or 'nothing'}",
            f"Generated by hdenv {__version__}. It sets what `hdenv load {p.name}/{p.generation}`"
            " sets, and also " + " and ".join(v for v, _ in COMPILER_DIRS)
            + " (a compiler then finds the profile's headers and libraries, as in Lmod"
            " sites' modules); `hdenv load` leaves those to the build system."]
    return Module(
        path="", name=p.name, version=p.version,
        whatis=[f"Description: {description}", f"Profile: {p.ident}",
                f"Generation: {p.generation}"],
        help="\n".join(text),
        family=_check_family(meta.get("family"), f"profile {p.name}/{p.generation}"),
        prepend=_prepends(prefix),
        setenv=_env(meta.get("env"), f"profile {p.name}/{p.generation}"),
    )

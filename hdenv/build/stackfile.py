"""Stack files: TOML + Jinja2 templates -> one plan per matrix variant.

Everything a user can get wrong here is reported as a one-line `UserError` with
the stack file and the line of the offending key, before anything touches the
store. tomllib gives no positions, so `LineIndex` recovers them from the text.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import tomlfile
from ..errors import UserError
from ..graphs import Cycle, postorder
from ..recipes.buildsystems import COMPILING, compiler_env, render_script
from ..recipes.recipe import ARG_KEYS, BUILD_SYSTEMS, STAGE_KEYS, Parameter, Recipe
from ..recipes.repos import RepoRef, Repositories, parse_refs
from ..store.sources import SourceDecl
from ..tomlfile import LineIndex
from ..validate import env_name_problem, env_value_problem, profile_name_problem
from . import stackcache

if TYPE_CHECKING:
    import jinja2

    from .sandbox import StackSandbox

PROFILE_PLACEHOLDER = "@@HDENV_PROFILE@@"
Scalar = (str, int, float, bool)

TOP_KEYS = {"stack", "parameters", "matrix", "host", "packages", "profiles"}
STACK_KEYS = {"name", "description", "checks", "allow-outside", "repos", "toolchain"}
HOST_KEYS = {"programs", "libraries", "family", "version", "version-from", "env", "pkgconfig",
             "packages"}
PC_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # `pkgconfig = ["yaml-0.1"]`
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:-]*$")  # dpkg's and rpm's names
PACKAGE_KEYS = {"version", "sources", "patches", "deps", "build-deps", "env", "script", "when",
                "description", "slurm", "check", "import", "help", "homepage", "build-system",
                "parameters", "provides", *ARG_KEYS, *STAGE_KEYS}
LIST_KEYS = frozenset(ARG_KEYS)  # a stack's value adds to the recipe's; other keys replace it
SLURM_KEYS = {"cpus", "time", "mem", "options"}
PROFILE_KEYS = {"packages", "env", "family", "exclude", "priority", "when", "description",
                "python-usage", "sticky", "help", "homepage", "hidden"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class HostDecl:
    name: str
    programs: list[str]
    family: str | None
    line: int
    libraries: list[str] = field(default_factory=list)
    version: str | None = None
    version_from: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    pkgconfig: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)  # distro packages, every file of each


@dataclass
class PackagePlan:
    """One package of one variant, with every template rendered."""

    name: str
    version: str
    sources: list[SourceDecl]
    deps: list[str]
    build_deps: list[str]
    env: dict[str, str]
    script: str
    line: int
    patches: list[SourceDecl] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # run after install; in the spec
    sources_line: int = 0  # where `sources` is, for errors found later (a missing path)
    description: str = ""  # shown by spider and show; not part of the spec
    slurm: dict[str, Any] = field(default_factory=dict)  # batch resources; never in the spec
    about: dict[str, str] = field(default_factory=dict)  # help, homepage: `hdenv help`
    provides: list[str] = field(default_factory=list)  # virtual packages it can stand for
    recipe: str = ""  # the recipe file it came from, if any (`hdenv show`); not in the spec


@dataclass
class ProfilePlan:
    name: str
    packages: list[str]
    env: dict[str, str]
    family: str | None
    exclude: list[str]
    priority: list[str]
    line: int
    description: str = ""  # shown by avail and show; not part of the spec
    python_usage: bool = False  # log the distributions its Python imports
    sticky: bool = False  # survives `hdenv purge`/`unload` unless --force
    about: dict[str, str] = field(default_factory=dict)  # help, homepage: `hdenv help`


@dataclass
class Variant:
    """One combination of matrix values; `suffix` is appended to profile names."""

    values: dict[str, Any]
    suffix: str
    packages: dict[str, PackagePlan] = field(default_factory=dict)
    profiles: list[ProfilePlan] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # packages, dependencies first (checked)


@dataclass
class Stack:
    path: Path
    name: str
    parameters: dict[str, Any]
    hosts: dict[str, HostDecl]
    variants: list[Variant]
    description: str = ""
    run_checks: bool = True  # `[stack] checks = "never"`: checks stay in the specs, not run

    @property
    def base_dir(self) -> Path:
        return self.path.parent


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_SHORT = 4096
"""A `{{ name }}` value this long or shorter is returned as it is: the sandbox allows far
longer ones (sandbox.MAX_VALUE), and one beyond is rendered for its limit to refuse."""

_ONE_NAME = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
"""A template that is one variable and nothing else."""


class _Ctx:
    """Error reporting and rendering for one stack file."""

    def __init__(self, path: Path, text: str, index: LineIndex | None = None):
        self.file = str(path)
        self.index = LineIndex(text) if index is None else index
        self._jinja: StackSandbox | None = None
        self.base = path.parent
        self.allow_outside = False  # `[stack] allow-outside = true`: paths beyond the stack's dir
        # one compiled template per distinct string: a 500-package stack repeats a few
        self.templates: dict[str, jinja2.Template] = {}

    def inside(self, path: str, *where: str) -> None:
        """A local source or patch must be in the stack file's directory (or below):
        a stack file someone sent must not copy /etc/shadow into the store."""
        if self.allow_outside:
            return
        base = self.base.resolve()
        target = (self.base / path).resolve()
        if target != base and base not in target.parents:
            raise self.error(f"{'.'.join(where)}: {path!r} is outside the stack file's"
                             f" directory {base}; set allow-outside = true in [stack] to"
                             " use it", *where)

    def error(self, message: str, *path: str) -> UserError:
        return UserError(message, file=self.file, line=self.index.line(*path))

    @property
    def jinja(self) -> StackSandbox:
        """The sandbox, made at the first template that needs it: Jinja2's import is
        40-100 ms, and a stack of plain strings and `{{ name }}` needs none."""
        if self._jinja is None:
            from .sandbox import StackSandbox

            self._jinja = StackSandbox()
        return self._jinja

    def render(self, value: str, context: Mapping[str, Any], *path: str) -> str:
        if "{" not in value:  # plain text: most strings, and compiling is the costly part
            return value
        one = _ONE_NAME.fullmatch(value)
        found = context.get(one.group(1)) if one is not None else None
        if isinstance(found, str) and len(found) <= _SHORT:
            # `{{ name }}` of a string parameter prints the string: no render, and no
            # budget to arm (a signal handler, a timer and a memory limit each time:
            # 5,000 packages' `FLAGS = "{{ flags }}"` were a tenth of a no-op build);
            # a longer one is rendered, for the sandbox's own limit to say if it is too long
            return found
        return self._render(value, context, *path)

    def _render(self, value: str, context: Mapping[str, Any], *path: str) -> str:
        import jinja2  # loaded by now (self.jinja): bound here for the except clauses

        from .sandbox import check_value

        try:
            jinja = self.jinja
            template = self.templates.get(value)
            if template is None:
                template = self.templates[value] = jinja.from_string(value)
            with jinja.budget():
                return check_value(template.render(context))
        except jinja2.TemplateSyntaxError as e:
            line = self.index.line(*path) + max((e.lineno or 1) - 1, 0)
            raise UserError(f"template error in {'.'.join(path)}: {e.message}",
                            file=self.file, line=line) from None
        except jinja2.UndefinedError as e:
            raise self.error(f"undefined name in {'.'.join(path)}: {e.message}", *path) from None
        except jinja2.exceptions.SecurityError as e:
            raise self.error(f"unsafe template in {'.'.join(path)}: {e}", *path) from None
        except Exception as e:  # anything a template expression can raise
            raise self.error(f"template error in {'.'.join(path)}: {e}", *path) from None

    def condition(self, expr: str, context: Mapping[str, Any], *path: str) -> bool:
        jinja = self.jinja
        import jinja2  # loaded with the sandbox: bound here for the except clauses

        try:
            with jinja.budget():
                return bool(jinja.compile_expression(expr, undefined_to_none=False)(context))
        except jinja2.TemplateSyntaxError as e:
            raise self.error(f"bad condition in {'.'.join(path)}: {e.message}", *path) from None
        except jinja2.UndefinedError as e:
            raise self.error(f"undefined name in {'.'.join(path)}: {e.message}", *path) from None
        except jinja2.exceptions.SecurityError as e:
            raise self.error(f"unsafe condition in {'.'.join(path)}: {e}", *path) from None
        except Exception as e:
            raise self.error(f"bad condition in {'.'.join(path)}: {e}", *path) from None

    # -- type checks -------------------------------------------------------
    def table(self, value: Any, *path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"{'.'.join(path)} must be a table", *path)
        return value

    def keys(self, table: Mapping[str, Any], allowed: set[str], *path: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"in [{'.'.join(path)}]" if path else "at the top level"
                raise self.error(
                    f"unknown key '{key}' {where} (allowed: {', '.join(sorted(allowed))})",
                    *path, key)

    def string(self, value: Any, *path: str) -> str:
        if not isinstance(value, str):
            raise self.error(f"{'.'.join(path)} must be a string", *path)
        return value

    def strings(self, value: Any, *path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{'.'.join(path)} must be a list of strings", *path)
        return list(value)

    def str_table(self, value: Any, *path: str) -> dict[str, str]:
        table = self.table(value, *path)
        for k, v in table.items():
            if not isinstance(v, str):
                raise self.error(f"{'.'.join(path)}.{k} must be a string", *path, k)
        return dict(table)

    def name(self, value: str, what: str, *path: str) -> str:
        if not NAME_RE.match(value):
            raise self.error(f"invalid {what} name {value!r}", *path)
        return value


def _parse_set(overrides: Mapping[str, str], params: dict[str, Any], matrix: dict[str, list[Any]],
               ctx: _Ctx) -> None:
    """Apply `--set` values: parameters are replaced, matrix keys narrowed to one value."""
    for key, raw in overrides.items():
        if key in matrix:
            value = _coerce(raw, matrix[key][0] if matrix[key] else "")
            if value not in matrix[key]:
                allowed = ", ".join(str(v) for v in matrix[key])
                raise UserError(f"--set {key}={raw}: matrix.{key} in {ctx.file} allows only"
                                f" {allowed}")
            matrix[key] = [value]
        elif key in params:
            params[key] = _coerce(raw, params[key])
        else:
            known = sorted(set(params) | set(matrix))
            raise UserError(f"--set {key}: no such parameter in {ctx.file}"
                            f" (known: {', '.join(known) or 'none'})")


def _coerce(raw: str, like: Any) -> Any:
    """Give a `--set` string the type of the default it replaces."""
    if isinstance(like, bool):
        if raw.lower() in ("true", "1", "yes", "on"):
            return True
        if raw.lower() in ("false", "0", "no", "off"):
            return False
        raise UserError(f"--set: expected a boolean, got {raw!r}")
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError:
            raise UserError(f"--set: expected a whole number, got {raw!r}") from None
    if isinstance(like, float):
        try:
            return float(raw)
        except ValueError:
            raise UserError(f"--set: expected a number, got {raw!r}") from None
    return raw


class _SiteHosts:
    """`[host.NAME]` tables of the config files, parsed when a stack names one.

    A stack's own `[host.NAME]` wins; the user's config over the site's. Errors
    name the config file and line, as for a stack file.
    """

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)
        self.parsed: dict[Path, tuple[_Ctx, dict[str, Any]]] = {}

    def get(self, name: str) -> HostDecl | None:
        for file in self.files:
            ctx, table = self._read(file)
            if name in table:
                return _parse_hosts(ctx, {name: table[name]})[name]
        return None

    def _read(self, file: Path) -> tuple[_Ctx, dict[str, Any]]:
        if file not in self.parsed:
            data, text = tomlfile.read(file, "config file")
            ctx = _Ctx(file, text)
            self.parsed[file] = (ctx, ctx.table(data.get("host", {}), "host"))
        return self.parsed[file]


def load_stack(path: Path, overrides: Mapping[str, str] | None = None,
               host_files: Sequence[Path] = (), site_repos: Sequence[RepoRef] = (),
               recipe_cache: Path | None = None) -> Stack:
    """Parse, validate and render a stack file into variants.

    `site_repos` (config `repos`) are asked for recipes after the stack's own
    `[stack] repos`; `recipe_cache` keeps git repositories' objects.
    """
    path = Path(path).absolute()
    data, text, index = stackcache.read(path, "stack file")
    ctx = _Ctx(path, text, index)
    ctx.keys(data, TOP_KEYS)
    stack_table = ctx.table(data.get("stack", {}), "stack")
    ctx.keys(stack_table, STACK_KEYS, "stack")
    name = ctx.name(ctx.string(stack_table.get("name", path.stem), "stack", "name"), "stack",
                    "stack", "name")
    description = ctx.string(stack_table.get("description", ""), "stack", "description")
    allow = stack_table.get("allow-outside", False)
    if not isinstance(allow, bool):
        raise ctx.error("stack.allow-outside must be true or false", "stack", "allow-outside")
    ctx.allow_outside = allow
    checks_mode = ctx.string(stack_table.get("checks", "always"), "stack", "checks")
    if checks_mode not in ("always", "never"):
        raise ctx.error(f"stack.checks must be \"always\" or \"never\", not {checks_mode!r}",
                        "stack", "checks")

    params = dict(ctx.table(data.get("parameters", {}), "parameters"))
    for k, v in params.items():
        if not isinstance(v, Scalar):
            raise ctx.error(f"parameter {k} must be a string, number or boolean", "parameters", k)

    matrix_table = ctx.table(data.get("matrix", {}), "matrix")
    matrix: dict[str, list[Any]] = {}
    for k, v in matrix_table.items():
        if not isinstance(v, list) or not v or not all(isinstance(x, Scalar) for x in v):
            raise ctx.error(f"matrix.{k} must be a non-empty list of values", "matrix", k)
        if k in params:
            raise ctx.error(f"matrix.{k} is also a parameter", "matrix", k)
        matrix[k] = list(v)
    _parse_set(overrides or {}, params, matrix, ctx)

    hosts = _parse_hosts(ctx, ctx.table(data.get("host", {}), "host"))
    site = _SiteHosts(host_files)
    repos = Repositories([*parse_refs(stack_table.get("repos", []), path.parent, str(path),
                                      ctx.index.line("stack", "repos")), *site_repos],
                         recipe_cache)
    repos.check()
    packages_raw = ctx.table(data.get("packages", {}), "packages")
    profiles_raw = ctx.table(data.get("profiles", {}), "profiles")
    uses_raw: dict[str, str] = {}
    for pname, ptable in list(packages_raw.items()):
        ctx.name(pname, "package", "packages", pname)
        ptable = ctx.table(ptable, "packages", pname)
        if "use" in ptable:  # `[packages.mpi] use = "openmpi"`: a virtual package's provider
            ctx.keys(ptable, {"use"}, "packages", pname)
            uses_raw[pname] = ctx.string(ptable["use"], "packages", pname, "use")
            del packages_raw[pname]
            continue
        ctx.keys(ptable, PACKAGE_KEYS, "packages", pname)
        if pname in hosts:
            raise ctx.error(f"package {pname} has the name of a host package", "packages", pname)
    toolchain_raw = stack_table.get("toolchain", [])
    ctx.strings(toolchain_raw, "stack", "toolchain")
    for pname, ptable in profiles_raw.items():
        ctx.name(pname, "profile", "profiles", pname)
        ctx.keys(ctx.table(ptable, "profiles", pname), PROFILE_KEYS, "profiles", pname)

    variants = []
    keys = list(matrix)
    for combo in itertools.product(*(matrix[k] for k in keys)):
        values = dict(zip(keys, combo))
        suffix = "".join(f"-{v}" for v in combo)
        context = {**params, **values, "stack": name}
        variant = Variant(values=values, suffix=suffix)
        stack_description = ctx.render(description, context, "stack", "description")
        resolver = _Resolver(ctx, variant, hosts, site, repos, context)
        resolver.choose(uses_raw, toolchain_raw)
        for pname, ptable in packages_raw.items():
            resolver.add(pname, ptable)
        resolver.complete()
        _check_references(ctx, variant, hosts)
        variant.profiles = _render_profiles(ctx, name, profiles_raw, variant, hosts, context,
                                            stack_description)
        variants.append(variant)
    _check_profile_names(ctx, variants, matrix)
    return Stack(path=path, name=name, parameters=params, hosts=hosts, variants=variants,
                 description=description, run_checks=checks_mode == "always")


def _check_profile_names(ctx: _Ctx, variants: list[Variant], matrix: dict[str, list[Any]]) -> None:
    """Profile names become directories under names/: check them (and that no two
    variants make the same one) before anything is built."""
    seen: dict[str, ProfilePlan] = {}
    for variant in variants:
        for plan in variant.profiles:
            problem = profile_name_problem(plan.name)
            if problem is not None:
                culprit = next((k for k, v in variant.values.items()
                                if profile_name_problem(f"x-{v}") is not None), None)
                if culprit is not None:
                    raise ctx.error(f"matrix value {variant.values[culprit]!r} of {culprit}"
                                    f" makes the profile name {plan.name!r}: {problem}",
                                    "matrix", culprit)
                raise UserError(f"invalid profile name {plan.name!r}: {problem}", file=ctx.file,
                                line=plan.line)
            if plan.name in seen:
                raise UserError(f"profile name {plan.name!r} is produced twice (matrix values"
                                f" {_values(seen[plan.name], variants)} and {variant.values})",
                                file=ctx.file, line=plan.line)
            seen[plan.name] = plan


def _values(plan: ProfilePlan, variants: list[Variant]) -> dict[str, Any]:
    return next(v.values for v in variants if plan in v.profiles)


_SPECIAL_TREES = ("/proc/", "/dev/", "/sys/")


def _check_program(ctx: _Ctx, program: str, *where: str) -> None:
    """A name looked up on PATH, or a plain absolute path: never `./x`, `a/../b` or a
    /proc path (`/proc/self/cwd/helper` is whatever directory hdenv runs in)."""
    plain = program.startswith("/") and os.path.normpath(program) == program \
        and not program.startswith(_SPECIAL_TREES)
    if "/" in program and not plain:
        raise ctx.error(f"{'.'.join(where)}: {program!r} must be a program name or a plain"
                        " absolute path (no '.', '..', relative or /proc, /dev, /sys paths)",
                        *where)


def _check_profile_env(ctx: _Ctx, env: Mapping[str, str], what: str, *where: str) -> None:
    """One rule for every source of a profile's environment (profile and host `env`):
    a name every shell can set, none that `load` manages or a shell owns, and a value
    every shell and `hdenv modulefiles` can write."""
    for k, v in env.items():
        problem = env_name_problem(k)
        if problem is not None:
            raise ctx.error(f"{what}.env: cannot set {k!r}: {problem}", *where, "env", k)
        problem = env_value_problem(v)
        if problem is not None:
            raise ctx.error(f"{what}.env.{k}: {problem}", *where, "env", k)


_FAMILY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_family(ctx: _Ctx, family: str, *where: str) -> None:
    """A family becomes a variable name in Lmod and Environment Modules (and a word here):
    checked when the stack is read, so a bad one never reaches `hdenv modulefiles`."""
    if not _FAMILY.match(family):
        raise ctx.error(f"family {family!r}: use letters, digits and _ (it becomes a module"
                        " family name)", *where, "family")


def _parse_hosts(ctx: _Ctx, table: dict[str, Any]) -> dict[str, HostDecl]:
    hosts = {}
    for hname, htable in table.items():
        ctx.name(hname, "host package", "host", hname)
        htable = ctx.table(htable, "host", hname)
        ctx.keys(htable, HOST_KEYS, "host", hname)
        where = ("host", hname)
        if not {"programs", "libraries", "packages", "pkgconfig"} & set(htable):
            raise ctx.error(f"host.{hname} needs 'programs' (or 'libraries', 'packages' or"
                            " 'pkgconfig')", *where)
        programs = ctx.strings(htable.get("programs", []), *where, "programs")
        for program in programs:
            _check_program(ctx, program, *where, "programs")
        libraries = ctx.strings(htable.get("libraries", []), *where, "libraries")
        packages = ctx.strings(htable.get("packages", []), *where, "packages")
        for package in packages:
            if not PACKAGE_NAME_RE.match(package):
                raise ctx.error(f"host.{hname}.packages: {package!r} is not a package name",
                                *where, "packages")
        if not programs and not libraries and not packages and not htable.get("pkgconfig"):
            raise ctx.error(f"host.{hname}.programs is empty", *where, "programs")
        family = htable.get("family")
        if family is not None:
            _check_family(ctx, ctx.string(family, *where, "family"), *where)
        version = htable.get("version")
        if version is not None:
            ctx.name(ctx.string(version, *where, "version"), "version", *where, "version")
        version_from = htable.get("version-from")
        if version_from is not None:
            ctx.string(version_from, *where, "version-from")
            names = [p.rsplit("/", 1)[-1] for p in programs]
            if version_from not in names:
                raise ctx.error(f"host.{hname}.version-from names {version_from!r}, which is not"
                                f" one of its programs ({', '.join(names) or 'none'})",
                                *where, "version-from")
            if version is not None:
                raise ctx.error(f"host.{hname}: give version or version-from, not both",
                                *where, "version-from")
        env = ctx.str_table(htable.get("env", {}), *where, "env")
        _check_profile_env(ctx, env, f"host.{hname}", *where)  # it reaches profiles too
        pkgconfig = ctx.strings(htable.get("pkgconfig", []), *where, "pkgconfig")
        for d in pkgconfig:
            if not d.startswith("/") and not PC_MODULE.match(d):
                raise ctx.error(f"host.{hname}.pkgconfig: {d!r} is neither an absolute"
                                " directory nor a pkg-config module name", *where, "pkgconfig")
        hosts[hname] = HostDecl(hname, programs, family, ctx.index.line(*where), libraries,
                                version, version_from, env, pkgconfig, packages)
    return hosts


def _render_fields(ctx: _Ctx, table: dict[str, Any], context: dict[str, Any],
                   *where: str) -> dict[str, Any]:
    """Every key of a package table (a stack's or a recipe's) that is there, rendered.

    Absent keys stay absent, so a stack's table can be laid over a recipe's:
    what the stack says wins, what it leaves out the recipe gives.
    """
    out: dict[str, Any] = {}
    if "version" in table:
        version = table["version"]
        if not isinstance(version, (str, int, float)) or isinstance(version, bool):
            raise ctx.error(f"{'.'.join(where)}.version must be a string", *where, "version")
        out["version"] = ctx.name(ctx.render(str(version), context, *where, "version"),
                                  "version", *where, "version")
    if "script" in table:
        out["script"] = ctx.render(ctx.string(table["script"], *where, "script"), context,
                                   *where, "script")
    if "env" in table:
        env = {k: ctx.render(v, context, *where, "env", k)
               for k, v in ctx.str_table(table["env"], *where, "env").items()}
        for k in env:
            if not _ENV_NAME.match(k):
                raise ctx.error(f"invalid environment variable name {k!r}", *where, "env", k)
        out["env"] = env
    for key in ("deps", "build-deps"):
        if key in table:
            out[key] = _render_deps(ctx, table[key], context, *where, key)
    if "sources" in table:
        out["sources"] = _render_sources(ctx, table["sources"], context, *where, "sources")
    if "patches" in table:
        out["patches"] = _render_patches(ctx, table["patches"], context, *where, "patches")
    if "description" in table:
        out["description"] = ctx.render(ctx.string(table["description"], *where, "description"),
                                        context, *where, "description")
    if "slurm" in table:
        out["slurm"] = _render_slurm(ctx, table["slurm"], context, *where, "slurm")
    if "check" in table or "import" in table:
        out["checks"] = _render_checks(ctx, table, context, *where)
    about = _about(ctx, table, context, *where)
    if about:
        out["about"] = about
    if "build-system" in table:
        system = ctx.string(table["build-system"], *where, "build-system")
        if system not in BUILD_SYSTEMS:
            raise ctx.error(f"build-system must be one of {', '.join(BUILD_SYSTEMS)},"
                            f" not {system!r}", *where, "build-system")
        out["build-system"] = system
    for key in (*ARG_KEYS, "provides"):
        if key in table:
            raw = table[key]
            rendered = [ctx.render(v, context, *where, key)
                        for v in ctx.strings([raw] if isinstance(raw, str) else raw,
                                             *where, key)]
            out[key] = [v for v in rendered if v]  # `{{ '' if shared else '--static' }}`
    for key in STAGE_KEYS:
        if key in table:
            out[key] = ctx.render(ctx.string(table[key], *where, key), context, *where, key)
    return out


def _render_deps(ctx: _Ctx, value: Any, context: dict[str, Any], *path: str) -> list[str]:
    """`deps = ["zlib", { name = "mpi", when = "mpi" }]`: names, conditions evaluated."""
    if not isinstance(value, list):
        raise ctx.error(f"{'.'.join(path)} must be a list of names", *path)
    names = []
    for item in value:
        if isinstance(item, dict):
            ctx.keys(item, {"name", "when"}, *path)
            name = ctx.string(item.get("name"), *path)
            if "when" in item and not ctx.condition(ctx.string(item["when"], *path), context,
                                                    *path):
                continue
            names.append(ctx.render(name, context, *path).strip())
        else:
            names.append(ctx.render(ctx.string(item, *path), context, *path).strip())
    return [n for n in names if n]  # a template may render to "" to drop a dependency


def _render_sources(ctx: _Ctx, value: Any, context: dict[str, Any],
                    *where: str) -> list[SourceDecl]:
    if not isinstance(value, list):
        raise ctx.error(f"{'.'.join(where)} must be a list of tables", *where)
    line = ctx.index.line(*where)
    sources = []
    for s in value:
        if not isinstance(s, dict):
            raise ctx.error(f"{'.'.join(where)} entries must be tables", *where)
        rendered = {k: ctx.render(v, context, *where) if isinstance(v, str) else v
                    for k, v in s.items()}
        decl = SourceDecl.from_toml(rendered, file=ctx.file, line=line)
        if decl.path is not None:
            ctx.inside(decl.path, *where)
        sources.append(decl)
    return sources


def _plan(ctx: _Ctx, pname: str, fields: dict[str, Any], line: int, sources_line: int,
          recipe: str = "") -> PackagePlan:
    where = ("packages", pname)
    if "version" not in fields:
        raise ctx.error(f"package {pname} needs a 'version'", *where)
    return PackagePlan(pname, fields["version"], fields.get("sources", []),
                       fields.get("deps", []), fields.get("build-deps", []),
                       fields.get("env", {}), fields.get("script", ""), line,
                       fields.get("patches", []), sources_line=sources_line,
                       description=fields.get("description", ""), slurm=fields.get("slurm", {}),
                       checks=fields.get("checks", []), about=fields.get("about", {}),
                       provides=fields.get("provides", []), recipe=recipe)


class _Resolver:
    """One variant's packages: the stack's own, from recipes, and what their deps pull in.

    Resolution order for a name: the stack's packages, the stack's `[host.NAME]`,
    the config's `[host.NAME]`, then the repositories (a package recipe or a host
    recipe). `[packages.V] use = "P"` makes every dependency on the virtual V a
    dependency on P; `[stack] toolchain` joins the build-deps of every package
    whose build system compiles, and its compilers are CC, CXX and FC there.
    """

    def __init__(self, ctx: _Ctx, variant: Variant, hosts: dict[str, HostDecl],
                 site: _SiteHosts, repos: Repositories, context: dict[str, Any]):
        self.ctx = ctx
        self.variant = variant
        self.hosts = hosts
        self.site = site
        self.repos = repos
        self.context = context
        self.uses: dict[str, str] = {}
        self.toolchain: list[str] = []
        self.compilers: dict[str, str] = {}
        self.recipe_ctx: dict[str, _Ctx] = {}
        self.asked_by: dict[str, str] = {}  # dependency -> a package that named it, for errors

    def choose(self, uses_raw: Mapping[str, str], toolchain_raw: list[str]) -> None:
        ctx = self.ctx
        self.uses = {v: ctx.render(u, self.context, "packages", v, "use").strip()
                     for v, u in uses_raw.items()}
        self.toolchain = _render_names(ctx, toolchain_raw, self.context, "stack", "toolchain")
        for name in self.toolchain:
            decl = self._host(name)
            if decl is not None:
                for var, program in compiler_env(decl.programs).items():
                    self.compilers.setdefault(var, program)

    def _host(self, name: str) -> HostDecl | None:
        """A host declaration for `name` from the stack, the config or a host recipe."""
        if name in self.hosts:
            return self.hosts[name]
        found = self.site.get(name)
        if found is None:
            recipe = self.repos.find(name) if self.repos else None
            if recipe is not None and recipe.is_host:
                found = _parse_hosts(self._ctx_of(recipe), {name: recipe.data["host"]})[name]
        if found is not None:
            self.hosts[name] = found
        return found

    def _ctx_of(self, recipe: Recipe) -> _Ctx:
        if recipe.file not in self.recipe_ctx:
            rctx = _Ctx(Path(recipe.file), recipe.text)
            rctx.allow_outside = False
            self.recipe_ctx[recipe.file] = rctx
        return self.recipe_ctx[recipe.file]

    def add(self, pname: str, table: dict[str, Any]) -> None:
        """A package the stack names (its table may be empty: then it is the recipe's)."""
        ctx = self.ctx
        where = ("packages", pname)
        if "when" in table and not ctx.condition(ctx.string(table["when"], *where, "when"),
                                                 self.context, *where, "when"):
            return
        stack_fields = _render_fields(ctx, table, self.context, *where)
        recipe = None
        if "script" not in table and self.repos:
            recipe = self.repos.find(pname)
            if recipe is not None and recipe.is_host:
                raise ctx.error(f"package {pname}: the recipe {recipe.file} is a host capture;"
                                f" name {pname} in deps instead of [packages.{pname}]", *where)
        if recipe is None and not table and self.repos:
            raise ctx.error(f"package {pname}: no recipe named {pname} in the repositories"
                            f" ({', '.join(r.label for r in self.repos.refs)})", *where)
        fields = stack_fields
        if recipe is not None:
            fields = self._from_recipe(recipe, pname, table, stack_fields)
        self._finish(pname, fields, "script" in stack_fields,
                     ctx.index.line(*where), ctx.index.line(*where, "sources"),
                     recipe.file if recipe else "")

    def _from_recipe(self, recipe: Recipe, pname: str, table: dict[str, Any],
                     stack_fields: dict[str, Any]) -> dict[str, Any]:
        """The recipe's fields in this variant, with the stack's laid over them."""
        ctx = self.ctx
        where = ("packages", pname)
        versions = recipe.versions
        version = stack_fields.get("version", versions[0])
        if version not in versions and "sources" not in stack_fields:
            raise ctx.error(f"package {pname}: the recipe {recipe.file} has no version"
                            f" {version} (versions: {', '.join(versions)})", *where, "version")
        params = self._parameters(recipe, pname, table)
        rctx = self._ctx_of(recipe)
        context = {**self.context, **params, "version": version, "name": pname}
        fields = _render_fields(rctx, recipe.data, context)
        fields["version"] = version
        if version in versions:
            vwhere = ("versions", version)
            vtable = recipe.version_table(version)
            patches = vtable.pop("patches", [])
            if "url" in vtable:  # release archives hold one top directory
                vtable.setdefault("strip", 1)
            url = str(vtable.get("url", ""))
            if url.endswith(".whl"):  # a wheel is installed as the file it is
                vtable["unpack"] = False
                vtable.pop("strip", None)
            fields["sources"] = _render_sources(rctx, [vtable], context, *vwhere)
            if patches:  # a patch file beside the recipe, wherever the stack is
                fields["patches"] = [
                    dataclasses.replace(p, path=str(rctx.base / p.path))
                    if p.path is not None and not os.path.isabs(p.path) else p
                    for p in _render_patches(rctx, patches, context, *vwhere, "patches")]
        for key, value in stack_fields.items():
            if key in LIST_KEYS:
                fields[key] = [*fields.get(key, []), *value]
            elif key == "env":
                fields["env"] = {**fields.get("env", {}), **value}
            else:
                fields[key] = value
        fields.setdefault("build-system", recipe.build_system)
        return fields

    def _parameters(self, recipe: Recipe, pname: str, table: dict[str, Any]) -> dict[str, Any]:
        ctx = self.ctx
        where = ("packages", pname, "parameters")
        values = {k: p.default for k, p in recipe.parameters.items()}
        chosen = ctx.table(table.get("parameters", {}), *where)
        for key, value in chosen.items():
            param: Parameter | None = recipe.parameters.get(key)
            if param is None:
                allowed = ", ".join(sorted(recipe.parameters)) or "none"
                raise ctx.error(f"package {pname}: the recipe has no parameter {key!r}"
                                f" (parameters: {allowed})", *where, key)
            problem = param.check(key, value)
            if problem:
                raise ctx.error(f"package {pname}: {problem}", *where, key)
            values[key] = value
        return values

    def _finish(self, pname: str, fields: dict[str, Any], own_script: bool, line: int,
                sources_line: int, recipe: str) -> None:
        system = fields.get("build-system", "script")
        if system != "script" and not own_script:
            wheel = next((s.filename or (s.url or "").rsplit("/", 1)[-1]
                          for s in fields.get("sources", []) if not s.unpack), None)
            fields["script"] = render_script(
                system, fields, pre_configure=fields.get("pre-configure", ""),
                post_install=fields.get("post-install", ""), wheel=wheel)
        if system in COMPILING:  # said or from the recipe, even under the stack's own script
            build_deps = fields.get("build-deps", [])
            fields["build-deps"] = [*(t for t in self.toolchain if t != pname
                                      and t not in build_deps), *build_deps]
            fields["env"] = {**self.compilers, **fields.get("env", {})}
        for key in ("deps", "build-deps"):
            fields[key] = [self.uses.get(d, d) for d in fields.get(key, [])]
            for d in fields[key]:
                self.asked_by.setdefault(d, pname)
        self.variant.packages[pname] = _plan(self.ctx, pname, fields, line, sources_line,
                                             recipe)

    def complete(self) -> None:
        """Pull in, from config and repositories, what the packages name but the stack lacks."""
        pending = [d for plan in list(self.variant.packages.values())
                   for d in plan.deps + plan.build_deps]
        while pending:
            name = pending.pop()
            if name in self.variant.packages or self._host(name) is not None:
                continue
            recipe = self.repos.find(name) if self.repos else None
            if recipe is None:
                providers = self.repos.providers(name) if self.repos else []
                if providers:
                    asker = self.asked_by.get(name, name)
                    raise self.ctx.error(
                        f"package {asker} needs {name}, a virtual package provided by"
                        f" {', '.join(providers)}: choose one with [packages.{name}]"
                        f" use = \"{providers[0]}\"", "packages", asker)
                continue  # _check_references names it
            self._finish_recipe(name, recipe)
            plan = self.variant.packages[name]
            pending.extend(plan.deps + plan.build_deps)
        self._check_uses()

    def _finish_recipe(self, name: str, recipe: Recipe) -> None:
        fields = self._from_recipe(recipe, name, {}, {})
        rctx = self._ctx_of(recipe)
        self._finish(name, fields, False, self.ctx.index.line("packages"),
                     rctx.index.line("versions"), recipe.file)

    def _check_uses(self) -> None:
        for virtual, provider in self.uses.items():
            where = ("packages", virtual, "use")
            if provider in self.variant.packages:
                if virtual in self.variant.packages[provider].provides:
                    continue
            elif self._host(provider) is not None:
                decl = self.hosts[provider]
                recipe = self.repos.find(provider) if self.repos else None
                if decl.family == virtual or (recipe is not None and virtual in recipe.provides):
                    continue
            else:
                recipe = self.repos.find(provider) if self.repos else None
                if recipe is None:
                    raise self.ctx.error(f"packages.{virtual}.use: no package, host or recipe"
                                         f" named {provider!r}", *where)
                if virtual in recipe.provides:
                    continue  # provides, but nothing asked for it in this variant
            providers = self.repos.providers(virtual) if self.repos else []
            hint = f" (providers: {', '.join(providers)})" if providers else ""
            raise self.ctx.error(f"packages.{virtual}.use: {provider} does not provide"
                                 f" {virtual}{hint}", *where)


def _about(ctx: _Ctx, table: dict[str, Any], context: dict[str, Any],
           *where: str) -> dict[str, str]:
    """`help` and `homepage`: what `hdenv help` shows; beside the spec, never in it.
    A profile's `hidden = true` too: avail, spider and completion leave it out."""
    about: dict[str, str] = {
        key: ctx.render(ctx.string(table[key], *where, key), context, *where, key)
        for key in ("help", "homepage") if key in table}
    hidden = table.get("hidden", False)
    if not isinstance(hidden, bool):
        raise ctx.error(f"{'.'.join(where)}.hidden must be true or false", *where, "hidden")
    if hidden:
        about["hidden"] = "true"
    return about


_IMPORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _render_checks(ctx: _Ctx, table: dict[str, Any], context: dict[str, Any],
                   *where: str) -> list[str]:
    """`check = ["make check", ...]` and `import = ["yaml", "yaml._yaml"]` as shell commands.

    An import check runs `python3 -c 'import X'` with the package's runtime
    environment, which catches a build that quietly fell back to pure Python.
    """
    raw = table.get("check", [])
    checks = [raw] if isinstance(raw, str) else raw
    out = [ctx.render(c, context, *where, "check")
           for c in ctx.strings(checks, *where, "check")]
    for module in ctx.strings(table.get("import", []), *where, "import"):
        module = ctx.render(module, context, *where, "import")
        if not _IMPORT_NAME.match(module):
            raise ctx.error(f"import: {module!r} is not a Python module name", *where, "import")
        out.append(f"python3 -c 'import {module}'")
    return out


def _render_patches(ctx: _Ctx, value: Any, context: dict[str, Any], *path: str) -> list[SourceDecl]:
    """`patches = ["file.patch", { url = ..., sha256 = ... }]`: files are relative to the stack."""
    if not isinstance(value, list):
        raise ctx.error(f"{'.'.join(path)} must be a list of files or tables", *path)
    line = ctx.index.line(*path)
    out = []
    for item in value:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            raise ctx.error(f"{'.'.join(path)} entries must be file names or tables", *path)
        rendered = {k: ctx.render(v, context, *path) if isinstance(v, str) else v
                    for k, v in item.items()}
        bad = sorted(set(rendered) - {"path", "url", "sha256", "filename"})
        if bad:
            raise ctx.error(f"{'.'.join(path)}: unknown key(s) {', '.join(bad)} in a patch"
                            " (a patch is a file name, { path }, or { url, sha256 })", *path)
        decl = SourceDecl.from_toml(rendered, file=ctx.file, line=line)
        if decl.path is not None:
            ctx.inside(decl.path, *path)
        out.append(decl)
    return out


def _render_slurm(ctx: _Ctx, value: Any, context: dict[str, Any], *where: str) -> dict[str, Any]:
    """`slurm = { cpus = 8, time = "2:00:00" }`: what a batch job asks for, not what is built.

    It stays out of the spec, so giving a package more cores or time on the
    cluster never changes its id. Only the types are checked here; which
    options Slurm accepts is the cluster executor's business.
    """
    table = ctx.table(value, *where)
    ctx.keys(table, SLURM_KEYS, *where)
    out: dict[str, Any] = {}
    if "cpus" in table:
        cpus = table["cpus"]
        if isinstance(cpus, str):
            cpus = ctx.render(cpus, context, *where, "cpus").strip()
            cpus = int(cpus) if cpus.isascii() and cpus.isdigit() else cpus
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise ctx.error(f"{'.'.join(where)}.cpus must be a whole number of at least 1",
                            *where, "cpus")
        out["cpus"] = cpus
    for key in ("time", "mem"):
        if key in table:
            text = ctx.render(ctx.string(table[key], *where, key), context, *where, key).strip()
            if text:
                out[key] = text
    if "options" in table:
        out["options"] = [ctx.render(o, context, *where, "options")
                          for o in ctx.strings(table["options"], *where, "options")]
    return out


def _render_names(ctx: _Ctx, value: Any, context: dict[str, Any], *path: str) -> list[str]:
    names = [ctx.render(v, context, *path).strip() for v in ctx.strings(value, *path)]
    return [n for n in names if n]  # a template may render to "" to drop a dependency


def _check_references(ctx: _Ctx, variant: Variant, hosts: dict[str, HostDecl]) -> None:
    """Every dependency names a package of this variant or a host package; no cycles."""
    for plan in variant.packages.values():
        for kind, names in (("deps", plan.deps), ("build-deps", plan.build_deps)):
            for dep in names:
                if dep not in variant.packages and dep not in hosts:
                    raise ctx.error(f"package {plan.name}: unknown dependency '{dep}' in {kind}",
                                    "packages", plan.name, kind)
                if dep == plan.name:
                    raise ctx.error(f"package {plan.name} depends on itself",
                                    "packages", plan.name, kind)
    # cycle detection, without recursion (a chain may be thousands deep)
    def deps_of(name: str) -> list[str]:
        plan = variant.packages[name]
        return [d for d in plan.deps + plan.build_deps if d in variant.packages]

    try:
        variant.order = postorder(variant.packages, deps_of)
    except Cycle as e:
        raise ctx.error(f"dependency cycle: {' -> '.join(map(str, e.path))}", "packages",
                        str(e.path[-1])) from None


def _render_profiles(ctx: _Ctx, stack_name: str, raw: dict[str, Any], variant: Variant,
                     hosts: dict[str, HostDecl], context: dict[str, Any],
                     stack_description: str = "") -> list[ProfilePlan]:
    profile_context = {**context, "profile": PROFILE_PLACEHOLDER}
    if not raw:
        return [ProfilePlan(stack_name + variant.suffix, list(variant.packages), {}, None, [], [],
                            ctx.index.line("stack"), stack_description)]
    plans = []
    for pname, table in raw.items():
        where = ("profiles", pname)
        if "when" in table and not ctx.condition(ctx.string(table["when"], *where, "when"),
                                                 context, *where, "when"):
            continue
        packages = _render_names(ctx, table.get("packages", list(variant.packages)), context,
                                 *where, "packages")
        for p in packages:
            if p not in variant.packages and p not in hosts:
                raise ctx.error(f"profile {pname}: unknown package '{p}'", *where, "packages")
        env = {k: ctx.render(v, profile_context, *where, "env", k)
               for k, v in ctx.str_table(table.get("env", {}), *where, "env").items()}
        _check_profile_env(ctx, env, f"profiles.{pname}", *where)
        family = table.get("family")
        if family is not None:
            family = ctx.render(ctx.string(family, *where, "family"), context, *where, "family")
            _check_family(ctx, family, *where)
        exclude = ctx.strings(table.get("exclude", []), *where, "exclude")
        priority = _render_names(ctx, table.get("priority", []), context, *where, "priority")
        described = ctx.render(ctx.string(table.get("description", ""), *where, "description"),
                               context, *where, "description") or stack_description
        python_usage = table.get("python-usage", False)
        if not isinstance(python_usage, bool):
            raise ctx.error(f"profiles.{pname}.python-usage must be true or false", *where,
                            "python-usage")
        sticky = table.get("sticky", False)
        if not isinstance(sticky, bool):
            raise ctx.error(f"profiles.{pname}.sticky must be true or false", *where, "sticky")
        plans.append(ProfilePlan(pname + variant.suffix, packages, env, family or None, exclude,
                                 priority, ctx.index.line(*where), described,
                                 python_usage=python_usage, sticky=sticky,
                                 about=_about(ctx, table, context, *where)))
    return plans

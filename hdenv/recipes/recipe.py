"""One recipe (`NAME.toml` in a repository): read, checked, and nothing rendered yet.

A recipe says what a package is (description, versions with their hashes,
dependencies, parameters, build system and its arguments); a stack chooses
among recipes. Templates (`{{ version }}`, `{{ shared }}`) stay unrendered
here: the stack reader renders them in the stack's context, which is where
the values come from. Every problem is one line naming the recipe file and
the line of the key, as for a stack file, and found before anything builds.

A recipe with a `[host]` table is a host capture instead (gcc, cmake, Open
MPI): the table is a stack's `[host.NAME]` declaration, shared by every stack
that uses the repository.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..store.variants import version_key
from ..tomlfile import LineIndex, parse

BUILD_SYSTEMS = ("autotools", "cmake", "meson", "make", "python", "script")
ARG_KEYS = ("configure-args", "cmake-args", "meson-args", "make-args", "install-args")
STAGE_KEYS = ("pre-configure", "post-install")
RECIPE_KEYS = {"description", "homepage", "help", "build-system", "versions", "deps",
               "build-deps", "provides", "parameters", "env", "script", "check", "import",
               "slurm", "host", *ARG_KEYS, *STAGE_KEYS}
HOST_RECIPE_KEYS = {"description", "homepage", "help", "host", "provides"}
VERSION_KEYS = {"url", "sha256", "git", "commit", "strip", "filename", "patches"}
PARAMETER_KEYS = {"default", "values", "description"}
RECIPE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
Scalar = (str, int, float, bool)


@dataclass
class Parameter:
    """A recipe's own variant (Spack's `variant`): a default and, optionally, the values allowed."""

    default: Any
    values: list[Any] = field(default_factory=list)
    description: str = ""

    def check(self, name: str, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if self.values and value not in self.values:
            allowed = ", ".join(str(v) for v in self.values)
            return f"parameter {name} cannot be {value!r} (allowed: {allowed})"
        if not self.values and type(value) is not type(self.default):
            return (f"parameter {name} must be a {type(self.default).__name__}"
                    f" like its default {self.default!r}")
        return None


@dataclass
class Dependency:
    name: str
    when: str | None = None  # a condition on the recipe's parameters and the stack's values


@dataclass
class Recipe:
    """A checked recipe. `file` names it in errors (a path, or URL@commit:path)."""

    name: str
    file: str
    text: str
    origin: str  # the repository, as `recipes` lists it
    data: dict[str, Any]
    parameters: dict[str, Parameter] = field(default_factory=dict)
    deps: list[Dependency] = field(default_factory=list)
    build_deps: list[Dependency] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = LineIndex(self.text)

    def error(self, message: str, *path: str) -> UserError:
        return UserError(message, file=self.file, line=self.index.line(*path))

    @property
    def is_host(self) -> bool:
        return "host" in self.data

    @property
    def build_system(self) -> str:
        if self.is_host:
            return "host"
        return str(self.data.get("build-system", "script"))

    @property
    def description(self) -> str:
        return str(self.data.get("description", ""))

    @property
    def provides(self) -> list[str]:
        return list(self.data.get("provides", []))

    @property
    def versions(self) -> list[str]:
        """Newest first: the first is the default."""
        return sorted(self.data.get("versions", {}), key=version_key, reverse=True)

    def version_table(self, version: str) -> dict[str, Any]:
        return dict(self.data["versions"][version])


def parse_recipe(name: str, text: str, file: str, origin: str) -> Recipe:
    """Check a recipe's keys and types; the first problem is one line at FILE:LINE."""
    data = parse(text, file)
    recipe = Recipe(name=name, file=file, text=text, origin=origin, data=data)
    if not RECIPE_NAME_RE.match(name):
        raise recipe.error(f"invalid recipe name {name!r} (the file's name without .toml)")
    _Checker(recipe).check()
    return recipe


class _Checker:
    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.data = recipe.data

    def fail(self, message: str, *path: str) -> UserError:
        return self.recipe.error(message, *path)

    def keys(self, table: Mapping[str, Any], allowed: set[str], *path: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"in [{'.'.join(path)}]" if path else "in a recipe"
                raise self.fail(f"unknown key '{key}' {where} (allowed:"
                                f" {', '.join(sorted(allowed))})", *path, key)

    def string(self, key: str, *path: str) -> None:
        table = self.data
        for p in path:
            table = table[p]
        if key in table and not isinstance(table[key], str):
            raise self.fail(f"{'.'.join((*path, key))} must be a string", *path, key)

    def strings(self, value: Any, *path: str) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{'.'.join(path)} must be a list of strings", *path)
        return list(value)

    def check(self) -> None:
        if "host" in self.data:
            self.keys(self.data, HOST_RECIPE_KEYS)
            if not isinstance(self.data["host"], dict):
                raise self.fail("host must be a table like a stack's [host.NAME]", "host")
        else:
            self.keys(self.data, RECIPE_KEYS)
        for key in ("description", "homepage", "help", "build-system", "script",
                    *STAGE_KEYS):
            self.string(key)
        system = self.data.get("build-system", "script")
        if system not in BUILD_SYSTEMS:
            raise self.fail(f"build-system must be one of {', '.join(BUILD_SYSTEMS)},"
                            f" not {system!r}", "build-system")
        if system == "script" and "versions" in self.data and "script" not in self.data:
            raise self.fail("a recipe needs build-system = \"...\" or a script",
                            "build-system")
        for key in (*ARG_KEYS, "provides", "check", "import"):
            if key in self.data:
                self.data[key] = self.strings(self.data[key], key)
        if "env" in self.data:
            env = self.data["env"]
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                raise self.fail("env must be a table of strings", "env")
        self.recipe.parameters = self.parameters()
        self.recipe.deps = self.dependencies("deps")
        self.recipe.build_deps = self.dependencies("build-deps")
        if "host" not in self.data:
            self.versions()

    def parameters(self) -> dict[str, Parameter]:
        raw = self.data.get("parameters", {})
        if not isinstance(raw, dict):
            raise self.fail("parameters must be a table", "parameters")
        out = {}
        for pname, value in raw.items():
            where = ("parameters", pname)
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", pname):
                raise self.fail(f"parameter name {pname!r} must be an identifier", *where)
            if isinstance(value, Scalar):
                out[pname] = Parameter(default=value)
                continue
            if not isinstance(value, dict):
                raise self.fail(f"parameters.{pname} must be a value or a table with"
                                " default = ..., values = [...]", *where)
            self.keys(value, PARAMETER_KEYS, *where)
            if "default" not in value or not isinstance(value["default"], Scalar):
                raise self.fail(f"parameters.{pname} needs a default (a string, number or"
                                " boolean)", *where)
            values = value.get("values", [])
            if not isinstance(values, list) or not all(isinstance(v, Scalar) for v in values):
                raise self.fail(f"parameters.{pname}.values must be a list of values", *where)
            param = Parameter(value["default"], list(values), str(value.get("description", "")))
            problem = param.check(pname, param.default)
            if problem:
                raise self.fail(f"{problem}: its default is not among its values", *where)
            out[pname] = param
        return out

    def dependencies(self, key: str) -> list[Dependency]:
        raw = self.data.get(key, [])
        if not isinstance(raw, list):
            raise self.fail(f"{key} must be a list of names or {{ name = ..., when = ... }}",
                            key)
        out = []
        for item in raw:
            if isinstance(item, str):
                out.append(Dependency(item))
            elif isinstance(item, dict):
                self.keys(item, {"name", "when"}, key)
                if not isinstance(item.get("name"), str) or not isinstance(
                        item.get("when", ""), str):
                    raise self.fail(f"{key}: {{ name = \"...\", when = \"...\" }} takes"
                                    " strings", key)
                out.append(Dependency(item["name"], item.get("when")))
            else:
                raise self.fail(f"{key} entries must be names or tables, not {item!r}", key)
        return out

    def versions(self) -> None:
        versions = self.data.get("versions")
        if not isinstance(versions, dict) or not versions:
            raise self.fail('a recipe needs at least one [versions."X.Y"] table with url and'
                            " sha256 (or git and commit)", "versions")
        for version, table in versions.items():
            where = ("versions", version)
            if not RECIPE_NAME_RE.match(version):
                raise self.fail(f"invalid version {version!r}", *where)
            if not isinstance(table, dict):
                raise self.fail(f'versions."{version}" must be a table', *where)
            self.keys(table, VERSION_KEYS, *where)
            if "url" in table and "sha256" not in table:
                raise self.fail(f'versions."{version}" has a url without sha256 (the hash is'
                                " the source's identity)", *where)
            if "git" in table and "commit" not in table:
                raise self.fail(f'versions."{version}" has git without commit = "<40 hex>"',
                                *where)
            if "url" not in table and "git" not in table:
                raise self.fail(f'versions."{version}" needs url + sha256 or git + commit',
                                *where)

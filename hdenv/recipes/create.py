"""`hdenv create`: a first recipe from a release archive (Spack's `spack create`).

The archive is stored (so the recipe's sha256 is what the store holds),
unpacked into a scratch directory, and its build files read: `configure`
(autotools), `CMakeLists.txt` (cmake), `meson.build`, `pyproject.toml` or
`setup.py` (python), a `Makefile` (make), a wheel (python, installed as the
file). Dependencies are guessed from what the build files ask for (CMake's
`find_package`, autoconf's `PKG_CHECK_MODULES`/`AC_CHECK_LIB`, meson's
`dependency()`, a pyproject's `dependencies`); a guess becomes a dependency
only when a repository has a recipe (or a provider) of that name, the rest is
left in a comment for the author, so the written recipe builds as it is for a
plain package instead of failing on a name nobody defined.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..store import archive
from ..store.sources import SourceStore
from .recipe import RECIPE_NAME_RE, parse_recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ARCHIVE_NAME = re.compile(
    r"^(?P<name>.+?)-(?P<version>v?\d[A-Za-z0-9.+_]*)"
    r"(?P<ext>\.tar\.gz|\.tgz|\.tar\.bz2|\.tbz2|\.tar\.xz|\.txz|\.tar|\.zip)$")
WHEEL_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-.+\.whl$")

# what build files call a library -> the recipe that gives it
KNOWN_NAMES = {
    "z": "zlib", "zlib": "zlib", "png": "libpng", "png16": "libpng", "libpng": "libpng",
    "yaml": "libyaml", "yaml-0.1": "libyaml", "libyaml": "libyaml", "json-c": "json-c",
    "lua": "lua", "mpi": "mpi", "hdf5": "hdf5", "python3": "python", "python": "python",
    "pythoninterp": "python", "python3interp": "python", "pythonlibs": "python",
}
# what build files ask for that is not a package (CMake's own modules, the compiler, libc)
NOT_PACKAGES = frozenset({
    "threads", "pkgconfig", "m", "c", "dl", "pthread", "rt", "doxygen", "gtest", "git",
    "cmakepackageconfighelpers", "gnuinstalldirs", "checkincludefile", "checksymbolexists",
    "setuptools", "wheel", "cython",
})


@dataclass
class Detected:
    """What the archive says about itself."""

    build_system: str
    strip: int = 1
    mentioned: list[str] = field(default_factory=list)  # dependency names, as recipes


def split_name(filename: str) -> tuple[str, str]:
    """(name, version) from a release file name: `hello-2.10.tar.gz`, a wheel's name."""
    match = WHEEL_NAME.match(filename) or ARCHIVE_NAME.match(filename)
    if match is None:
        raise UserError(f"cannot read a name and version from {filename!r}: give --name and"
                        " --version")
    name = match.group("name").lower().replace("_", "-")
    version = match.group("version").removeprefix("v")
    return name, version


def detect(tree: Path, is_wheel: bool) -> Detected:
    """The build system and the dependencies the build files name."""
    if is_wheel:
        return Detected("python", strip=0, mentioned=["python"])
    entries = [e for e in os.listdir(tree) if not e.startswith(".")]
    top = tree
    strip = 0
    if len(entries) == 1 and (tree / entries[0]).is_dir():
        top, strip = tree / entries[0], 1
    found = {e for e in os.listdir(top)}
    if "configure" in found:
        system = "autotools"
    elif "CMakeLists.txt" in found:
        system = "cmake"
    elif "meson.build" in found:
        system = "meson"
    elif "pyproject.toml" in found or "setup.py" in found:
        system = "python"
    elif found & {"Makefile", "makefile", "GNUmakefile"}:
        system = "make"
    else:
        raise UserError("cannot tell the build system: the archive has no configure,"
                        " CMakeLists.txt, meson.build, pyproject.toml, setup.py or Makefile")
    return Detected(system, strip, _mentioned(top, system))


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return ""


def _mentioned(top: Path, system: str) -> list[str]:
    names: list[str] = []
    if system == "cmake":
        text = _read(top / "CMakeLists.txt")
        names += re.findall(r"find_package\s*\(\s*([A-Za-z0-9_.+-]+)", text, re.I)
        names += re.findall(r"pkg_check_modules\s*\(\s*\w+\s+(?:REQUIRED\s+)?([\w.+-]+)", text)
    if system in ("autotools", "cmake"):
        text = _read(top / "configure.ac") or _read(top / "configure.in")
        names += re.findall(r"PKG_CHECK_MODULES\(\s*\[?\w+\]?\s*,\s*\[?([\w.+-]+)", text)
        names += re.findall(r"AC_CHECK_LIB\(\s*\[?([\w.+-]+)", text)
    if system == "meson":
        names += re.findall(r"dependency\s*\(\s*'([\w.+-]+)'", _read(top / "meson.build"))
    if system == "python":
        names.append("python")
        try:
            project = tomllib.loads(_read(top / "pyproject.toml")).get("project", {})
        except tomllib.TOMLDecodeError:
            project = {}
        for requirement in project.get("dependencies", []) if isinstance(project, dict) else []:
            if isinstance(requirement, str):
                m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
                if m:
                    names.append(m.group(1))
    out: list[str] = []
    for raw in names:
        key = raw.lower()
        if key in NOT_PACKAGES:
            continue
        name = KNOWN_NAMES.get(key, key.replace("_", "-"))
        if name not in out:
            out.append(name)
    return out


def _version_table(version: str, url: str, sha256: str, strip: int) -> str:
    text = f'\n[versions."{version}"]\nurl = "{_toml_str(url)}"\nsha256 = "{sha256}"\n'
    if strip != 1 and not url.endswith(".whl"):
        text += f"strip = {strip}\n"
    return text


def _toml_str(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def recipe_text(name: str, version: str, url: str, sha256: str, found: Detected,
                known: Callable[[str], bool]) -> str:
    """The recipe as a person would start it: what was detected, guesses marked."""
    deps = [d for d in found.mentioned if known(d)]
    unknown = [d for d in found.mentioned if not known(d)]
    lines = [f'description = "{_toml_str(name)} {_toml_str(version)}'
             ' (written by hdenv create: say what it is)"',
             f'build-system = "{found.build_system}"']
    if deps:
        lines.append("deps = [" + ", ".join(f'"{d}"' for d in deps) + "]")
    tool = {"cmake": "cmake", "meson": "meson"}.get(found.build_system)
    if tool:
        lines.append(f'build-deps = ["{tool}"]')
    if unknown:
        lines.append("# the build files also name, with no recipe in the repositories: "
                     + ", ".join(unknown))
    return "\n".join(lines) + "\n" + _version_table(version, url, sha256, found.strip)


def _as_url(where: str) -> str:
    if "://" in where:
        return where
    return "file://" + str(Path(where).expanduser().absolute())


@dataclass
class Created:
    path: Path
    name: str
    version: str
    build_system: str
    added_version: bool = False


def create(open_sources: Callable[[], SourceStore], where: str, repo: Path, *,
           name: str | None = None, version: str | None = None,
           known: Callable[[str], bool] = lambda _n: False) -> Created:
    """Store `where` (a URL or a file), detect, and write `repo/NAME.toml` (or add a version).

    `open_sources` makes the store only once the input has passed its checks: a
    file that is not an archive leaves no store behind.
    """
    filename = where.rstrip("/").rsplit("/", 1)[-1]
    if "://" not in where:
        local = Path(where).expanduser()
        if not local.is_file():
            raise UserError(f"no such file: {where}")
        if not filename.endswith(".whl") and archive.detect_format(local) == "file":
            raise UserError(f"{where} is not an archive (tar, tar.gz, tar.bz2, tar.xz, zip"
                            " or a wheel)")
    guessed_name, guessed_version = split_name(filename) if not (name and version) else \
        (name, version)
    name = (name or guessed_name)
    version = version or guessed_version
    if not RECIPE_NAME_RE.match(name) or not RECIPE_NAME_RE.match(version):
        raise UserError(f"{name!r} / {version!r} cannot name a recipe and its version")
    path = repo / f"{name}.toml"
    existing = path.read_text(encoding="utf-8") if path.is_file() else None
    if existing is not None:
        recipe = parse_recipe(name, existing, str(path), str(repo))
        if version in recipe.versions:
            raise UserError(f"{path} already has version {version}")
    sources = open_sources()
    key = sources.fetch(_as_url(where))
    sha256 = key.removeprefix("sha256:")
    stored = sources.sha_dir / sha256
    is_wheel = filename.endswith(".whl")
    if not is_wheel and archive.detect_format(stored) == "file":
        raise UserError(f"{where} is not an archive (tar, tar.gz, tar.bz2, tar.xz, zip or a"
                        " wheel)")
    with tempfile.TemporaryDirectory(prefix="hdenv-create-") as scratch:
        if not is_wheel:
            archive.unpack(stored, Path(scratch) / "src")
        found = detect(Path(scratch) / "src", is_wheel)
    url = _as_url(where)
    if existing is not None:
        text = existing.rstrip("\n") + "\n" + _version_table(version, url, sha256, found.strip)
        parse_recipe(name, text, str(path), str(repo))
        _write(path, text)
        return Created(path, name, version, found.build_system, added_version=True)
    text = recipe_text(name, version, url, sha256, found, known)
    parse_recipe(name, text, str(path), str(repo))  # what hdenv writes, hdenv must read
    repo.mkdir(parents=True, exist_ok=True)
    _write(path, text)
    return Created(path, name, version, found.build_system)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def known_names(names: Iterable[str], provided: Iterable[str]) -> Callable[[str], bool]:
    """A `known` for `create`: recipe names and virtual packages the repositories offer."""
    pool = set(names) | set(provided)
    return lambda name: name in pool

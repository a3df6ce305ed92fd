"""`hdenv import`: pinned Python requirements -> `python` recipes (and a stack naming them).

Two inputs, both pinned by hash, which is what makes them fit a store whose
sources are named by content:

- PEP 751 `pylock.toml`: each `[[packages]]` names its files (`sdist`,
  `wheels`) with URL and sha256. A pure-Python wheel (`py3-none-any`) is
  taken when there is one (installed as the file), else the sdist (built).
- `requirements.txt` with `name==version --hash=sha256:...` lines (pip's
  hash-checking mode): it names hashes, not files, so the file is looked for
  in the local mirrors (`HDENV_MIRRORS`, config `mirrors`) by its name and
  checked against the hashes; a pin with no such file is an error naming it.

Every recipe builds with the host Python (`deps = ["python"]`) and nothing
reaches the network at build time: sources come from the store or the mirrors.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([A-Za-z0-9.+!_-]+)")
HASH = re.compile(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})")
PYPI_FILES = "https://files.pythonhosted.org/packages"


@dataclass
class Pinned:
    """One requirement with the file chosen for it."""

    name: str  # the recipe's name: PEP 503-normalised
    version: str
    url: str
    sha256: str
    filename: str
    line: int


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path, mirrors: Sequence[str]) -> list[Pinned]:
    """The pins of a pylock.toml or a hashed requirements.txt, each with its file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if path.name == "pylock.toml" or re.match(r"^pylock\.[^.]+\.toml$", path.name):
        return _pylock(path, text)
    return _requirements(path, text, mirrors)


def _pylock(path: Path, text: str) -> list[Pinned]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"invalid TOML: {e}", file=str(path)) from None
    packages = data.get("packages")
    if not isinstance(packages, list) or not packages:
        raise UserError("a pylock.toml needs [[packages]] entries", file=str(path))
    out = []
    for index, package in enumerate(packages, start=1):
        if not isinstance(package, dict) or not isinstance(package.get("name"), str) \
                or not isinstance(package.get("version"), str):
            raise UserError(f"packages entry {index} needs name and version", file=str(path))
        chosen = _choose_file(package)
        if chosen is None:
            raise UserError(f"{package['name']} {package['version']}: no sdist or pure-Python"
                            " wheel with a url and a sha256 hash", file=str(path))
        url, sha, filename = chosen
        out.append(Pinned(normalise(package["name"]), package["version"], url, sha.lower(),
                          filename, 0))
    return out


def _choose_file(package: dict[str, Any]) -> tuple[str, str, str] | None:
    candidates = []
    for wheel in package.get("wheels", []) or []:
        if isinstance(wheel, dict):
            candidates.append((0, wheel))
    if isinstance(package.get("sdist"), dict):
        candidates.append((1, package["sdist"]))
    for _rank, entry in sorted(candidates, key=lambda c: c[0]):
        url = entry.get("url")
        sha = (entry.get("hashes") or {}).get("sha256") if isinstance(entry.get("hashes"),
                                                                      dict) else None
        if not isinstance(url, str) or not isinstance(sha, str):
            continue
        given = entry.get("name")
        filename = given if isinstance(given, str) else url.rsplit("/", 1)[-1]
        if filename.endswith(".whl") and not filename.endswith("-none-any.whl"):
            continue  # a platform wheel would tie the recipe to one machine
        return url, sha, filename
    return None


def _requirements(path: Path, text: str, mirrors: Sequence[str]) -> list[Pinned]:
    logical: list[tuple[int, str]] = []
    start, buffer = 0, ""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not buffer:
            start = lineno
        stripped = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        if buffer.strip():
            logical.append((start, buffer))
        buffer = ""
    out = []
    files = _mirror_files(mirrors)
    for lineno, line in logical:
        if line.lstrip().startswith("-"):
            continue  # pip options (--index-url, -r): nothing here to pin
        pin = PIN.match(line)
        if pin is None:
            raise UserError(f"not a pinned requirement (NAME==VERSION --hash=sha256:...):"
                            f" {line.strip()[:80]!r}", file=str(path), line=lineno)
        hashes = {h.lower() for h in HASH.findall(line)}
        if not hashes:
            raise UserError(f"{pin.group(1)}=={pin.group(2)} has no --hash=sha256:...: a pin"
                            " without a hash cannot name a source", file=str(path), line=lineno)
        name, version = normalise(pin.group(1)), pin.group(2)
        found = _find_in_mirrors(files, name, version, hashes)
        if found is None:
            raise UserError(f"{pin.group(1)}=={version}: no file with a listed hash in the"
                            f" mirrors ({', '.join(mirrors) or 'none configured'}); a"
                            " pylock.toml names files by URL", file=str(path), line=lineno)
        filename, sha = found
        kind = "py3" if filename.endswith(".whl") else "source"
        url = f"{PYPI_FILES}/{kind}/{name[0]}/{pin.group(1)}/{filename}"
        out.append(Pinned(name, version, url, sha, filename, lineno))
    return out


def _mirror_files(mirrors: Sequence[str]) -> list[Path]:
    out = []
    for mirror in mirrors:
        local = mirror.removeprefix("file://")
        if "://" in local or not os.path.isdir(local):
            continue
        out += [Path(local) / n for n in sorted(os.listdir(local))]
    return out


def _find_in_mirrors(files: list[Path], name: str, version: str,
                     hashes: set[str]) -> tuple[str, str] | None:
    """A mirror file of `name` `version` (wheel first) whose sha256 is listed."""
    def flat(text: str) -> str:  # `MarkupSafe-2.1.5.tar.gz` and `markupsafe`, `2.1.5` alike
        return re.sub(r"[-_.]+", "_", text.lower())

    prefix = f"{flat(name)}_{flat(version)}_"
    matches = [f for f in files if flat(f.name).startswith(prefix)]
    for f in sorted(matches, key=lambda f: not f.name.endswith(".whl")):
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        if sha in hashes:
            return f.name, sha
    return None


def recipe_text(pin: Pinned) -> str:
    esc = pin.url.replace("\\", "\\\\").replace('"', '\\"')
    filename = ""
    if pin.filename != pin.url.rsplit("/", 1)[-1]:
        filename = f'filename = "{pin.filename}"\n'
    return (f'description = "{pin.name} {pin.version} (imported from pinned requirements)"\n'
            'build-system = "python"\ndeps = ["python"]\n\n'
            f'[versions."{pin.version}"]\nurl = "{esc}"\n{filename}sha256 = "{pin.sha256}"\n')


def stack_text(name: str, repo: str, pins: Sequence[Pinned]) -> str:
    packages = "".join(f"[packages.{p.name}]\n" for p in pins)
    return (f'[stack]\nname = "{name}"\nrepos = ["{repo}", "builtin"]\ntoolchain = ["gcc"]\n\n'
            f'{packages}\n[profiles.{name}]\npackages = ['
            + ", ".join(f'"{p.name}"' for p in pins) + ', "python"]\n')


def write_import(pins: Sequence[Pinned], repo: Path, stack: Path | None, name: str) -> list[Path]:
    """The recipes (one per pin, replacing an older import's), and the stack if asked."""
    repo.mkdir(parents=True, exist_ok=True)
    written = []
    for pin in pins:
        path = repo / f"{pin.name}.toml"
        path.write_text(recipe_text(pin), encoding="utf-8")
        written.append(path)
    if stack is not None:
        rel = os.path.relpath(repo.absolute(), stack.absolute().parent)
        stack.write_text(stack_text(name, rel, pins), encoding="utf-8")
        written.append(stack)
    return written

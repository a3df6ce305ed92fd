"""Recipe repositories: directories of `NAME.toml`, or a git repository at a pinned commit.

A stack names its repositories in `[stack] repos = [...]`; config `repos`
adds site repositories after them. The first repository holding a recipe
wins. A git repository is read at the commit the stack pins, never at a
branch: a later commit of the same repository changes nothing until the pin
moves, which is what keeps a stack's ids stable. Its objects are kept in one
bare repository per URL under the user's cache directory, fetched only when
the pinned commit is not there yet.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import UserError
from ..resources import data_dir
from .recipe import Recipe, parse_recipe

HEX40 = re.compile(r"^[0-9a-f]{40}$")
BUILTIN = "builtin"
MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of TOML; a bigger file is a mistake


@dataclass(frozen=True)
class RepoRef:
    """Where recipes come from. `file`/`line`: where it was named, for errors."""

    path: Path | None = None
    git: str | None = None
    commit: str | None = None
    subdir: str = ""
    file: str | None = None
    line: int | None = None

    @property
    def label(self) -> str:
        if self.git is not None:
            return f"{self.git}@{(self.commit or '')[:12]}" + (f":{self.subdir}"
                                                             if self.subdir else "")
        return str(self.path)


def builtin_repo() -> Path:
    """The recipes that come with hdenv (`repos = ["builtin"]`)."""
    return data_dir("recipes")


def parse_refs(values: Any, base: Path, file: str, line: int) -> list[RepoRef]:
    """`repos = ["dir", { git = URL, commit = HEX, path = "sub" }, "builtin"]`, checked.

    Relative directories are taken from `base` (the stack's or the config file's
    directory), so a stack and its repository travel together.
    """
    def fail(message: str) -> UserError:
        return UserError(message, file=file, line=line)

    if not isinstance(values, list):
        raise fail("repos must be a list of directories or { git = ..., commit = ... } tables")
    refs = []
    for value in values:
        if isinstance(value, str):
            if value == BUILTIN:
                refs.append(RepoRef(path=builtin_repo(), file=file, line=line))
                continue
            path = Path(os.path.expanduser(value))
            refs.append(RepoRef(path=path if path.is_absolute() else base / path,
                                file=file, line=line))
        elif isinstance(value, dict):
            unknown = sorted(set(value) - {"git", "commit", "path"})
            if unknown:
                raise fail(f"unknown key(s) {', '.join(unknown)} in a repository (allowed:"
                           " commit, git, path)")
            git, commit = value.get("git"), value.get("commit")
            if not isinstance(git, str) or not git:
                raise fail("a repository table needs git = \"URL\"")
            if not isinstance(commit, str) or not HEX40.match(commit.lower()):
                raise fail(f"repository {git} needs commit = \"<40 hex digits>\" (a branch"
                           " can move; a pinned commit cannot)")
            subdir = value.get("path", "")
            if not isinstance(subdir, str) or subdir.startswith("/") or ".." in subdir.split("/"):
                raise fail(f"repository {git}: path must be a directory inside it")
            if "://" not in git and not git.startswith("git@"):
                local = Path(os.path.expanduser(git))
                git = str(local if local.is_absolute() else base / local)
            refs.append(RepoRef(git=git, commit=commit.lower(), subdir=subdir.strip("/"),
                                file=file, line=line))
        else:
            raise fail(f"repos entries must be directories or tables, not {value!r}")
    return refs


def default_cache_dir() -> Path:
    import platformdirs  # only when a git repository is read

    return Path(platformdirs.user_cache_dir("hdenv")) / "recipe-repos"


class Repositories:
    """Recipes by name, the first repository that has one winning; each file read once."""

    def __init__(self, refs: Sequence[RepoRef], cache_dir: Path | None = None):
        self.refs = list(refs)
        self.cache_dir = cache_dir
        self._recipes: dict[str, Recipe | None] = {}
        self._gits: dict[RepoRef, _GitTree] = {}

    def __bool__(self) -> bool:
        return bool(self.refs)

    def find(self, name: str) -> Recipe | None:
        if name not in self._recipes:
            self._recipes[name] = self._find(name)
        return self._recipes[name]

    def _find(self, name: str) -> Recipe | None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", name):
            return None
        for ref in self.refs:
            found = self._read(ref, name)
            if found is not None:
                return found
        return None

    def _read(self, ref: RepoRef, name: str) -> Recipe | None:
        if ref.git is not None:
            tree = self._git(ref)
            text = tree.read(f"{name}.toml")
            if text is None:
                return None
            return parse_recipe(name, text, f"{ref.label}/{name}.toml", ref.label)
        assert ref.path is not None
        file = ref.path / f"{name}.toml"
        try:
            with open(file, "rb") as f:
                raw = f.read(MAX_RECIPE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise UserError(f"cannot read recipe {file}: {e.strerror}") from None
        if len(raw) > MAX_RECIPE_BYTES:
            raise UserError(f"recipe {file} is larger than {MAX_RECIPE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"recipe {file} is not UTF-8 text") from None
        return parse_recipe(name, text, str(file), ref.label)

    def names(self) -> list[str]:
        """Every recipe name any repository offers, sorted."""
        found: set[str] = set()
        for ref in self.refs:
            found.update(self._names(ref))
        return sorted(found)

    def _names(self, ref: RepoRef) -> Iterator[str]:
        if ref.git is not None:
            yield from (n[:-5] for n in self._git(ref).list() if n.endswith(".toml"))
            return
        assert ref.path is not None
        if not ref.path.is_dir():
            raise UserError(f"recipe repository {ref.path} is not a directory",
                            file=ref.file, line=ref.line)
        for entry in os.scandir(ref.path):
            if entry.name.endswith(".toml") and entry.is_file():
                yield entry.name[:-5]

    def all(self) -> list[Recipe]:
        recipes = [self.find(n) for n in self.names()]
        return [r for r in recipes if r is not None]

    def providers(self, virtual: str) -> list[str]:
        """Recipes that say `provides = ["virtual"]`, for an error that names them."""
        return [r.name for r in self.all() if virtual in r.provides]

    def check(self) -> None:
        """Every repository can be read (a missing directory, an absent commit: one line)."""
        for ref in self.refs:
            if ref.git is not None:
                self._git(ref)
            elif ref.path is not None and not ref.path.is_dir():
                raise UserError(f"recipe repository {ref.path} is not a directory",
                                file=ref.file, line=ref.line)

    def _git(self, ref: RepoRef) -> _GitTree:
        if ref not in self._gits:
            self._gits[ref] = _GitTree(ref, self.cache_dir or default_cache_dir())
        return self._gits[ref]


class _GitTree:
    """One pinned commit of a git repository, read from a bare cache without a checkout."""

    def __init__(self, ref: RepoRef, cache_dir: Path):
        assert ref.git is not None and ref.commit is not None
        self.ref = ref
        self.commit = ref.commit
        key = hashlib.sha256(ref.git.encode()).hexdigest()[:32]
        self.bare = cache_dir / f"{key}.git"
        if not (self.bare / "HEAD").is_file():
            self.bare.parent.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", str(self.bare), bare=False)
        if not self._has_commit():
            self._git("fetch", "--quiet", "--no-tags", ref.git,
                      "+refs/heads/*:refs/hdenv/heads/*", "+refs/tags/*:refs/hdenv/tags/*",
                      check=False)
        if not self._has_commit():
            self._git("fetch", "--quiet", ref.git, self.commit, check=False)
        if not self._has_commit():
            raise UserError(f"recipe repository {ref.git} has no commit {self.commit}",
                            file=ref.file, line=ref.line)

    def _git(self, *args: str, bare: bool = True,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_TERMINAL_PROMPT"] = "0"
        argv = ["git", *(["--git-dir", str(self.bare)] if bare else []), *args]
        try:
            proc = subprocess.run(argv, capture_output=True, env=env, timeout=600)
        except FileNotFoundError:
            raise UserError("reading a git recipe repository needs git, which is not"
                            " installed", file=self.ref.file, line=self.ref.line) from None
        if check and proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            raise UserError(f"git {args[0]} in the recipe cache failed:"
                            f" {message[-1] if message else proc.returncode}",
                            file=self.ref.file, line=self.ref.line)
        return proc

    def _has_commit(self) -> bool:
        proc = self._git("cat-file", "-e", f"{self.commit}^{{commit}}", check=False)
        return proc.returncode == 0

    def _path(self, name: str) -> str:
        return f"{self.ref.subdir}/{name}" if self.ref.subdir else name

    def read(self, name: str) -> str | None:
        proc = self._git("cat-file", "blob", f"{self.commit}:{self._path(name)}", check=False)
        if proc.returncode != 0:
            return None
        if len(proc.stdout) > MAX_RECIPE_BYTES:
            raise UserError(f"recipe {self.ref.label}/{name} is larger than"
                            f" {MAX_RECIPE_BYTES} bytes")
        try:
            return proc.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"recipe {self.ref.label}/{name} is not UTF-8 text") from None

    def list(self) -> list[str]:
        tree = f"{self.commit}:{self.ref.subdir}" if self.ref.subdir else self.commit
        proc = self._git("ls-tree", "--name-only", tree, check=False)
        if proc.returncode != 0:
            raise UserError(f"recipe repository {self.ref.git} has no directory"
                            f" {self.ref.subdir!r} at {self.commit}",
                            file=self.ref.file, line=self.ref.line)
        return proc.stdout.decode(errors="replace").splitlines()


def site_refs(settings: Settings) -> list[RepoRef]:
    """Config `repos`: asked after a stack's own repositories."""
    if not settings.repos:
        return []
    source = settings.sources.get("repos") or None
    return parse_refs(settings.repos, Path("/"), source or "config", 0)

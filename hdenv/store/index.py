"""What the named profiles of one or more stores hold, read without the heavy modules.

`avail`, `spider`, completion and the hints of an unknown REF all need the same
facts: each name, its generations (number -> profile hash, which one is the
default), and each profile's artifacts and description. They come straight
from the `names/NAME/N` symlinks and one JSON file per profile, with nothing
heavier than `os`, so `hdenv avail` runs under `python -I -S` in a few
milliseconds (Lmod's `module avail` is the yardstick).

`Index` takes a list of store roots, searched in order: a user's store first,
then read-only upstream stores. A name found in an earlier store hides the
same name further down, as a module earlier in MODULEPATH does.
"""

from __future__ import annotations

import os

from .. import fastjson
from ..errors import UserError
from ..validate import looks_like_hash, profile_name_problem

META_DIR = ".hdenv"
PROFILE_META = "profile.json"
ARTIFACT_META = "artifact.json"
ABOUT_SUFFIX = ".about.json"


def about_path(root: str, hash_: str) -> str:
    """`specs/HASH.about.json`: what a spec's hash does not cover (its description)."""
    return os.path.join(root, "specs", hash_ + ABOUT_SUFFIX)


def about_hashes(root: str) -> set[str] | None:
    """The hashes with an about file in `root`'s specs/, from one listing (None when it
    cannot be listed: then ask `read_about` for each)."""
    try:
        names = os.listdir(os.path.join(root, "specs"))
    except OSError:
        return None
    return {n[:-len(ABOUT_SUFFIX)] for n in names if n.endswith(ABOUT_SUFFIX)}


def read_about(root: str, hash_: str) -> dict[str, str]:
    try:
        data = fastjson.read(about_path(root, hash_))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def read_spec(root: str, hash_: str) -> dict[str, object]:
    """`specs/HASH.json`, or {} when it is missing or damaged (listings never fail on it)."""
    try:
        data = fastjson.read(os.path.join(root, "specs", hash_ + ".json"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def artifact_root(roots: list[str], aid: str) -> str | None:
    """The first store of `roots` holding the artifact `aid`, or None."""
    for root in roots:
        if os.path.isfile(os.path.join(root, "artifacts", aid, META_DIR, ARTIFACT_META)):
            return root
    return None


def runtime_closure(roots: list[str], aid: str) -> list[str]:
    """Every artifact reachable from `aid` through runtime deps, sorted (as
    store.artifacts.runtime_closure, without the store's heavier modules)."""
    seen: set[str] = set()
    todo = [aid]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        root = artifact_root(roots, node)
        if root is None:
            raise UserError(f"{aid} needs {node}, which is not in the store")
        try:
            meta = fastjson.read(os.path.join(root, "artifacts", node, META_DIR, ARTIFACT_META))
        except (OSError, ValueError):
            meta = {}
        deps = meta.get("runtime_deps") if isinstance(meta, dict) else None
        if isinstance(deps, list):
            todo.extend(str(d) for d in deps)
    return sorted(seen)


def generation_links(ndir: str | os.PathLike[str] | int) -> dict[int, str]:
    """number -> profile hash, from the generation symlinks of names/NAME (a path, or an
    open descriptor of it); {} when there is no such directory."""
    out: dict[int, str] = {}
    try:
        entries = os.listdir(ndir)
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.isdigit():
            out[int(entry)] = os.path.basename(_readlink(ndir, entry))
    return out


def _readlink(ndir: str | os.PathLike[str] | int, entry: str) -> str:
    if isinstance(ndir, int):
        return os.readlink(entry, dir_fd=ndir)
    return os.readlink(os.path.join(ndir, entry))


def current_number(ndir: str | os.PathLike[str] | int) -> int | None:
    """The generation `names/NAME/current` points at, or None."""
    try:
        target = _readlink(ndir, "current")
    except OSError:
        return None
    return int(target) if target.isdigit() else None


def created(mtime: float) -> str:
    """A generation link's date as `show` and `profile generations` print it."""
    import datetime  # 1.4 ms: only `show` and the generation listings need it

    return datetime.datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")


def generation_dates(ndir: str) -> list[tuple[int, str, str, bool]]:
    """(number, profile hash, created, current) of every generation in names/NAME, oldest
    first."""
    cur = current_number(ndir)
    return [(number, hash_, created(os.lstat(os.path.join(ndir, str(number))).st_mtime),
             number == cur) for number, hash_ in sorted(generation_links(ndir).items())]


def names_of(root: str, profile_hash: str) -> list[tuple[str, int, bool]]:
    """(name, generation, current) for every generation of this store (not its upstreams)
    that points at `profile_hash`."""
    names = os.path.join(root, "names")
    out = []
    for name in sorted(os.listdir(names)) if os.path.isdir(names) else []:
        ndir = os.path.join(names, name)
        cur = current_number(ndir)
        for number, hash_ in sorted(generation_links(ndir).items()):
            if hash_ == profile_hash:
                out.append((name, number, number == cur))
    return out


class Generation:
    def __init__(self, number: int, hash_: str, current: bool):
        self.number = number
        self.hash = hash_
        self.current = current


class ProfileFacts:
    """One profile's metadata, as `profile.json` and its about file give it."""

    def __init__(self, root: str, hash_: str):
        self.root = root
        self.hash = hash_
        self.path = os.path.join(root, "profiles", hash_)
        try:
            meta = fastjson.read(os.path.join(self.path, META_DIR, PROFILE_META))
        except (OSError, ValueError):
            meta = None
        self.present = isinstance(meta, dict)
        meta = meta if isinstance(meta, dict) else {}
        self.artifacts: list[str] = [str(a) for a in meta.get("artifacts") or []]
        env = meta.get("env")
        self.env: dict[str, str] = (
            {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {})
        self.family: str | None = meta.get("family")
        self._about: dict[str, str] | None = None

    @property
    def description(self) -> str:
        if self._about is None:
            self._about = read_about(self.root, self.hash)
        return self._about.get("description", "")

    def packages(self) -> list[tuple[str, str, str]]:
        """(name, version, artifact id) of every artifact, by name."""
        out = []
        for aid in self.artifacts:
            parts = aid.split("/")
            if len(parts) == 3:
                out.append((parts[0], parts[1], aid))
        return sorted(out)


class Named:
    """A profile name in one store: its generations, the default one marked."""

    def __init__(self, root: str, name: str, generations: list[Generation]):
        self.root = root
        self.name = name
        self.generations = generations  # oldest first

    @property
    def current(self) -> Generation | None:
        for g in self.generations:
            if g.current:
                return g
        return None


def _generations(ndir: str) -> list[Generation]:
    try:
        entries = os.listdir(ndir)
    except OSError:
        return []
    try:
        current = os.readlink(os.path.join(ndir, "current"))
    except OSError:
        current = ""
    out = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            target = os.readlink(os.path.join(ndir, entry))
        except OSError:
            continue
        hash_ = target.rstrip("/").rpartition("/")[2]
        if not looks_like_hash(hash_):  # not hdenv's: nothing read from it reaches a shell
            continue
        out.append(Generation(int(entry), hash_, entry == current))
    return sorted(out, key=lambda g: g.number)


class Index:
    """The named profiles of `roots` (a user's store first, then upstream stores)."""

    def __init__(self, roots: list[str]):
        self.roots = list(roots)
        self._named: list[Named] | None = None
        self._facts: dict[tuple[str, str], ProfileFacts] = {}

    def named(self) -> list[Named]:
        """Every name with at least one generation, sorted; earlier stores hide later ones."""
        if self._named is None:
            seen: dict[str, Named] = {}
            for root in self.roots:
                names_dir = os.path.join(root, "names")
                try:
                    entries = os.listdir(names_dir)
                except OSError:
                    continue
                for name in entries:
                    # names read from any store (another user's, an upstream) are checked
                    # as when they were made: a planted `x$(id)` never reaches a shell
                    if name in seen or profile_name_problem(name):
                        continue
                    gens = _generations(os.path.join(names_dir, name))
                    if gens:
                        seen[name] = Named(root, name, gens)
            self._named = [seen[n] for n in sorted(seen)]
        return self._named

    def get(self, name: str) -> Named | None:
        for named in self.named():
            if named.name == name:
                return named
        return None

    def facts(self, root: str, hash_: str) -> ProfileFacts:
        key = (root, hash_)
        if key not in self._facts:
            self._facts[key] = ProfileFacts(root, hash_)
        return self._facts[key]

    def holders(self, package: str, version: str | None = None
                ) -> list[tuple[Named, Generation, str]]:
        """(name, generation, artifact id) of every generation holding `package`."""
        out = []
        for named in self.named():
            for gen in named.generations:
                for pname, pversion, aid in self.facts(named.root, gen.hash).packages():
                    if pname == package and version in (None, pversion):
                        out.append((named, gen, aid))
        return out

    def package_names(self) -> list[str]:
        """Names of the packages in the default generation of every name."""
        found: set[str] = set()
        for named in self.named():
            cur = named.current
            if cur is not None:
                found.update(p for p, _, _ in self.facts(named.root, cur.hash).packages())
        return sorted(found)

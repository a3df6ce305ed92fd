"""Packages by name, through the hierarchy: `hdenv load zlib` as Lmod users know it.

A loadable package is an artifact of a named profile (any generation; the
current generation's build is the default). Its *toolchain* is its build
dependencies (and dependencies) of family `compiler` or `mpi`, host or built.
With a compiler (and MPI) loaded, `load zlib` takes the zlib built with
exactly those; with none it takes the default; what is still ambiguous is an
error that names the choices by what tells them apart, never by hash alone.

A package is loaded as a profile of its runtime closure, made on demand and
kept in the store (`profiles/HASH`, like any profile), so unload works from the
recorded diff exactly as for named profiles. Its record carries the artifact
id (`LoadRecord.package`), which is what `swap gcc clang` needs to reload each
package as its counterpart built with the other compiler, or to set it aside
(`HDENV_INACTIVE`) until the compiler it was built with comes back.

Only loads of something that is not a profile name come here: the fast path
for profiles never imports this module. Named profiles take precedence over
packages of the same name.
"""

from __future__ import annotations

from ..errors import UserError
from ..store.index import Index, artifact_root, runtime_closure
from ..store.variants import build_names, dep_ids, spec_traits, split_id, version_key
from . import lightos, namecache
from .envdiff import LoadRecord, json_loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .fastload import Profile

TOOLCHAIN = ("compiler", "mpi")
INACTIVE_VAR = "HDENV_INACTIVE"


class Build:
    """One artifact that may be loaded by name, and what tells it apart."""

    def __init__(self, aid: str, root: str, spec: dict[str, object]):
        self.aid = aid
        self.root = root
        self.spec = spec
        self.name, self.version, _h = split_id(aid)
        family = spec.get("family")
        self.family = family if isinstance(family, str) else None
        self.toolchain: dict[str, str] = {}  # id -> family, filled by Catalog
        self.default = False  # in the current generation of some name
        self.profiles: list[str] = []  # `cz-gcc/2`: where it is found

    def fits(self, loaded: dict[str, set[str]]) -> bool:
        """Built with nothing of a loaded family but what is loaded of it."""
        return all(aid in loaded[fam] for aid, fam in self.toolchain.items() if loaded.get(fam))

    def matched(self, loaded: dict[str, set[str]]) -> int:
        return sum(1 for aid, fam in self.toolchain.items() if aid in loaded.get(fam, ()))

    def key(self) -> tuple[object, ...]:
        """Name, version and parameters, with the toolchain's names left out: the gcc
        and clang builds of one package of a matrix share it (`CC=gcc` -> `CC=<compiler>`)."""
        words = {split_id(t)[0]: f"<{fam}>" for t, fam in self.toolchain.items()}
        env = self.spec.get("env")
        norm = []
        for k, v in sorted(env.items()) if isinstance(env, dict) else ():
            value = str(v)
            for word, placeholder in words.items():
                value = value.replace(word, placeholder)
            norm.append((str(k), value))
        deps = sorted({split_id(d)[0] for d in dep_ids(self.spec)} - set(words))
        return (self.name, self.version, tuple(norm), tuple(deps))

    def detail(self, others: list[Build]) -> str:
        """`gcc/12.2.0, CFLAGS=-O1`: its toolchain and the parameters that differ."""
        parts = [t.rpartition("/")[0] for t in sorted(self.toolchain)]
        mine = _env(self.spec)
        words = {split_id(t)[0] for t in self.toolchain}
        for k, v in sorted(mine.items()):
            if v in words:
                continue  # CC=gcc: the compiler already says it
            if any(_env(o.spec).get(k) != v for o in others if o is not self):
                parts.append(f"{k}={v}")
        return ", ".join(parts) or "no compiler"


def _env(spec: dict[str, object]) -> dict[str, str]:
    env = spec.get("env")
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


def _read(path: str) -> dict[str, object]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json_loads(f.read())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _spec(root: str, aid: str) -> dict[str, object]:
    return _read(lightos.join(root, "artifacts", aid, ".hdenv", "spec.json"))


class Catalog:
    """The loadable packages of `roots`, read as far as a question needs."""

    def __init__(self, roots: list[str], index: Index | None = None):
        self.roots = roots
        self.index = index or Index(roots)
        self._builds: dict[str, Build] = {}
        self._listed: dict[str, list[tuple[str, str]]] | None = None
        self._complete = True  # every profile.json listed() needed was read

    def listed(self) -> dict[str, list[tuple[str, str]]]:
        """Artifact id -> [(profile NAME/N, "current" or "")] of every generation."""
        if self._listed is None:
            self._listed = {}
            for named in self.index.named():
                for gen in named.generations:
                    facts = self.index.facts(named.root, gen.hash)
                    self._complete = self._complete and facts.present
                    for _n, _v, aid in facts.packages():
                        self._listed.setdefault(aid, []).append(
                            (f"{named.name}/{gen.number}", "current" if gen.current else ""))
        return self._listed

    def build(self, aid: str) -> Build | None:
        """The build `aid` (in a profile or not), its toolchain read from the specs."""
        if aid not in self._builds:
            root = artifact_root(self.roots, aid)
            if root is None:
                return None
            b = Build(aid, root, _spec(root, aid))
            for dep in dep_ids(b.spec):
                dep_root = artifact_root(self.roots, dep)
                family = _spec(dep_root, dep).get("family") if dep_root else None
                if family in TOOLCHAIN:
                    b.toolchain[dep] = str(family)
            where = self.listed().get(aid, [])
            b.profiles = [p for p, _c in where]
            b.default = any(c for _p, c in where)
            self._builds[aid] = b
        return self._builds[aid]

    def named(self, name: str) -> list[Build]:
        """Every build called `name` in a named profile; else the compilers and MPIs
        such builds were made with (`load gcc` when gcc is in no profile)."""
        ids = [a for a in self.listed() if split_id(a)[0] == name]
        builds = [b for b in (self.build(a) for a in sorted(ids)) if b is not None]
        if builds:
            return builds
        tools: set[str] = set()
        for aid in sorted(self.listed()):
            b = self.build(aid)
            if b is not None:
                tools.update(t for t in b.toolchain if split_id(t)[0] == name)
        found = [b for b in (self.build(t) for t in sorted(tools)) if b is not None]
        for b in found:
            b.default = True  # a compiler is its own default: no profile generation says
        return found

    def all_names(self) -> dict[str, str]:
        """Every loadable package's distinguishing name, from the user's name cache when
        the store's profiles are those it was made for (namecache.py)."""
        key = " ".join(sorted({g.hash for named in self.index.named()
                               for g in named.generations}))
        names = namecache.read(self.roots, key)
        if names is None:
            names = self._name_all()
            if self._complete:  # an unreadable profile.json must not be remembered as empty
                namecache.write(self.roots, key, names)
        return names

    def _name_all(self) -> dict[str, str]:
        """Specs are read only where two builds share a NAME/VERSION."""
        groups: dict[str, list[str]] = {}
        for aid in self.listed():
            groups.setdefault(aid.rpartition("/")[0], []).append(aid)
        out = {}
        for plain, ids in groups.items():
            if len(ids) == 1:
                out[ids[0]] = plain
            else:  # what `names` would say of these builds, without the rest of `build`
                traits = {a: t for a in ids if (t := self._traits(a)) is not None}
                out.update(build_names(traits))
        return out

    def _traits(self, aid: str) -> tuple[str, ...] | None:
        """`spec_traits` of a build, or None when no store holds it; its toolchain and
        profiles (what `build` reads besides) are not needed to name it: at 1,000 names
        that was most of `avail`."""
        known = self._builds.get(aid)
        if known is not None:
            return spec_traits(known.spec)
        root = artifact_root(self.roots, aid)
        if root is None:
            self._complete = False  # gc'd under a profile, or a store not mounted
            return None
        return spec_traits(_spec(root, aid))

    def names(self, builds: list[Build]) -> dict[str, str]:
        """`zlib/1.2.13-gcc`: each build's distinguishing name (store/variants.py)."""
        return build_names({b.aid: spec_traits(b.spec) for b in builds})


def loaded_toolchain(records: list[LoadRecord], roots: list[str] | None = None
                     ) -> dict[str, set[str]]:
    """Family -> ids of the compilers and MPIs loaded: as packages, or inside a loaded
    profile of that family (`[profiles.cc] packages = ["gcc"] family = "compiler"`),
    where the artifacts of that family are the compiler (`roots` finds their specs)."""
    out: dict[str, set[str]] = {}
    for rec in records:
        if rec.family not in TOOLCHAIN:
            continue
        if rec.package:
            out.setdefault(str(rec.family), set()).add(rec.package)
            continue
        artifacts = _read(lightos.join(rec.prefix, ".hdenv", "profile.json")).get("artifacts")
        for aid in artifacts if isinstance(artifacts, list) and roots else []:
            root = artifact_root(roots or [], str(aid))
            if root is not None and _spec(root, str(aid)).get("family") == rec.family:
                out.setdefault(str(rec.family), set()).add(str(aid))
    return out


def _matching(catalog: Catalog, name: str, version: str) -> list[Build]:
    builds = catalog.named(name)
    if not version:
        return builds
    exact = [b for b in builds if b.version == version]
    if exact:
        return exact
    want = f"{name}/{version}"
    names = catalog.names(builds)  # zlib/1.2.13-gcc: the name avail shows
    hits = [b for b in builds if names[b.aid] == want]
    if hits:
        return hits
    # zlib/1.2.13-O1: the name the Lmod tree gives it among the builds of one toolchain
    # (one Compiler/ or MPI/ level); the loaded toolchain then decides, as MODULEPATH does
    levels: dict[tuple[str, ...], list[Build]] = {}
    for b in builds:
        levels.setdefault(tuple(sorted(b.toolchain)), []).append(b)
    out: list[Build] = []
    for level in levels.values():
        level_names = catalog.names(level)
        out.extend(b for b in level if level_names[b.aid] == want)
    return out


def choose(catalog: Catalog, ref: str, builds: list[Build],
           loaded: dict[str, set[str]]) -> Build:
    """The one build `ref` means with `loaded`, or a UserError naming the choices."""
    fits = [b for b in builds if b.fits(loaded)]
    if not fits:
        have = ", ".join(sorted(a.rpartition("/")[0] for ids in loaded.values() for a in ids))
        raise UserError(f"{ref} has no build with the loaded {have}: "
                        + _choices(catalog, builds) + "; swap the compiler or name one")
    best = max(b.matched(loaded) for b in fits)
    fits = [b for b in fits if b.matched(loaded) == best]
    fits = [b for b in fits if b.default] or fits
    top = max(version_key(b.version) for b in fits)
    fits = [b for b in fits if version_key(b.version) == top]
    if len(fits) == 1:
        return fits[0]
    names = catalog.names(catalog.named(fits[0].name))
    raise UserError(f"{ref} is ambiguous: {_choices(catalog, fits)};"
                    f" load a compiler first, or one of them by name"
                    f" (hdenv load {names[fits[0].aid]})")


def _choices(catalog: Catalog, builds: list[Build]) -> str:
    names = catalog.names(catalog.named(builds[0].name)) if builds else {}
    return ", ".join(f"{names.get(b.aid, b.aid)} ({b.detail(builds)})" for b in builds)


def available(roots: list[str], ref: str) -> bool:
    """Whether `ref` names a package `load` can find (`is-avail`; an ambiguous name counts,
    as a module with several versions does for Lmod). Nothing is written."""
    catalog = Catalog(roots)
    if ref.count("/") == 2:
        return catalog.build(ref) is not None
    name, _, version = ref.partition("/")
    return bool(_matching(catalog, name, version))


def find(roots: list[str], ref: str, records: list[LoadRecord]) -> Profile | None:
    """The package `ref` names (NAME, NAME/VERSION, NAME/VERSION-SUFFIX or an artifact id)
    as an on-demand profile; None when no named profile holds such a package."""
    catalog = Catalog(roots)
    build = _chosen(catalog, ref, records)
    return package_profile(catalog, build) if build is not None else None


def chosen_build(roots: list[str], ref: str, records: list[LoadRecord]) -> str | None:
    """The artifact id `load REF` would load (nothing is made): for `show NAME`."""
    build = _chosen(Catalog(roots), ref, records)
    return build.aid if build is not None else None


def _chosen(catalog: Catalog, ref: str, records: list[LoadRecord]) -> Build | None:
    if ref.count("/") == 2:
        return catalog.build(ref)
    name, _, version = ref.partition("/")
    builds = _matching(catalog, name, version)
    if not builds:
        return None
    return choose(catalog, ref, builds, loaded_toolchain(records, catalog.roots))


def package_profile(catalog: Catalog, build: Build) -> Profile:
    """The profile of `build`'s runtime closure, made in the store if it is not there yet."""
    from .fastload import _home, read_profile

    roots = catalog.roots
    closure = runtime_closure(roots, build.aid)
    hash_ = profile_hash(closure, build.family)
    home = _home(roots, hash_)
    if home is None:
        from pathlib import Path

        from ..profile.profiles import create_profile, profile_spec
        from ..store.layout import Store

        store = Store(Path(roots[0]), [Path(r) for r in roots[1:]])
        made = create_profile(store, profile_spec(closure, {}, build.family), build.aid)
        home = str(made.parent.parent)
    prof: Profile = read_profile(home, hash_, build.name)
    prof.package = build.aid
    return prof


B32 = "abcdefghijklmnopqrstuvwxyz234567"


def profile_hash(closure: list[str], family: str | None) -> str:
    """`profile_hash(profile_spec(closure, {}, family))` without `json`, `hashlib` and
    `base64`: their imports are 20 ms of every package load, the rest of which takes
    about as long. The canonical JSON of this one shape of spec is written by hand
    (keys sorted, no spaces, non-ASCII as is); test_byname checks both agree."""
    from ..fastjson import json_dumps

    text = json_dumps({"artifacts": sorted(set(closure)), "env": {}, "family": family,
                       "kind": "profile"})
    try:
        from _sha256 import sha256  # CPython 3.11: without OpenSSL's 8 ms load
    except ImportError:  # pragma: no cover - 3.12 renamed it; other interpreters
        from hashlib import sha256
    number = int.from_bytes(sha256(text.encode("utf-8")).digest()[:20], "big")
    return "".join(B32[(number >> shift) & 31] for shift in range(155, -1, -5))


class Retarget:
    """What a toolchain change does to the loaded packages (Lmod's reload on swap)."""

    def __init__(self) -> None:
        self.unload: list[str] = []  # profile hashes of records to unload
        self.load: list[Profile] = []
        self.inactive: list[str] = []  # artifact ids set aside
        self.notes: list[str] = []


def retarget(roots: list[str], records: list[LoadRecord], inactive: list[str]) -> Retarget:
    """Each loaded package built with a toolchain no longer loaded becomes its
    counterpart (same name, version and parameters) built with what is loaded now, or
    inactive; each inactive package whose counterpart now fits comes back."""
    loaded = loaded_toolchain(records, roots)
    catalog = Catalog(roots)
    out = Retarget()
    for rec in records:
        if not rec.package or rec.family in TOOLCHAIN:
            continue
        build = catalog.build(rec.package)
        if build is None or build.fits(loaded):
            continue
        other = _counterpart(catalog, build, loaded)
        out.unload.append(rec.hash)
        if other is None:
            out.inactive.append(build.aid)
            out.notes.append(f"{rec.ref} has no build with what is loaded now: inactive"
                             " until its compiler is back (hdenv loaded shows it)")
        else:
            out.load.append(package_profile(catalog, other))
            out.notes.append(f"reloading {rec.ref} as its build with"
                             f" {other.detail([])}")
    for aid in inactive:
        build = catalog.build(aid)
        other = None if build is None else (
            build if build.fits(loaded) else _counterpart(catalog, build, loaded))
        if other is None:
            out.inactive.append(aid)
        else:
            out.load.append(package_profile(catalog, other))
            out.notes.append(f"activating {other.name}/{other.version} ({other.detail([])})")
    return out


def built_with(roots: list[str], records: list[LoadRecord], tool: str
               ) -> list[tuple[str, str]]:
    """(profile hash, artifact id) of each loaded package built with the compiler or MPI
    `tool` (being unloaded: they become inactive)."""
    catalog = Catalog(roots)
    out = []
    for rec in records:
        if rec.package and rec.family not in TOOLCHAIN:
            build = catalog.build(rec.package)
            if build is not None and tool in build.toolchain:
                out.append((rec.hash, rec.package))
    return out


def _counterpart(catalog: Catalog, build: Build, loaded: dict[str, set[str]]) -> Build | None:
    key = build.key()
    same = [b for b in catalog.named(build.name)
            if b.aid != build.aid and b.key() == key and b.fits(loaded) and b.toolchain]
    if not same:
        return None
    same = [b for b in same if b.default] or same
    return same[0]

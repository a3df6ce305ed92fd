"""The load / unload / swap / purge path, run by the shell function.

Users run `hdenv load` all day, so this module is what the function executes
with `python -I -S` (no site-packages, no click, no jinja2, not even `os`): it
imports only `atexit`, `binascii`, `_json`, `gc`, `errors`, `validate`, `xdg`,
`lightos`, `envdiff` and the one shell module it needs. A profile is found by
following one link (names) or one `stat` (full hashes); a hash prefix lists
`profiles/` only, never `artifacts/`, so the cost does not grow with the
number of artifacts in the store.

The program prints shell code on stdout and exits 0, or prints one error line
on stderr and exits 2; the function evaluates the code only on success.
"""

from __future__ import annotations

import atexit
import gc
import sys

from ..errors import UserError
from ..validate import env_name_problem
from ..xdg import user_dir
from . import envdiff, envlimits, lightos
from .envdiff import LoadRecord
from .quoting import Shell, get_shell
from .quoting.base import check_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc costs ms on every load
    from collections.abc import Callable, Mapping
    from typing import Any

    Who = tuple[str | None, int | None, str]  # (name, generation, hash): for the usage log

# (variable, sub-directory, keep man's default path when the variable was unset)
PATH_DIRS = (("PATH", "bin", False), ("MANPATH", "share/man", True),
             ("PKG_CONFIG_PATH", "lib/pkgconfig", False))
PREFIX_VAR = "CMAKE_PREFIX_PATH"
B32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")
HASH_CHARS = 32
PER_USER = "@user"  # shellcmd.PER_USER: the default config/store of whoever runs it
MIN_PREFIX = 6
COMMANDS = ("load", "unload", "swap", "purge", "restore", "reset", "use", "unuse", "try-load",
            "refresh", "update")
USE_VAR = "HDENV_USE"  # `hdenv use STORE`: upstream stores of this shell only
TOOLCHAIN = ("compiler", "mpi")  # byname.TOOLCHAIN: families whose change reloads packages
INACTIVE_VAR = "HDENV_INACTIVE"  # byname.INACTIVE_VAR


class Profile:
    """What a load needs to know about one profile."""

    def __init__(self, hash_: str, name: str | None, prefix: str,
                 env: dict[str, str], family: str | None, generation: int | None = None,
                 artifacts: list[str] | None = None):
        self.hash = hash_
        self.name = name
        self.prefix = prefix
        self.env = env
        self.family = family
        self.generation = generation
        self.artifacts = artifacts or []  # ids of its runtime closure
        self.package: str | None = None  # the artifact id of a package loaded by name

    @property
    def ref(self) -> str:
        """`demo/2` as the user sees it (the hash when loaded by hash; a package's
        NAME/VERSION)."""
        if self.package:
            return self.package.rpartition("/")[0]
        if self.name and self.generation is not None:
            return f"{self.name}/{self.generation}"
        return self.name or self.hash


def note(message: str) -> None:
    print(f"hdenv: {message}", file=sys.stderr)


# -- where the store is -------------------------------------------------------

class Config:
    """The store, its upstreams and the usage log, as config.load_settings finds them.

    Without platformdirs: `hdenv init` bakes the defaults into the function.
    The config files (the user's over the site's, see configfiles.py) are
    read once, when a command first needs a setting, and only if they exist;
    tomllib is imported only for a file that is more than configscan.py can
    be sure of.
    """

    def __init__(self, env: Mapping[str, str], default_config: str, default_store: str):
        self.env = env
        # "@user": `hdenv init --system` code, for every user; found by the XDG rule (xdg.py)
        self.default_config = (user_dir("config", env) + "/config.toml"
                               if default_config in ("", PER_USER) else default_config)
        self.default_store = (user_dir("data", env)
                              if default_store in ("", PER_USER) else default_store)
        self._layers: list[tuple[str, str, dict[str, object]]] | None = None

    def _get(self, key: str) -> tuple[object, str] | None:
        from ..configfiles import lookup, read_layers

        if self._layers is None:
            self._layers = read_layers(self.env, self.default_config, lightos.exists)
        return lookup(self._layers, key)

    def roots(self) -> list[str]:
        """The store, then its upstreams (read-only stores consulted after it)."""
        from ..configfiles import from_config_dir  # as _get: loaded only when needed

        if self.env.get("HDENV_STORE"):
            root = lightos.absolute(self.env["HDENV_STORE"])
        else:
            found = self._get("store")
            root = (lightos.absolute(from_config_dir(str(found[0]), found[1]))
                    if found and found[0] else self.default_store)
        found = self._get("upstreams")
        if not found:
            return [root, *(u for u in self.used() if u != root)]
        value, source = found
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list):
            raise UserError("'upstreams' must be a list of strings", file=source)
        ups = [lightos.absolute(from_config_dir(str(u), source)) for u in value]
        return [root, *(u for u in [*self.used(), *ups] if u != root)]

    def used(self) -> list[str]:
        return [u for u in (self.env.get(USE_VAR) or "").split(":") if u.startswith("/")]

    def _refs(self, key: str) -> list[str]:
        found = self._get(key)
        if not found:
            return []
        value, source = found
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"'{key}' must be a list of REFs (strings)", file=source)
        return [str(v) for v in value]

    def default_load(self) -> list[str]:
        """What `hdenv reset` loads (Lmod's LMOD_SYSTEM_DEFAULT_MODULES)."""
        return self._refs("default-load")

    def sticky(self) -> list[str]:
        """NAME, NAME/N or hashes that purge and unload keep unless --force."""
        return self._refs("sticky")

    def usage_log(self) -> str | None:
        found = self._get("usage-log")
        return str(found[0]) if found and found[0] else None


def store_root(env: Mapping[str, str], default_config: str, default_store: str) -> str:
    """The store alone (callers that need no upstreams)."""
    return Config(env, default_config, default_store).roots()[0]


# -- finding a profile --------------------------------------------------------

def is_hash_like(ref: str) -> bool:
    return bool(ref) and all(c in B32 for c in ref)


def _meta(root: str, hash_: str) -> str:
    return lightos.join(root, "profiles", hash_, ".hdenv", "profile.json")


def _roots(roots: str | list[str]) -> list[str]:
    return [roots] if isinstance(roots, str) else roots


def read_profile(root: str, hash_: str, name: str | None,
                 generation: int | None = None) -> Profile:
    prefix = lightos.join(root, "profiles", hash_)
    meta_path = _meta(root, hash_)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = envdiff.json_loads(f.read())
    except FileNotFoundError:
        raise UserError(f"profile {hash_} is not in the store {root}") from None
    except (ValueError, OSError) as e:  # UnicodeDecodeError is a ValueError
        raise UserError(f"damaged profile metadata ({e}); see `hdenv verify`",
                        file=meta_path) from None
    env = meta.get("env") if isinstance(meta, dict) else None
    family = meta.get("family") if isinstance(meta, dict) else None
    if not isinstance(env, dict) or not isinstance(family, (str, type(None))):
        raise UserError("damaged profile metadata (no 'env' table); see `hdenv verify`",
                        file=meta_path)
    artifacts = meta.get("artifacts")
    return Profile(hash_, name, prefix, {str(k): str(v) for k, v in env.items()}, family,
                   generation, [str(a) for a in artifacts] if isinstance(artifacts, list) else [])


def _home(roots: list[str], hash_: str) -> str | None:
    """The first store (this one, then the upstreams) holding profile `hash_`."""
    for root in roots:
        if lightos.is_file(_meta(root, hash_)):
            return root
    return None


def _profile_by_prefix(roots: list[str], ref: str) -> Profile | None:
    if len(ref) == HASH_CHARS:
        home = _home(roots, ref)
        return read_profile(home, ref, None) if home is not None else None
    found: dict[str, str] = {}
    for root in roots:
        try:
            entries = lightos.listdir(lightos.join(root, "profiles"))
        except FileNotFoundError:
            continue
        for h in entries:
            if h.startswith(ref) and h not in found and lightos.is_file(_meta(root, h)):
                found[h] = root
    matches = sorted(found)
    if len(matches) > 1:
        raise UserError(f"hash prefix {ref!r} is ambiguous: {', '.join(matches[:5])}")
    return read_profile(found[matches[0]], matches[0], None) if matches else None


def _artifact(roots: list[str], ref: str) -> Profile:
    """An artifact id or a NAME/VERSION no named profile holds: the full store module
    finds it (or words the error), byname.py makes its on-demand profile."""
    from pathlib import Path

    from ..store.layout import Store
    from . import byname

    found = Store(Path(roots[0]), [Path(r) for r in roots[1:]]).resolve(ref)
    if found.kind == "profile":
        return read_profile(str(found.path.parent.parent), found.ident, found.name)
    catalog = byname.Catalog(roots)
    build = catalog.build(found.ident)
    if build is None:
        raise UserError(f"artifact {found.ident} is not in the store")
    return byname.package_profile(catalog, build)


def _named_profile(roots: list[str], name: str, entry: str) -> Profile | None:
    """The profile `names/NAME/ENTRY` (`current` or a generation number) points at.

    The first store with the name decides (a user's `demo` hides the site's),
    as store.layout does; its link may point at a profile upstream.
    """
    for root in roots:
        ndir = lightos.join(root, "names", name)
        if lightos.lexists(lightos.join(ndir, "current")):
            break
    else:
        return None
    link = lightos.join(ndir, entry)
    if not lightos.lexists(link):
        return None
    number = lightos.readlink(link) if entry == "current" else entry
    hash_ = lightos.basename(lightos.final_target(link))
    home = _home(roots, hash_)
    if home is None:
        from ..store.layout import dangling_name

        raise UserError(dangling_name(name, entry, hash_))
    generation = int(number) if number and number.isascii() and number.isdigit() else None
    return read_profile(home, hash_, name, generation)


def _unknown(roots: list[str], ref: str) -> UserError:
    """The error with suggestions; only on the error path, so the store modules are fine."""
    from ..store.layout import short_prefix_detail
    from ..store.suggest import GENERIC, unknown_ref

    return unknown_ref(roots, ref, short_prefix_detail(ref) or GENERIC)


def resolve(roots: str | list[str], ref: str, loaded: list[LoadRecord] | None = None) -> Profile:
    """A profile name, NAME/N, a profile hash or unique prefix; else a package by name
    (NAME, NAME/VERSION, an artifact id: byname.py, which picks the build made with
    the compilers `loaded`). Profiles take precedence over packages of the same name."""
    roots = _roots(roots)
    if not ref:
        raise UserError("empty REF")
    name, _, generation = ref.partition("/")
    if (generation.isascii() and generation.isdigit()) or "/" not in ref:  # NAME/N or NAME
        named = _named_profile(roots, name, str(int(generation)) if generation else "current")
        if named is not None:
            return named
    if "/" in ref:
        return _package(roots, ref, loaded) or _artifact(roots, ref)  # also words a bad NAME/N
    if is_hash_like(ref) and len(ref) >= MIN_PREFIX:
        found = _profile_by_prefix(roots, ref)
        if found is not None:
            return found
    return _package(roots, ref, loaded) or _raise(_unknown(roots, ref))


def _package(roots: list[str], ref: str, loaded: list[LoadRecord] | None) -> Profile | None:
    from . import byname  # only for what no profile name is: the profile path never pays

    return byname.find(roots, ref, loaded or [])


def _raise(error: UserError) -> Profile:
    raise error


# -- the session: one command's changes to a copy of the environment ---------

def apply(env: dict[str, str], prof: Profile) -> LoadRecord:
    """Load `prof` into `env` and return the record of exactly what changed."""
    rec = LoadRecord(hash=prof.hash, name=prof.name, family=prof.family, prefix=prof.prefix,
                     generation=prof.generation, package=prof.package)
    for var, sub, keep_default in PATH_DIRS:
        path = lightos.join(prof.prefix, sub)
        if lightos.is_dir(path):
            envdiff.prepend(env, rec, var, [path], keep_default)
    site = python_site_dirs(prof.prefix)
    if site:
        envdiff.prepend(env, rec, "PYTHONPATH", site, False)
    envdiff.prepend(env, rec, PREFIX_VAR, [prof.prefix])
    for var in sorted(prof.env):
        problem = env_name_problem(check_name(var))
        if problem is not None:  # profile.json from another store or a cache: checked again
            raise UserError(f"profile {prof.ref} sets {var}, which a profile may not set"
                            f" ({problem}); refusing to load it (see `hdenv verify`)")
        envdiff.set_var(env, rec, var, prof.env[var])
    return rec


def _loaded_meta(prefix: str) -> dict[str, object]:
    """A loaded profile's profile.json; {} when it is gone (unload still works then)."""
    try:
        with open(lightos.join(prefix, ".hdenv", "profile.json"), encoding="utf-8") as f:
            meta = envdiff.json_loads(f.read())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _programs(prefix: str) -> list[str]:
    """The names in PREFIX/bin (none if there is no such directory)."""
    try:
        return lightos.listdir(lightos.join(prefix, "bin"))
    except OSError:
        return []


def _loaded_artifacts(prefix: str) -> list[str]:
    """The artifact ids of a loaded profile; [] when it is gone (unload still works then)."""
    artifacts = _loaded_meta(prefix).get("artifacts")
    return [str(a) for a in artifacts] if isinstance(artifacts, list) else []


def python_site_dirs(prefix: str) -> list[str]:
    """`lib/pythonX.Y/site-packages` of a prefix that has no Python of its own.

    A profile holding a Python is a virtual environment whose interpreter
    finds its packages itself; packages loaded on their own (an artifact, a
    profile of Python packages for another interpreter) need PYTHONPATH, as
    Spack's and Lmod's Python modules set it.
    """
    if lightos.exists(lightos.join(prefix, "bin", "python3")):
        return []
    lib = lightos.join(prefix, "lib")
    try:
        names = lightos.listdir(lib)
    except OSError:
        return []
    return [lightos.join(lib, n, "site-packages") for n in sorted(names)
            if n.startswith("python3") and lightos.is_dir(lightos.join(lib, n, "site-packages"))]


def _who(loaded: Profile | LoadRecord) -> Who:
    return (loaded.name, getattr(loaded, "generation", None), loaded.hash)


class Session:
    """Applies loads and unloads to a copy of the environment and its record.

    `events` lists each change (action, explicit, profile, replaced) for the
    usage log; nothing is done with them unless a site configured one.
    """

    def __init__(self, environ: Mapping[str, str], roots: Callable[[], str | list[str]]):
        self.env: dict[str, str] = dict(environ)
        self._roots = roots
        self.sticky_refs: Callable[[], list[str]] = list  # the site's `sticky = [...]`
        self.force = False  # --force: sticky profiles go too
        self.quiet = False  # --quiet/-q: no note about programs of the same name
        self.events: list[tuple[str, bool, Who, list[Who] | None]] = []
        # packages set aside by a compiler swap (byname.py), back when it is swapped back
        self.inactive = (self.env.get(INACTIVE_VAR) or "").split()
        try:
            self.records = envdiff.decode(self.env.get(envdiff.RECORD_VAR))
        except envdiff.RecordError as e:
            raise UserError(f"{e}; run `unset {envdiff.RECORD_VAR} {envdiff.LOADED_VAR}` "
                            "(tcsh: unsetenv) to start afresh") from None

    def is_loaded(self, ref: str) -> bool:
        """Whether `ref` names a loaded profile (`hdenv is-loaded`, Lmod's is-loaded)."""
        try:
            self.find_loaded(ref)
        except UserError:
            return False
        return True

    def find_loaded(self, ref: str) -> int:
        """Index of the loaded profile `ref` names: NAME/N, NAME, a hash or hash prefix."""
        name, _, generation = ref.partition("/")
        for i, rec in enumerate(self.records):
            if ref in (rec.name, rec.hash, rec.ref) or (rec.package and ref == rec.package):
                return i  # a package also by its artifact id
            if (generation.isascii() and generation.isdigit() and rec.name == name
                    and rec.generation == int(generation)):
                return i  # demo/01
        if len(ref) >= MIN_PREFIX:
            hits = [i for i, r in enumerate(self.records) if r.hash.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise UserError(f"hash prefix {ref!r} matches several loaded profiles")
        what = " ".join(r.ref for r in self.records)
        detail = f"loaded: {what}" if what else "nothing is loaded"
        raise UserError(f"{ref!r} is not loaded ({detail})")

    def is_sticky(self, rec: LoadRecord) -> bool:
        """Sticky in its profile.json (`sticky = true` in the stack) or the site's list."""
        if self.force:
            return False
        if _loaded_meta(rec.prefix).get("sticky") is True:
            return True
        return any(s in (rec.name, rec.ref, rec.hash) for s in self.sticky_refs())

    def unload(self, ref: str) -> LoadRecord | None:
        if self.inactive and not self.is_loaded(ref):
            for aid in self.inactive:
                if ref in (aid, aid.rpartition("/")[0], aid.partition("/")[0]):
                    self.inactive.remove(aid)  # inactive: nothing in the environment to undo
                    note(f"{ref} was inactive; forgotten")
                    return None
        index = self.find_loaded(ref)
        if self.is_sticky(self.records[index]):
            note(f"{self.records[index].ref} is sticky: kept (--force unloads it)")
            return None
        rec = envdiff.unload(self.env, self.records, index)
        self.events.append(("unload", True, _who(rec), None))
        if rec.package and rec.family in TOOLCHAIN:
            self.set_aside(rec)
        return rec

    def set_aside(self, gone: LoadRecord) -> None:
        """Lmod's unload of a compiler: the packages built with it become inactive (they
        come back when it, or another compiler they have a build with, is loaded)."""
        if not any(r.package for r in self.records):
            return
        from . import byname

        for hash_, aid in byname.built_with(_roots(self._roots()), self.records,
                                            str(gone.package)):
            rec = envdiff.unload(self.env, self.records,
                                 next(i for i, r in enumerate(self.records) if r.hash == hash_))
            self.inactive.append(aid)
            note(f"{rec.ref} was built with {gone.ref}: inactive until a compiler it has"
                 " a build with is loaded (hdenv loaded shows it)")

    def load(self, ref: str, prof: Profile | None = None) -> None:
        loaded = self._load(ref, prof)
        if loaded is not None:
            prof, replaced = loaded
            if not self.quiet:
                self._note_shadowing(prof)
            if replaced:
                self.events.append(("auto-swap", False, _who(prof), replaced))
            else:
                self.events.append(("load", True, _who(prof), None))
            if prof.package and prof.family in TOOLCHAIN:
                self.retarget()

    def swap(self, old: str, new: str) -> None:
        rec = envdiff.unload(self.env, self.records, self.find_loaded(old))
        loaded = self._load(new)
        if loaded is not None:
            self.events.append(("swap", True, _who(loaded[0]), [_who(rec), *loaded[1]]))
        if rec.family in TOOLCHAIN or (loaded is not None and loaded[0].family in TOOLCHAIN):
            self.retarget()

    def retarget(self) -> None:
        """After a compiler or MPI changed: loaded packages follow it (byname.py)."""
        if not self.inactive and not any(r.package for r in self.records):
            return
        from . import byname

        plan = byname.retarget(_roots(self._roots()), self.records, self.inactive)
        for hash_ in plan.unload:
            envdiff.unload(self.env, self.records,
                           next(i for i, r in enumerate(self.records) if r.hash == hash_))
        self.inactive = plan.inactive
        for message in plan.notes:
            note(message)
        for prof in plan.load:
            self._load(prof.ref, prof)

    def _load(self, ref: str, prof: Profile | None = None) -> tuple[Profile, list[Who]] | None:
        """Load `ref` (or `prof`, found already); the profile and what it replaced, or
        None if it was loaded already."""
        prof = prof or resolve(self._roots(), ref, self.records)
        for rec in list(self.records):
            if rec.hash == prof.hash:
                note(f"{prof.ref} is already loaded; nothing to do")
                return None
        replaced = []
        for rec in list(self.records):
            if prof.name is not None and rec.name == prof.name:
                note(f"replacing {rec.ref} with {prof.ref}")
                envdiff.unload(self.env, self.records, self.records.index(rec))
                replaced.append(_who(rec))
            elif prof.family is not None and rec.family == prof.family:
                note(f"family {prof.family!r}: unloading {rec.ref} to load {prof.ref}")
                envdiff.unload(self.env, self.records, self.records.index(rec))
                replaced.append(_who(rec))
        self._refuse_other_builds(prof)
        self.records.append(apply(self.env, prof))
        return prof, replaced

    def _note_shadowing(self, prof: Profile) -> None:
        """One note when `prof` brings programs a loaded profile has too: the one loaded
        last comes first on PATH, which silently changes what `cc` or `python3` runs.
        (A family swap unloaded the other first, so it is never named here.)"""
        mine = set(_programs(prof.prefix))
        if not mine:
            return
        for rec in self.records[:-1]:
            both = sorted(mine.intersection(_programs(rec.prefix)))
            if both:
                shown = ", ".join(both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5
                                                else "")
                note(f"{prof.ref} and {rec.ref} both provide {shown}: {prof.ref}'s come first"
                     " on PATH now (--quiet: no such note)")

    def _refuse_other_builds(self, prof: Profile) -> None:
        """Two builds of one NAME/VERSION (a gcc and a clang variant) never load together:
        whichever comes first on PATH would win silently, program by program."""
        mine = {a.rpartition("/")[0]: a for a in prof.artifacts}
        for rec in self.records:
            for aid in _loaded_artifacts(rec.prefix):
                other = mine.get(aid.rpartition("/")[0])
                if other is not None and other != aid:
                    raise UserError(
                        f"{prof.ref} holds {other} but the loaded {rec.ref} holds another"
                        f" build of it ({aid}); swap them: hdenv swap {rec.ref} {prof.ref}")

    def purge(self) -> None:
        """Unload everything but sticky profiles (those too with --force), last first;
        inactive packages are forgotten, as Lmod's purge does."""
        self.inactive = []
        for index in range(len(self.records) - 1, -1, -1):
            if self.is_sticky(self.records[index]):
                continue
            rec = envdiff.unload(self.env, self.records, index)
            self.events.append(("unload", False, _who(rec), None))

    def reset(self, defaults: list[str]) -> None:
        """`module reset`: purge, then the site's `default-load` (sticky ones stay)."""
        self.purge()
        kept = {r.hash for r in self.records}
        for ref in defaults:
            prof = resolve(self._roots(), ref)
            if prof.hash not in kept:
                self.load(ref, prof)

    def reload(self, latest: bool) -> None:
        """Lmod's `refresh` (everything loaded, loaded again as it is: a variable clobbered
        by hand comes back) and `update` (`latest`: each profile loaded by name again as
        today's default generation, saying what changed), keeping the load order."""
        roots = _roots(self._roots())
        wanted = []
        for rec in self.records:
            if rec.package:  # a package by name: its exact build (its profile made again)
                prof = _artifact(roots, rec.package)
            elif latest and rec.name:
                prof = resolve(roots, rec.name)
                if prof.hash != rec.hash:
                    note(f"{rec.name}: {rec.ref} -> {prof.ref}"
                         f" ({rec.hash[:8]} -> {prof.hash[:8]})")
            elif "/" in rec.hash:  # an artifact loaded by id
                prof = _artifact(roots, rec.hash)
            else:
                home = _home(roots, rec.hash)
                if home is None:
                    raise UserError(f"{rec.ref} ({rec.hash}) is no longer in the store;"
                                    " `hdenv update` loads today's generation of each name")
                prof = read_profile(home, rec.hash, rec.name, rec.generation)
            wanted.append(prof)
        inactive = self.inactive
        self.purge()
        self.inactive = inactive  # a refresh changes no compiler
        for prof in wanted:
            self._load(prof.ref, prof)

    def restore(self, name: str, latest: bool) -> None:
        """Purge, then load collection `name`: its exact profiles, or (`latest`) today's
        default of each name, saying what changed."""
        from . import collection

        entries = collection.read(self.env, name)
        roots = _roots(self._roots())
        wanted = []
        for e in entries:
            pname = e.get("name") if isinstance(e.get("name"), str) else None
            gen = e.get("generation") if isinstance(e.get("generation"), int) else None
            package = e.get("package")
            if isinstance(package, str) and package.count("/") == 2:
                prof = _artifact(roots, package)  # a package by name: that exact build
            elif latest and pname:
                prof = resolve(roots, pname)
                if prof.hash != e["hash"]:
                    note(f"{pname}: {e.get('ref') or e['hash']} -> {prof.ref}"
                         f" ({e['hash'][:8]} -> {prof.hash[:8]})")
            elif "/" in e["hash"]:  # an artifact loaded by id: its exact id again
                prof = _artifact(roots, e["hash"])
            else:
                home = _home(roots, e["hash"])
                if home is None:
                    hint = (f"; `hdenv restore {name} --latest` loads today's {pname}"
                            if pname else "")
                    raise UserError(f"collection {name!r}: profile {e['hash']} ("
                                    f"{e.get('ref') or 'by hash'}) is no longer in the store"
                                    + hint)
                prof = read_profile(home, e["hash"], pname, gen)
            wanted.append(prof)
        self.purge()
        for prof in wanted:
            self.load(prof.ref, prof)

    def finish(self) -> dict[str, str]:
        envdiff.store_records(self.env, self.records)
        if self.inactive:
            self.env[INACTIVE_VAR] = " ".join(self.inactive)
        else:
            self.env.pop(INACTIVE_VAR, None)
        return self.env


def _arity(cmd: str, args: list[str], low: int, high: int | None) -> None:
    for a in args:
        if a.startswith("-"):
            raise UserError(f"hdenv {cmd}: unknown option {a!r}")
    if len(args) < low or (high is not None and len(args) > high):
        usage = {"load": "REF...", "unload": "REF...", "swap": "OLD NEW", "purge": "",
                 "restore": "[NAME] [--latest]", "reset": "", "use": "STORE...",
                 "unuse": "STORE..."}[cmd]
        raise UserError(f"usage: hdenv {cmd} {usage}".rstrip())


def run(cmd: str, args: list[str], shell: Shell, environ: Mapping[str, str],
        roots: Callable[[], str | list[str]], session: Session | None = None,
        defaults: Callable[[], list[str]] = list) -> str:
    """The shell code for one command; raises UserError before printing anything.

    `roots` gives the store and its upstreams (or just the store) when first
    needed; pass a `session` to see its usage events afterwards.
    """
    session = session or Session(environ, roots)
    if cmd in ("unload", "purge", "reset") and "--force" in args:
        session.force = True
        args = [a for a in args if a != "--force"]
    if cmd in ("load", "try-load") and ("--quiet" in args or "-q" in args):
        session.quiet = True
        args = [a for a in args if a not in ("--quiet", "-q")]
    if cmd in ("load", "unload"):
        _arity(cmd, args, 1, None)
        for ref in args:
            session.load(ref) if cmd == "load" else session.unload(ref)
    elif cmd == "swap":
        _arity(cmd, args, 2, 2)
        session.swap(args[0], args[1])
    elif cmd == "purge":
        _arity(cmd, args, 0, 0)
        session.purge()
    elif cmd == "restore":
        latest = "--latest" in args
        words = [a for a in args if a != "--latest"]
        _arity(cmd, words, 0, 1)
        session.restore(words[0] if words else "default", latest)
    elif cmd == "reset":
        _arity(cmd, args, 0, 0)
        session.reset(defaults())
    elif cmd in ("refresh", "update"):
        _arity(cmd, args, 0, 0)
        session.reload(latest=cmd == "update")
    elif cmd == "try-load":  # Lmod's: what exists is loaded, the rest silently skipped
        _arity(cmd, args, 1, None)
        for ref in args:
            try:
                session.load(ref)
            except UserError:  # noqa: SIM105 - contextlib costs the fast path an import
                continue
    elif cmd == "ml":
        run_ml(args, session)
    elif cmd in ("use", "unuse"):
        _arity(cmd, args, 1, None)
        use(session.env, args, cmd == "use")
    else:
        raise UserError(f"not a load command: {cmd!r}")
    after = session.finish()
    envlimits.check(environ, after, f"hdenv {cmd} {' '.join(args)}".rstrip())
    return shell.script(envdiff.changes(dict(environ), after))


def use(env: dict[str, str], stores: list[str], add: bool) -> None:
    """`hdenv use STORE` adds an upstream store for this shell (first, as `module use`
    prepends); `unuse` removes it. A store is a directory with `profiles/` or `names/`."""
    used = [u for u in (env.get(USE_VAR) or "").split(":") if u]
    for store in stores:
        path = lightos.absolute(store)
        if add:
            if not (lightos.is_dir(lightos.join(path, "profiles"))
                    or lightos.is_dir(lightos.join(path, "names"))):
                raise UserError(f"{store} is not an hdenv store (no profiles/ or names/)")
            used = [path, *(u for u in used if u != path)]
        elif path in used:
            used.remove(path)
        else:
            raise UserError(f"{store} is not in use (in use: {' '.join(used) or 'none'})")
    if used:
        env[USE_VAR] = ":".join(used)
    else:
        env.pop(USE_VAR, None)


# Lmod's `ml`: a first word it knows is a command (with Lmod's short forms), else
# every word is a REF to load, `-REF` one to unload (unloads first, as Lmod does)
ML_ALIASES = {"av": "avail", "add": "load", "rm": "unload", "del": "unload", "sw": "swap",
              "switch": "swap", "display": "show"}
ML_COMMANDS = frozenset({*COMMANDS, "avail", "list", "loaded", "spider", "show", "save",
                         "savelist", "describe", "disable", "whatis", "help", "keyword",
                         "use", "unuse", "is-loaded", "is-avail"})


def ml_words(args: list[str]) -> list[str] | None:
    """The hdenv command `ml ARGS` means, or None for the `ml A -B` form."""
    if not args:
        return ["list"]
    first = ML_ALIASES.get(args[0], args[0])
    return [first, *args[1:]] if first in ML_COMMANDS else None


def run_ml(args: list[str], session: Session) -> None:
    """`ml A -B`: unload B, then load A, in one evaluation."""
    for a in args:
        if a.startswith("--") or a == "-":
            raise UserError(f"ml: unknown option {a!r} (ml REF... -REF...)")
    for a in args:
        if a.startswith("-"):
            session.unload(a[1:])
    for a in args:
        if not a.startswith("-"):
            session.load(a)


def _usage_sink(session: Session, config: Config) -> str | None:
    """The site's usage log, if the session changed something and there is one."""
    if not session.events:
        return None
    try:
        return config.usage_log() or None
    except UserError:
        return None  # a broken config was already reported if it mattered to the load


def _usage_events(session: Session) -> list[dict[str, Any]]:
    from .. import usage

    return [usage.event(action, explicit, usage.profile_fields(*who),
                        None if replaced is None else [usage.profile_fields(*r) for r in replaced])
            for action, explicit, who, replaced in session.events]


def usage_by_shell(session: Session, sink: str | None, environ: Mapping[str, str],
                   shell: Shell) -> str:
    """Code that has the shell send the session's usage lines to `sink` itself, where it
    can (bash, `udp://`; Shell.datagrams), to run before the load's own; "" when
    `log_usage` sends them once the load's code is out. Never raises."""
    if sink is None or not sink.startswith("udp://"):
        return ""
    from .. import usage

    try:
        if usage.disabled(environ):
            return ""
        _kind, host, port = usage.parse(sink)
        return shell.datagrams(host, port, usage.lines(_usage_events(session),
                                                       usage.who(environ))) or ""
    except Exception:  # noqa: BLE001 - a log must never cost the user their load
        return ""


def log_usage(session: Session, sink: str | None, environ: Mapping[str, str]) -> None:
    """Send the session's changes to the site's usage log `sink`, if any (never raises)."""
    if sink is None:
        return
    from .. import usage

    usage.emit(_usage_events(session), environ, sink)


# -- the function's entry: global options, help, and what the full program answers --

PRINT_COMMANDS = ("avail", "loaded", "spider", "list", "savelist", "whatis", "keyword", "help",
                  "show")


class Call:
    """One invocation of the shell function, global options taken off."""

    def __init__(self, store: str | None, debug: bool, cmd: str, args: list[str]):
        self.store = store
        self.debug = debug
        self.cmd = cmd
        self.args = args


def parse_call(args: list[str]) -> Call | None:
    """`[--store S] [--debug] CMD ARGS...`; None when the full program must answer.

    That is anything else before the command (`--help`, `--version`, a typo),
    and a `-h`/`--help` after it: click prints the real usage of every command.
    """
    store, debug, i = None, False, 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "--store" and i + 1 < len(args):
            store, i = args[i + 1], i + 2
        elif args[i].startswith("--store="):
            store, i = args[i][len("--store="):], i + 1
        elif args[i] == "--debug":
            debug, i = True, i + 1
        else:
            return None
    if i >= len(args):
        return None
    rest = args[i + 1:]
    for a in rest:
        if a == "--":
            break
        if a in ("-h", "--help"):
            return None
    return Call(store, debug, args[i], rest)


def full_program(shell_name: str, args: list[str]) -> list[str]:
    """The command line of the full program for `args`, as the function's `*)` branch runs it."""
    return ["env", f"HDENV_SHELL_FUNCTION={shell_name}", sys.executable, "-m", "hdenv", *args]


def _exec_full(shell_name: str, args: list[str]) -> None:
    import posix

    argv = full_program(shell_name, args)
    sys.stdout.flush()
    env = {**posix.environ, b"HDENV_SHELL_FUNCTION": shell_name.encode()}
    posix.execve(sys.executable, argv[2:], env)


def _print_command(shell_name: str, call: Call | None, args: list[str],
                   environ: Mapping[str, str], roots: Callable[[], list[str]]) -> None:
    """avail, loaded, spider, list: printed straight to the terminal, never evaluated.

    `list` with a word (`list artifacts`) is the full program's store listing.
    """
    if call is None or (call.cmd == "list" and any(not a.startswith("-") for a in call.args)):
        _exec_full(shell_name, args)
        return
    if call.cmd == "show":  # `show REF` as the full program prints it; any other form is its
        text = _show_text(call.args, environ, roots) if len(call.args) == 1 else None
        if text is None:
            _exec_full(shell_name, args)
            return
        sys.stdout.write(text)
        return
    from . import catalog, terminal

    if call.cmd in ("whatis", "keyword", "help"):  # as their click commands print them
        rest, opts = terminal.take_options(call.args)
        if len(rest) != 1 or rest[0].startswith("-"):
            _exec_full(shell_name, args)  # usage, --help: the full program's words
            return
        terminal.write(_finding_text(call.cmd, rest[0], roots()), environ, opts)
        return
    if call.cmd == "savelist":  # as `hdenv savelist` prints it, without click
        from . import collection

        rest, opts = terminal.take_options(call.args)
        flags, words = catalog._options(rest, set(catalog.TERSE))
        if words:
            raise UserError("usage: hdenv savelist [-t]")
        terminal.write(collection.savelist_text(collection.names(environ), bool(flags)),
                       environ, opts)
        return
    try:
        rest, opts = terminal.take_options(call.args)
        width = terminal.width(environ) if call.cmd == "avail" else terminal.DEFAULT_WIDTH
        text = catalog.run(call.cmd, rest, environ, roots() if call.cmd in ("avail", "spider")
                           else [], width)
    except catalog.Delegate:
        _exec_full(shell_name, args)
        return
    terminal.write(text, environ, opts)


def _show_text(args: list[str], environ: Mapping[str, str], roots: Callable[[], list[str]]
               ) -> str | None:
    """`show REF` through shell/showing.py, or None when only the full program can say
    (an option, a REF it alone resolves, any error: its words and exit code)."""
    if args[0].startswith("-"):
        return None
    from ..showtext import show_text
    from . import showing

    try:
        stores = roots()
        found = showing.find(stores, args[0], environ)
        if found is None:
            return None
        info = showing.info(stores, found)
        return show_text(showing.header(stores, found, info), info)
    except Exception:  # the full program says what is wrong, as it always did
        return None


def _finding_text(cmd: str, word: str, roots: list[str]) -> str:
    """`whatis REF`, `help REF`, `keyword TEXT` on the fast path (shell/finding.py)."""
    from ..store.index import Index
    from . import finding

    index = Index(roots)
    if cmd == "keyword":
        found = finding.keyword_data(index, word)
        if not found:
            raise UserError(f"nothing mentions {word!r} (names, descriptions, help texts)")
        return finding.whatis_text(found)
    if cmd == "help":
        return finding.help_text(finding.lookup(index, word))
    return finding.whatis_text(finding.lookup(index, word))


def quiet_broken_pipe() -> None:
    """`hdenv avail | head`: the reader left, so say nothing and exit 0, as `cat` would.

    stdout points at /dev/null from here on, so the interpreter's final flush
    cannot complain either.
    """
    import posix

    try:
        null = posix.open("/dev/null", posix.O_WRONLY)
        posix.dup2(null, 1)
    except OSError:
        pass
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the shell function: SHELL CONFIG STORE ARGS...

    The function sends `load`, `unload`, `swap`, `purge` and anything starting
    with an option here and evaluates what it prints; `avail`, `loaded` and
    `spider` it runs without evaluating (the first word tells which). What the
    fast path does not do becomes code that runs the full program.
    """
    # at exit the objects it made are frozen: the interpreter's last collection would
    # walk them all for cycles (a millisecond or two of every load; see cli/main.py)
    atexit.register(gc.freeze)
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    session: Session | None = None
    sink: str | None = None  # the site's usage log, for this session's changes
    by_shell = ""  # the usage log's code the shell runs, if it sends the lines itself
    try:
        if len(argv) < 4:
            raise UserError("the hdenv shell function is out of date; run `hdenv init` again")
        shell_name, default_config, default_store, *args = argv
        environ = lightos.environ()
        call = parse_call(args)
        if call is not None and call.store:  # --store: that store, then the configured upstreams
            environ = {**environ, "HDENV_STORE": call.store}
        config = Config(environ, default_config, default_store)
        if args[0] in PRINT_COMMANDS:
            _print_command(shell_name, call, args, environ, config.roots)
            return
        shell = get_shell(shell_name)
        if call is not None and call.cmd == "ml":
            words = ml_words(call.args)
            if words is not None and words[0] not in COMMANDS:  # ml av: the program prints
                glob = ["--store", call.store] if call.store else []
                call = None
                args = [*glob, *words]
            elif words is not None:
                call.cmd, call.args = words[0], words[1:]
        if call is None or call.cmd not in (*COMMANDS, "ml"):
            code = " ".join(shell.quote(a) for a in full_program(shell_name, args)) + "\n"
        else:
            session = Session(environ, config.roots)
            session.sticky_refs = config.sticky
            code = run(call.cmd, call.args, shell, environ, config.roots, session,
                       config.default_load)
            sink = _usage_sink(session, config)
            by_shell = usage_by_shell(session, sink, environ, shell)
            code = by_shell + code
    except UserError as e:
        print(f"hdenv: error: {e.render()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        quiet_broken_pipe()
    except Exception as e:  # a bug: one line, as the full program says it
        if debug:
            raise
        print(f"hdenv: error: internal error: {type(e).__name__}: {e}"
              " (run with --debug for a traceback)", file=sys.stderr)
        sys.exit(1)
    try:
        sys.stdout.write(code)
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
    if session is not None and not by_shell:
        log_usage(session, sink, environ)


if __name__ == "__main__":  # pragma: no cover
    main()

"""`hdenv show REF`: what it says about a profile or an artifact, for both ways in.

The full program (`cli/plain.py`) resolves REF with the store's own rules
(`store.layout.Store.resolve`, then a package by name as `load` takes it); the
shell function's `python -I -S` path (`fastload`) resolves the forms it can be
sure of itself (`find`) and hands anything else, errors included, to the full
program. Both then gather the same facts here (`info`, `header`) and print them
through `showtext`, so the two cannot drift apart. Nothing here imports more
than `os` (through store.index): no pathlib, json or store.layout.
"""

from __future__ import annotations

import os

from ..errors import DamagedFile, UserError
from ..fastjson import json_loads
from ..showtext import show_header
from ..store.index import (
    ARTIFACT_META,
    META_DIR,
    PROFILE_META,
    artifact_root,
    generation_dates,
    names_of,
    read_about,
    runtime_closure,
)
from ..store.treesize import size as tree_size
from ..validate import profile_name_problem
from . import envdiff, fastload

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class Found:
    """What REF named, as store.layout's `Ref` says it (paths as strings)."""

    def __init__(self, kind: str, ident: str, path: str, name: str | None = None,
                 upstream: str | None = None):
        self.kind = kind  # "profile" or "artifact"
        self.ident = ident  # profile hash or artifact id
        self.path = path
        self.name = name  # the profile name it was found by
        self.upstream = upstream  # the upstream store it lives in; None: the first store


# -- REFs the shell function can be sure of ------------------------------------------

def find(roots: list[str], ref: str, environ: Mapping[str, str]) -> Found | None:
    """What `Store.resolve` (then `show`'s package fallback) finds for `ref`, or None when
    only the full program can say (an error, an ambiguity, an unusual form)."""
    if not ref:
        return None
    name, _, rest = ref.partition("/")
    if rest.isascii() and rest.isdigit():  # NAME/N of a profile, else an artifact's NAME/VERSION
        named = _named(roots, name, str(int(rest)))
        if named is not None or _name_root(roots, name) is not None:
            return named  # None: no such generation, which the full program words
    if "/" in ref:
        return _artifact(roots, ref, environ)
    if _name_root(roots, ref) is not None:
        return _named(roots, ref, "current")  # None: dangling, which the full program words
    if fastload.is_hash_like(ref) and len(ref) >= fastload.MIN_PREFIX:
        try:
            prof = fastload._profile_by_prefix(roots, ref)
        except UserError:  # ambiguous
            return None
        if prof is not None:
            home = prof.prefix.rpartition("/profiles/")[0]
            return Found("profile", prof.hash, prof.prefix, None, _upstream(roots, home))
    return _package(roots, ref, environ)


def _upstream(roots: list[str], home: str | None) -> str | None:
    return home if home is not None and home != roots[0] else None


def _name_root(roots: list[str], name: str) -> str | None:
    """The first store with names/NAME/current: it decides what NAME means."""
    for root in roots:
        if os.path.lexists(os.path.join(root, "names", name, "current")):
            return root
    return None


def _named(roots: list[str], name: str, entry: str) -> Found | None:
    root = _name_root(roots, name)
    if root is None:
        return None
    link = os.path.join(root, "names", name, entry)
    if not os.path.lexists(link):
        return None
    target = os.path.realpath(link)
    if not os.path.isfile(os.path.join(target, META_DIR, PROFILE_META)):
        return None  # dangling: the full program words it
    hash_ = os.path.basename(target)
    return Found("profile", hash_, target, name, _upstream(roots, fastload._home(roots, hash_)))


def _artifact(roots: list[str], ref: str, environ: Mapping[str, str]) -> Found | None:
    """An artifact id, or NAME/VERSION: the one artifact of it, else the build `load`
    would take."""
    parts = ref.split("/")
    if len(parts) not in (2, 3) or not all(p and p not in (".", "..") for p in parts):
        return None
    if len(parts) == 3:
        return _artifact_found(roots, ref) if len(parts[2]) == fastload.HASH_CHARS else None
    found: set[str] = set()
    for root in roots:
        vdir = os.path.join(root, "artifacts", ref)
        try:
            hashes = os.listdir(vdir)
        except OSError:
            continue
        found.update(h for h in hashes
                     if os.path.isfile(os.path.join(vdir, h, META_DIR, ARTIFACT_META)))
    if len(found) == 1:
        return _artifact_found(roots, f"{ref}/{found.pop()}")
    return _package(roots, ref, environ)


def _artifact_found(roots: list[str], aid: str) -> Found | None:
    root = artifact_root(roots, aid)
    if root is None:
        return None
    return Found("artifact", aid, os.path.join(root, "artifacts", aid), None,
                 _upstream(roots, root))


def _package(roots: list[str], ref: str, environ: Mapping[str, str]) -> Found | None:
    """The build `load REF` would take (with what `environ` has loaded), as `show` shows."""
    from . import byname
    from .catalog import loaded_records

    aid = byname.chosen_build(roots, ref, loaded_records(environ))
    return _artifact_found(roots, aid) if aid is not None else None


# -- what show says -----------------------------------------------------------------

def info(roots: list[str], found: Found) -> dict[str, Any]:
    """The facts `show` prints (and `--json` gives), before `header` adds its own."""
    if found.kind == "profile":
        out = profile_info(roots, found)
        out.setdefault("kind", "profile")
        out["upstream"] = found.upstream
        return out
    aid = found.ident
    meta = _read_json(_artifact_dir(roots, aid) + f"/{META_DIR}/{ARTIFACT_META}",
                      f"artifact {aid} is not in the store")
    return {
        "kind": "artifact",
        "id": aid,
        "path": found.path,
        "spec": _spec(roots, aid.split("/")[2]),
        "runtime_deps": meta.get("runtime_deps", []),
        "runtime_closure": runtime_closure(roots, aid),
        "size": tree_size(found.path),
        "created": meta.get("created"),
        "build_seconds": meta.get("build_seconds"),
        # from the link audit: libraries taken from the host that no declared host artifact has
        "undeclared_system_libraries": meta.get("links", {}).get("undeclared", []),
        "upstream": found.upstream,
    }


def profile_info(roots: list[str], found: Found) -> dict[str, Any]:
    """A profile's artifacts, sizes, env, names and (found by name) generations."""
    meta = _read_json(os.path.join(found.path, META_DIR, PROFILE_META),
                      f"profile {found.ident} is not in the store")
    artifact_sizes = {a: tree_size(_artifact_dir(roots, a)) for a in meta["artifacts"]}
    out: dict[str, Any] = {
        "hash": meta["hash"],
        "path": found.path,
        "name": found.name,
        "artifacts": meta["artifacts"],
        "env": meta["env"],
        "family": meta["family"],
        "exclude": meta.get("exclude", []),
        "priority": meta.get("priority", []),
        "python": meta.get("python"),
        "created": meta.get("created"),
        "size": sum(artifact_sizes.values()),
        "artifact_sizes": artifact_sizes,
        "farm_size": tree_size(found.path),
        "names": [{"name": n, "generation": g, "current": c}
                  for n, g, c in names_of(roots[0], meta["hash"])],
    }
    if found.name is not None:
        out["generations"] = [
            {"number": number, "hash": hash_, "created": created, "current": current}
            for number, hash_, created, current in generation_dates(_name_dir(roots, found.name))
        ]
    return out


def _name_dir(roots: list[str], name: str) -> str:
    problem = profile_name_problem(name)
    if problem is not None:
        raise UserError(f"bad profile name {name!r}: {problem}")
    ndir = os.path.join(_name_root(roots, name) or roots[0], "names", name)
    if not os.path.isdir(ndir):
        raise UserError(f"unknown profile name {name!r}")
    return ndir


def _artifact_dir(roots: list[str], aid: str) -> str:
    """Where the artifact is: the first store holding it, else where the first would."""
    return os.path.join(artifact_root(roots, aid) or roots[0], "artifacts", aid)


def _spec(roots: list[str], hash_: str) -> Any:
    for root in roots:
        path = os.path.join(root, "specs", hash_ + ".json")
        if os.path.exists(path):
            return _read_json(path, f"no spec with hash {hash_} in the store")
    raise UserError(f"no spec with hash {hash_} in the store")


def _read_json(path: str, missing: str) -> Any:
    """As store.fsutil.read_json (a damaged file: one line, exit 1), with `missing` as the
    UserError of a file that is not there."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise UserError(missing) from None
    try:
        return json_loads(text)
    except ValueError as e:
        raise DamagedFile(f"damaged file ({e}); `hdenv verify` checks the whole store",
                          file=path) from None


def header(roots: list[str], found: Found, facts: dict[str, Any]) -> str:
    """`show`'s head, as `module show`: the description and what loading changes.

    The changes come from applying the profile to an empty environment with
    the load path's own code, so they are exactly what `hdenv load` does.
    Adds "description" and "load" to `facts` for `--json`.
    """
    if found.kind == "profile":
        prof = fastload.read_profile(found.upstream or roots[0], found.ident, found.name)
        label = found.name or found.ident
        described = _about(roots, found.ident)
    else:
        prof = fastload.Profile(found.ident, None, found.path, {}, None)
        label = found.ident
        described = _about(roots, found.ident.rsplit("/", 1)[1])
    changes = load_changes(fastload.apply({}, prof))
    facts["description"] = described
    facts["load"] = changes
    return show_header(described, label, changes)


def _about(roots: list[str], hash_: str) -> str:
    """The description, from the first store that has one (as `Store.about`)."""
    for root in roots:
        found = read_about(root, hash_)
        if found:
            return found.get("description", "")
    return ""


def load_changes(record: envdiff.LoadRecord) -> list[dict[str, str]]:
    """What loading changes, from the record a load into an empty environment makes."""
    out = []
    for var, change in record.paths.items():
        out += [{"action": "prepend", "variable": var, "value": v} for v in change.pre]
    for var, vchange in record.vars.items():
        out.append({"action": "set", "variable": var, "value": vchange.new})
    return out

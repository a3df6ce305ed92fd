"""`whatis`, `help` and `keyword`: what a profile or package is, as Lmod answers.

Texts come from the stack file (`description`, `help`, `homepage`), kept
beside each spec in its about file (store.index.read_about), so rewording
them rebuilds nothing. Profiles are named profiles (their default
generation unless NAME/N is given); packages are those of named profiles.
The texts come from stack files others wrote: what these functions return
has its control characters made visible (sanitize.printable), as `avail`'s.
"""

from __future__ import annotations

from ..errors import UserError
from ..sanitize import printable
from ..store.index import Index, about_hashes, read_about
from . import catalog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _profile(index: Index, ref: str) -> dict[str, Any] | None:
    """ref, hash, root and about of a named profile REF (NAME or NAME/N), else None."""
    name, _, number = ref.partition("/")
    named = index.get(name)
    if named is None or (number and not number.isdigit()):
        return None
    gens = [g for g in named.generations if (int(number) == g.number if number else g.current)]
    if not gens:
        return None
    gen = gens[0]
    facts = index.facts(named.root, gen.hash)
    return {"kind": "profile", "ref": f"{name}/{gen.number}", "hash": gen.hash,
            "about": read_about(named.root, gen.hash),
            "packages": [f"{p}/{v}" for p, v, _ in facts.packages()],
            "load": f"hdenv load {ref}"}


def _packages(index: Index, ref: str) -> list[dict[str, Any]]:
    """Each build of package NAME (or NAME/VERSION), by exact name."""
    name = ref.partition("/")[0].lower()
    out = []
    for entry in catalog.spider_data(index, ref):
        if entry["package"].lower() != name:
            continue
        store = entry["profiles"][0]["store"]
        variant = f" [{entry['variant']}]" if entry.get("variant") else ""
        out.append({"kind": "package", "ref": f"{entry['package']}/{entry['version']}{variant}",
                    "about": read_about(store, entry["ids"][0].rsplit("/", 1)[1]),
                    "load": entry["load"], "packages": []})
    return out


def lookup(index: Index, ref: str) -> list[dict[str, Any]]:
    prof = _profile(index, ref)
    found = ([prof] if prof else []) + _packages(index, ref)
    if not found:
        from ..store.suggest import close_matches

        close = close_matches(index, ref.partition("/")[0])
        hint = f"; did you mean {', '.join(close)}?" if close else " (see `hdenv keyword TEXT`)"
        raise UserError(f"no profile or package {ref!r}{hint}")
    return found


def whatis_text(found: list[dict[str, Any]]) -> str:
    return printable("".join(f"{f['ref']}: {f['about'].get('description') or '(no description)'}"
                             "\n" for f in found))


def help_text(found: list[dict[str, Any]]) -> str:
    parts = []
    for f in found:
        about = f["about"]
        lines = [f"{f['kind']} {f['ref']}"]
        lines += [f"  {about['description']}"] if about.get("description") else []
        lines += [f"  homepage: {about['homepage']}"] if about.get("homepage") else []
        lines += [f"  packages: {' '.join(f['packages'])}"] if f["packages"] else []
        lines.append(f"  load it with: {f['load']}")
        if about.get("help"):
            lines += ["", *about["help"].rstrip("\n").splitlines()]
        parts.append("\n".join(lines) + "\n")
    return printable("\n".join(parts))


def keyword_data(index: Index, text: str) -> list[dict[str, Any]]:
    """Named profiles and packages whose name, description or help contain `text`."""
    needle = text.lower()
    out: list[dict[str, Any]] = []
    for named in index.named():
        if catalog.is_hidden(index, named) or named.current is None:
            continue
        prof = _profile(index, named.name)
        if prof and _hit(needle, named.name, prof["about"]):
            out.append(prof)
    candidates = _package_candidates(index, needle)
    if not candidates:
        return out
    seen = set()
    for entry in catalog.spider_data(index, "", wanted=candidates):
        about = read_about(entry["profiles"][0]["store"], entry["ids"][0].rsplit("/", 1)[1])
        key = (entry["package"], entry["version"], entry.get("variant"))
        if key not in seen and _hit(needle, entry["package"], about):
            seen.add(key)
            variant = f" [{entry['variant']}]" if entry.get("variant") else ""
            out.append({"kind": "package", "ref": f"{entry['package']}/{entry['version']}"
                        f"{variant}", "about": about, "load": entry["load"], "packages": []})
    return out


def _package_candidates(index: Index, needle: str) -> set[str]:
    """Ids of the listed builds whose name or about file holds `needle`, each read once
    where `spider_data` would read it (the first listing profile's store): listing every
    build (variant labels, load names) reads a spec each, 30,000 at 1,000 named profiles
    of 30 packages, and only the matching ones need that. About files are looked for in
    one listing of `specs/` per store, not with an open of each build's."""
    with_about: dict[str, set[str] | None] = {}
    checked: set[str] = set()
    out: set[str] = set()
    for named in index.named():
        if catalog.is_hidden(index, named):
            continue
        for gen in named.generations:
            for pname, _version, aid in index.facts(named.root, gen.hash).packages():
                if aid in checked:
                    continue
                checked.add(aid)
                if needle in pname.lower():
                    out.add(aid)
                    continue
                if named.root not in with_about:
                    with_about[named.root] = about_hashes(named.root)
                known, hash_ = with_about[named.root], aid.rsplit("/", 1)[1]
                if (known is None or hash_ in known) and _hit(
                        needle, "", read_about(named.root, hash_)):
                    out.add(aid)
    return out


def _hit(needle: str, name: str, about: dict[str, str]) -> bool:
    return any(needle in t.lower() for t in (name, about.get("description", ""),
                                              about.get("help", "")))

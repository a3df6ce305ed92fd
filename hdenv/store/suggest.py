"""The error for a REF that names nothing, with what the user probably meant.

Run on the error path only (difflib costs tens of milliseconds), by
`Store.resolve` and by the load fast path alike, so both say the same. An
Lmod user types a package name (`hdenv load lua`) where hdenv wants the
profile that holds it; that gets the profiles and the command to load one.
A typo (`demoo`) gets the closest names.
"""

from __future__ import annotations

from ..errors import UserError
from .index import Index

GENERIC = "not a profile name, NAME/N, profile hash or artifact id (see `hdenv avail`)"


def _join(items: list[str]) -> str:
    return ", ".join(items)


def package_hint(index: Index, name: str, version: str | None = None) -> str | None:
    """`lua is a package in profiles gnu, gnu-debug: hdenv load gnu`, or None."""
    holders = index.holders(name, version)
    if not holders:
        return None
    what = f"{name}/{version}" if version else name
    current = sorted({n.name for n, g, _ in holders if g.current})
    if current:
        word = "profile" if len(current) == 1 else "profiles"
        return f"{what} is a package in {word} {_join(current)}: hdenv load {current[0]}"
    older = sorted({f"{n.name}/{g.number}" for n, g, _ in holders},
                   key=lambda r: (r.split("/")[0], int(r.split("/")[1])))
    return (f"{what} is a package in older generations only ({_join(older)}):"
            f" hdenv load {older[-1]}")


def close_matches(index: Index, word: str) -> list[str]:
    """Profile names and packages spelt like `word` (difflib), best first."""
    import difflib

    names = [n.name for n in index.named()]
    packages = [p for p in index.package_names() if p not in names]
    candidates = names + packages
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:  # only the case differs
        return [lowered[word.lower()]]
    return difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)


def unknown_ref(roots: list[str], ref: str, detail: str = GENERIC) -> UserError:
    """The one-line error for `ref`: a package hint, close names, or `detail`."""
    index = Index(roots)
    name, _, rest = ref.partition("/")
    version = rest if rest and "/" not in rest else None
    hint = package_hint(index, name, version) or (package_hint(index, name) if version else None)
    if hint is not None:
        return UserError(f"unknown REF {ref!r}: {hint}")
    if not index.named():
        where = " or ".join(index.roots)
        return UserError(f"unknown REF {ref!r}: {where} has no named profiles yet"
                         " (build one: hdenv build FILE.toml)")
    matches = close_matches(index, name)
    if matches:
        labelled = []
        for match in matches:
            if index.get(match) is None:
                holders = sorted({n.name for n, g, _ in index.holders(match) if g.current})
                labelled.append(f"{match} (a package in {_join(holders)})")
            else:
                labelled.append(match + (f"/{rest}" if rest else ""))
        return UserError(f"unknown REF {ref!r}; did you mean {_join(labelled)}?")
    return UserError(f"unknown REF {ref!r}: {detail}")

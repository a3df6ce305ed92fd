"""How builds of one package are named apart, for people.

Two builds of `zlib/1.2.13` (one with gcc, one with clang, or `-O1` against
`-O3`) must get names a person can read and type, the same in the generated
modulefiles (`modules/hierarchy.py`), in `avail`, and in `load`'s list of
choices (`shell/byname.py`). That is why the naming lives here, below both
`modules` and `shell` in the layer order, and uses nothing heavier than
builtins: `hdenv load NAME` runs it under `python -I -S`, where even `re`
costs milliseconds.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs ms on the load path
    from collections.abc import Mapping
    from typing import Any

SUFFIX_CHARS = 7
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+~")


def version_key(version: str) -> list[tuple[int, int, str]]:
    """Numbers compare as numbers, letters as text (1.10 > 1.9 > 1.9rc)."""
    out: list[tuple[int, int, str]] = []
    run, digits = "", False
    for ch in [*version, " "]:
        is_digit = ch.isascii() and ch.isdigit()
        is_alpha = ch.isascii() and ch.isalpha()
        if run and (is_digit != digits or not (is_digit or is_alpha)):
            out.append((1, int(run), "") if digits else (0, 0, run))
            run = ""
        if is_digit or is_alpha:
            run, digits = run + ch, is_digit
    return out


def hash_suffixes(hashes: list[str]) -> dict[str, str]:
    """The shortest prefix of each hash (at least SUFFIX_CHARS) unique among them."""
    width = SUFFIX_CHARS
    while len({h[:width] for h in hashes}) < len(set(hashes)) and width < 64:
        width += 1
    return {h: h[:width] for h in hashes}


def _word(text: str) -> str:
    """`text` in characters a module version may hold: other runs become one `-`."""
    out, dash = [], False
    for ch in text:
        if ch in _WORD_CHARS:
            out.append(ch)
            dash = False
        elif not dash:
            out.append("-")
            dash = True
    return "".join(out).strip("-.")


def variant_suffixes(traits: Mapping[str, tuple[str, ...]]) -> dict[str, str] | None:
    """Module-version suffixes a person can tell apart (`-O1`, `-clang`), or None.

    From what one build has and the others lack: a dependency's name, then the
    value of an environment variable that differs (`CFLAGS=-O1` gives `O1`),
    in characters a module version may hold; a word said twice (the compiler
    as a dependency and as `CC`) is said once. None when that does not give
    every build its own non-empty suffix: the hash decides then.
    """
    common = set.intersection(*(set(t) for t in traits.values()))
    out = {}
    for ident, mine in traits.items():
        words = [_word(t.split(":", 1)[1].split("=", 1)[-1]) for t in mine if t not in common]
        out[ident] = "-".join(dict.fromkeys(w for w in words if w))
    if not all(out.values()) or len(set(out.values())) < len(out):
        return None
    return out


def split_id(aid: str) -> tuple[str, str, str]:
    """NAME, VERSION, HASH of an artifact id (empty strings for anything else)."""
    parts = aid.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", "")


def dep_ids(spec: Mapping[str, Any]) -> list[str]:
    """An artifact's dependencies and build-only dependencies, as its spec lists them."""
    return [str(d) for key in ("deps", "build_deps") for d in spec.get(key) or []]


def spec_traits(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """What may tell two builds of one NAME/VERSION apart: dependency names, env values."""
    deps = sorted({split_id(d)[0] for d in dep_ids(spec)} - {""})
    env = spec.get("env")
    env = env if isinstance(env, dict) else {}
    return (*(f"dep:{d}" for d in deps), *(f"env:{k}={v}" for k, v in sorted(env.items())))


def build_names(builds: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """`NAME/VERSION[-SUFFIX]` for each artifact id of `builds` (id -> its traits).

    Builds sharing a NAME/VERSION get the suffixes of `variant_suffixes`, or a
    short hash when those do not tell them apart; a lone build keeps its plain name.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for aid in builds:
        name, version, _h = split_id(aid)
        groups.setdefault((name, version), []).append(aid)
    out = {}
    for (name, version), ids in groups.items():
        if len(ids) == 1:
            out[ids[0]] = f"{name}/{version}"
            continue
        named = variant_suffixes({a: builds[a] for a in ids})
        short = hash_suffixes([split_id(a)[2] for a in ids])
        for a in ids:
            suffix = named[a] if named else short[split_id(a)[2]]
            out[a] = f"{name}/{version}-{suffix}"
    return out

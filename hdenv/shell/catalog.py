"""Finding software: `avail`, `spider`, `loaded`, and the top of `show`.

An Lmod user runs `module avail`, `module spider lua` and `module list` many
times a day, so these run on the fast path like `load` (`python -I -S`, no
click, no jinja2): the shell function calls `fastload.main`, which hands them
here. Everything comes from `store.index` (symlinks and one JSON file per
profile) and from the environment (`HDENV_RECORD`). The click commands call
the same functions, so both ways print the same.
"""

from __future__ import annotations

from ..errors import UserError
from ..sanitize import printable
from ..store.index import Index
from ..validate import looks_like_hash
from . import byname, envdiff
from .byname import INACTIVE_VAR

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

LEGEND = ("\nWhere:\n   D:  default generation (what `hdenv load NAME` loads)\n"
          "   L:  loaded\n")
FIND_HINT = ('Use "hdenv spider TEXT" to find the profiles holding a package,'
             ' "hdenv show NAME" to see one.\n')


class Delegate(Exception):
    """An option the fast path does not know: the full program must answer (help, errors)."""


# -- what is loaded -------------------------------------------------------------

def loaded_records(environ: Mapping[str, str]) -> list[envdiff.LoadRecord]:
    try:
        return envdiff.decode(environ.get(envdiff.RECORD_VAR))
    except envdiff.RecordError as e:
        raise UserError(f"{e}; run `unset {envdiff.RECORD_VAR} {envdiff.LOADED_VAR}`"
                        " (tcsh: unsetenv) to start afresh") from None


def loaded_data(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """What is loaded, in load order, then the packages a compiler swap set aside
    (`"inactive": true`, Lmod's inactive modules; see byname.py)."""
    out: list[dict[str, Any]] = [
        {"ref": r.ref, "name": r.name, "generation": r.generation, "hash": r.hash,
         "prefix": r.prefix, "family": r.family, "package": r.package, "inactive": False}
        for r in loaded_records(environ)]
    for aid in (environ.get(INACTIVE_VAR) or "").split():
        out.append({"ref": aid.rpartition("/")[0], "name": aid.split("/")[0],
                    "generation": None, "hash": None, "prefix": None, "family": None,
                    "package": aid, "inactive": True})
    return out


def loaded_text(entries: list[dict[str, Any]]) -> str:
    """`module list`'s layout: numbered, in load order; inactive packages after."""
    active = [e for e in entries if not e.get("inactive")]
    inactive = [e for e in entries if e.get("inactive")]
    text = "No profiles loaded.\n"
    if active:
        cells = []
        for i, e in enumerate(active, start=1):
            family = f" [{e['family']}]" if e.get("family") else ""
            cells.append(f"  {i}) {e['ref']}{family}")
        text = "Currently loaded profiles:\n" + "\n".join(cells) + "\n"
    if inactive:
        text += ("\nInactive (back when their compiler is):\n"
                 + "\n".join(f"  {i}) {e['ref']}" for i, e in enumerate(inactive, start=1))
                 + "\n")
    return text


# -- avail ----------------------------------------------------------------------

def _matches(text: str, *fields: str) -> bool:
    needle = text.lower()
    return any(needle in f.lower() for f in fields)


def is_hidden(index: Index, named: Any) -> bool:
    """A name starting with `.`, or `hidden = true` in the stack file (its about file)."""
    if named.name.startswith("."):
        return True
    cur = named.current
    if cur is None:
        return False
    from ..store.index import read_about

    return read_about(named.root, cur.hash).get("hidden") == "true"


def avail_data(index: Index, environ: Mapping[str, str],
               texts: list[str] | None = None, show_hidden: bool = False) -> list[dict[str, Any]]:
    """Named profiles with description, generations (default, loaded) and packages."""
    loaded = {r.hash for r in loaded_records(environ)}
    names = byname.Catalog(index.roots, index).all_names()  # as `load` names them
    out = []
    for named in index.named():
        if not show_hidden and is_hidden(index, named):
            continue
        cur = named.current
        facts = index.facts(named.root, cur.hash) if cur else None
        packages = facts.packages() if facts else []
        description = facts.description if facts else ""
        if texts and not all(_matches(t, named.name, description,
                                      *[f"{p}/{v}" for p, v, _ in packages]) for t in texts):
            continue
        out.append({
            "name": named.name,
            "store": named.root,
            "upstream": named.root if named.root != index.roots[0] else None,
            "description": description,
            "current": cur.hash if cur else None,
            "default": cur.number if cur else None,
            "generations": [{"generation": g.number, "ref": f"{named.name}/{g.number}",
                             "hash": g.hash, "current": g.current, "loaded": g.hash in loaded}
                            for g in named.generations],
            "packages": [{"name": p, "version": v, "id": aid,
                          "ref": names.get(aid, f"{p}/{v}")} for p, v, aid in packages],
        })
    return out


def _marks(gen: dict[str, Any]) -> str:
    marks = [m for m, on in (("D", gen["current"]), ("L", gen["loaded"])) if on]
    return f" ({','.join(marks)})" if marks else ""


def avail_text(entries: list[dict[str, Any]], roots: list[str], width: int = 78) -> str:
    lines: list[str] = []
    for root in roots:
        mine = [e for e in entries if e["store"] == root]
        if not mine:
            continue
        title = f" {root} " if root == roots[0] else f" {root} (upstream) "
        if 0 < width < len(title) + 4:  # a narrow terminal: the path's end, never a wrap
            title = " ..." + title[len(title) - max(0, width - 8):]
        dashes = max(4, (width or 78) - len(title))
        lines.append("-" * (dashes // 2) + title + "-" * (dashes - dashes // 2))
        for e in mine:
            lines.append("   " + "   ".join(g["ref"] + _marks(g) for g in e["generations"]))
            if e["description"]:
                lines.append(f"      {e['description']}")
            if e["packages"]:
                lines.append("      packages: " + " ".join(p["ref"] for p in e["packages"]))
    return "\n".join(lines) + "\n" + LEGEND + "\n" + FIND_HINT


def complete_refs(index: Index, typed: str = "") -> list[str]:
    """What completion offers: names, then NAME/N; profile hashes once 6 characters are typed."""
    named = [n for n in index.named() if not is_hidden(index, n)]
    refs = [n.name for n in named] + [f"{n.name}/{g.number}" for n in named
                                      for g in n.generations]
    if len(typed) >= 6:
        seen = set()
        for n in named:
            for g in n.generations:
                if g.hash.startswith(typed) and g.hash not in seen:
                    seen.add(g.hash)
                    refs.append(g.hash)
        refs += _profile_hashes(index, typed, seen)
    return refs


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-/")


def package_words(index: Index) -> list[str]:
    """What `load` takes besides profiles: each loadable package's NAME, NAME/VERSION and
    distinguishing name (`zlib/1.2.13-gcc`). Names come from stores others may write:
    only plain words are offered (no shell metacharacter reaches a completion)."""
    names = byname.Catalog(index.roots, index).all_names()
    words: dict[str, None] = {}
    for aid, name in sorted(names.items(), key=lambda kv: kv[1]):
        plain = aid.rpartition("/")[0]
        for word in (plain.partition("/")[0], plain, name):
            if word and word[0] not in "-./" and set(word) <= _WORD_CHARS:
                words[word] = None
    return list(words)


def _profile_hashes(index: Index, typed: str, seen: set[str]) -> list[str]:
    import os

    out = []
    for root in index.roots:
        try:
            entries = os.listdir(os.path.join(root, "profiles"))
        except OSError:
            continue
        out += [h for h in sorted(entries)
                if h.startswith(typed) and h not in seen and looks_like_hash(h)]
    return out


# -- spider ---------------------------------------------------------------------

def spider_data(index: Index, text: str, show_hidden: bool = False,
                wanted: set[str] | None = None) -> list[dict[str, Any]]:
    """Each package NAME/VERSION matching `text`, one entry per build of it (variant).

    Two builds of one version (a gcc and a clang variant, two CFLAGS) are
    different software, so each gets its own entry, labelled by what tells it
    apart, and "load it with" names a profile that holds *that* build.
    `wanted`: only the entries of these artifact ids (labelled among all the
    builds of their version, as without it); naming a version's builds reads a
    spec each, so a caller that knows what it wants saves those of the rest.
    """
    name, _, version = text.partition("/")
    found: dict[str, dict[str, Any]] = {}  # by artifact id
    for named in index.named():
        if not show_hidden and is_hidden(index, named):
            continue
        for gen in named.generations:
            facts = index.facts(named.root, gen.hash)
            for pname, pversion, aid in facts.packages():
                if version:
                    if (pname.lower(), pversion) != (name.lower(), version):
                        continue
                elif name.lower() not in pname.lower():
                    continue
                entry = found.setdefault(aid, {
                    "package": pname, "version": pversion, "ids": [aid], "variant": "",
                    "profiles": [], "description": "", "store": named.root})
                entry["profiles"].append({"name": named.name, "generation": gen.number,
                                          "ref": f"{named.name}/{gen.number}",
                                          "hash": gen.hash, "current": gen.current,
                                          "store": named.root})
    from ..store.index import read_about

    by_version: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in found.values():
        by_version.setdefault((entry["package"], entry["version"]), []).append(entry)
    out = []
    exact = name.lower()
    for _key, group in sorted(by_version.items(),
                              key=lambda kv: (kv[0][0].lower() != exact, kv[0])):
        if wanted is not None and not any(e["ids"][0] in wanted for e in group):
            continue
        stores = {e["ids"][0]: e.pop("store") for e in group}
        labels = variant_labels(stores)
        names = _package_names(stores)
        for entry in sorted(group, key=lambda e: labels[e["ids"][0]]):
            aid = entry["ids"][0]
            if wanted is not None and aid not in wanted:
                continue
            entry["variant"] = labels[aid]
            root = entry["profiles"][0]["store"]
            entry["description"] = read_about(root, aid.rsplit("/", 1)[1]).get(
                "description", "")
            defaults = sorted({p["name"] for p in entry["profiles"] if p["current"]})
            entry["load"] = (f"hdenv load {defaults[0]}" if defaults
                             else f"hdenv load {entry['profiles'][-1]['ref']}")
            entry["load_package"] = f"hdenv load {names[aid]}"  # the package alone (byname)
            out.append(entry)
    return out


def _package_names(stores: Mapping[str, str]) -> dict[str, str]:
    """The names `load` takes for these builds of one NAME/VERSION (`hello/2.10-gcc`)."""
    from ..store.index import read_spec
    from ..store.variants import build_names, spec_traits

    return build_names({aid: spec_traits(read_spec(root, aid.rsplit("/", 1)[1]))
                        for aid, root in stores.items()})


def variant_labels(stores: Mapping[str, str]) -> dict[str, str]:
    """Artifact id -> what sets it apart from the other builds of the same NAME/VERSION.

    The dependencies one build has and the others lack (`gcc` against
    `clang`), then the environment values that differ (`CFLAGS=-O1`); a
    short hash only when nothing else tells them apart. One build: "".
    """
    if len(stores) < 2:
        return {aid: "" for aid in stores}
    from ..store.index import read_spec

    deps: dict[str, set[str]] = {}
    envs: dict[str, dict[str, str]] = {}
    for aid, root in stores.items():
        spec = read_spec(root, aid.rsplit("/", 1)[1])
        ids = [*(spec.get("deps") or []), *(spec.get("build_deps") or [])]  # type: ignore[misc]
        deps[aid] = {str(d).split("/")[0] for d in ids}
        env = spec.get("env")
        envs[aid] = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
    common = set.intersection(*deps.values())
    keys = sorted({k for e in envs.values() for k in e})
    differ = [k for k in keys if len({e.get(k) for e in envs.values()}) > 1]
    labels = {}
    for aid in stores:
        parts = sorted(deps[aid] - common)
        parts += [f"{k}={envs[aid][k]}" for k in differ if k in envs[aid]]
        labels[aid] = ", ".join(parts)
    if len(set(labels.values())) < len(labels) or not all(labels.values()):
        return {aid: aid.rsplit("/", 1)[1][:7] for aid in stores}
    return labels


def spider_text(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        about = f" - {e['description']}" if e["description"] else ""
        variant = f" [{e['variant']}]" if e.get("variant") else ""
        lines.append(f"{e['package']}/{e['version']}{variant}{about}")
        lines.append("    in: " + ", ".join(
            p["ref"] + (" (D)" if p["current"] else "") for p in e["profiles"]))
        lines.append(f"    load it with: {e['load']}")
        lines.append(f"    or the package alone: {e['load_package']}")
    return "\n".join(lines) + "\n"


def spider_miss(index: Index, text: str) -> UserError:
    from ..store.suggest import close_matches

    close = [m for m in close_matches(index, text.partition("/")[0])
             if index.get(m) is None]
    if index.get(text) is not None:
        return UserError(f"no package matches {text!r}; {text} is a profile:"
                         f" hdenv avail {text}")
    if text.partition("/")[0] in close:  # spelt exactly: only hidden profiles hold it
        return UserError(f"no package matches {text!r} outside hidden profiles"
                         f" (hdenv spider --show-hidden {text})")
    if close:
        return UserError(f"no package matches {text!r}; did you mean {', '.join(close)}?")
    return UserError(f"no package matches {text!r} in any profile (see `hdenv avail`)")


# -- the fast path's entry --------------------------------------------------------

def _options(args: list[str], flags: set[str]) -> tuple[set[str], list[str]]:
    """Split known flags from words; anything else that looks like an option delegates."""
    seen, words = set(), []
    only_words = False
    for a in args:
        if only_words or not a.startswith("-") or a == "-":
            words.append(a)
        elif a == "--":
            only_words = True
        elif a in flags:
            seen.add(a)
        else:
            raise Delegate(a)
    return seen, words


def _dump(data: Any) -> str:
    import json  # only for --json: the indented form people read

    return json.dumps(data, indent=2, sort_keys=True) + "\n"


TERSE = {"-t", "--terse"}


def terse_avail(entries: list[dict[str, Any]]) -> str:
    """`module -t avail`: every NAME/N, one per line, for scripts."""
    return "".join(g["ref"] + "\n" for e in entries for g in e["generations"])


def terse_spider(entries: list[dict[str, Any]]) -> str:
    """`module -t spider`: each NAME/VERSION once, one per line."""
    seen = dict.fromkeys(f"{e['package']}/{e['version']}" for e in entries)
    return "".join(k + "\n" for k in seen)


def run(cmd: str, args: list[str], environ: Mapping[str, str], roots: list[str],
        width: int = 78) -> str:
    """The output of `avail`, `spider` or `loaded` (`list`: the same); UserError for bad
    input, Delegate for help. `width` is what the avail headers fill.

    Descriptions come from stack files and other users' stores: the text is
    printed with its control characters made visible (sanitize.printable).
    """
    return printable(_run(cmd, args, environ, roots, width))


def _run(cmd: str, args: list[str], environ: Mapping[str, str], roots: list[str],
         width: int) -> str:
    if cmd in ("loaded", "list"):
        flags, words = _options(args, {"--json", *TERSE})
        if words:
            raise UserError(f"usage: hdenv {cmd} [--json] [-t]")
        data = loaded_data(environ)
        if "--json" in flags:
            return _dump(data)
        if flags & TERSE:
            return "".join(e["ref"] + "\n" for e in data if not e["inactive"])
        return loaded_text(data)
    index = Index(roots)
    if cmd == "avail":
        flags, words = _options(args, {"--json", "--refs", "--packages", "--show-hidden",
                                       *TERSE})
        if "--refs" in flags:
            refs = complete_refs(index, words[0] if words else "")
            if "--packages" in flags:  # `load`'s words: packages by name too (byname.py)
                refs += [w for w in package_words(index) if w not in refs]
            return "".join(r + "\n" for r in refs)
        entries = avail_data(index, environ, words, "--show-hidden" in flags)
        if "--json" in flags:
            return _dump(entries)
        if flags & TERSE:
            return terse_avail(entries)
        if not entries:
            if words:
                raise UserError(f"no profile matches {' '.join(words)!r}"
                                f" (packages: hdenv spider {words[0]})")
            return (f"No named profiles in {', '.join(roots)} yet:"
                    " build one with `hdenv build FILE.toml`.\n")
        return avail_text(entries, roots, width)
    if cmd == "spider":
        flags, words = _options(args, {"--json", "--show-hidden", *TERSE})
        if len(words) != 1:
            raise UserError("usage: hdenv spider TEXT [--json] (a package NAME or NAME/VERSION)")
        found = spider_data(index, words[0], "--show-hidden" in flags)
        if not found:
            raise spider_miss(index, words[0])
        if "--json" in flags:
            return _dump(found)
        return terse_spider(found) if flags & TERSE else spider_text(found)
    raise UserError(f"not a catalog command: {cmd!r}")

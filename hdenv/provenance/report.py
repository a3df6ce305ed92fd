"""`hdenv report [REF]`: what a bug report needs, as a block to paste.

Profile names, generations and hashes, artifact ids (host software with the
version it reported), host drift, this machine's facts, the hdenv version, and
the two commands that carry the state to a maintainer: `hdenv export` here,
`hdenv reproduce` there. Default REF: the profiles loaded in this shell.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..build.host import version_of
from ..errors import UserError
from ..exchange.bundle import build_closure, node_id
from ..profile.profiles import names_of
from ..store.artifacts import runtime_closure
from ..store.layout import Store
from .drift import host_drift
from .hostfacts import format_facts, host_facts


def host_version_line(spec: dict[str, Any]) -> str:
    """What a host artifact *is*, in the words of the program its version came from.

    The spec records the version, not which program gave it (`version-from`,
    default the first program listed), so the program is found again: the
    one whose output carries that version, preferring the artifact's own name
    (`gcc` of `[host.gcc]`, whose `as` reports binutils' version instead).
    """
    version = str(spec.get("version", ""))
    outputs = {name: str(info.get("version", ""))
               for name, info in spec.get("programs", {}).items()}
    givers = [n for n in sorted(outputs) if version_of(outputs[n]) == version]
    if not givers:
        return f"{spec.get('name')} {version}"
    name = spec.get("name") if spec.get("name") in givers else givers[0]
    return (outputs[str(name)].splitlines() or [""])[0]


def _artifact_rows(store: Store, ids: list[str]) -> list[dict[str, Any]]:
    rows = []
    for aid in sorted(ids):
        row: dict[str, Any] = {"id": aid, "present": store.has_artifact(aid)}
        try:
            spec = store.read_spec(aid.rsplit("/", 1)[1])
        except (UserError, ValueError):
            spec = {}
        if spec.get("kind") == "host":
            row["host"] = host_version_line(spec)
            row["drift"] = [d.line() for d in host_drift(store, spec)]
        rows.append(row)
    return rows


def _entry(store: Store, ref: str, loaded_as: str | None) -> dict[str, Any]:
    resolved = store.resolve(ref)
    if resolved.kind == "artifact":
        return {"kind": "artifact", "id": resolved.ident, "ref": ref,
                "artifacts": _artifact_rows(store, runtime_closure(store, [resolved.ident])),
                "reproduce": _commands(resolved.ident.rsplit("/", 1)[1], None)}
    hash_ = resolved.ident
    names = [{"name": n, "generation": g, "current": c} for n, g, c in names_of(store, hash_)]
    name: str | None = resolved.name or (loaded_as.split("/")[0] if loaded_as else None) \
        or (str(names[-1]["name"]) if names else None)
    artifacts = store.read_spec(hash_).get("artifacts", [])
    return {"kind": "profile", "hash": hash_, "ref": ref, "name": name, "names": names,
            "loaded_as": loaded_as, "artifacts": _artifact_rows(store, artifacts),
            "built_with": _artifact_rows(store, _build_hosts(store, hash_, artifacts)),
            "reproduce": _commands(hash_, name)}


def _build_hosts(store: Store, hash_: str, runtime: list[str]) -> list[str]:
    """Host software used to build the profile's artifacts (the compiler matters in a report)."""
    def read(h: str) -> dict[str, Any]:
        try:
            spec = store.read_spec(h)
        except (UserError, ValueError):
            return {}
        return spec if isinstance(spec, dict) else {}

    closure = build_closure(read, [hash_])
    return sorted(node_id(h, s) for h, s in closure.items()
                  if s.get("kind") == "host" and node_id(h, s) not in runtime)


def _commands(hash_: str, name: str | None) -> dict[str, str]:
    named = f" --name {name}" if name else ""
    return {
        "export": f"hdenv export {hash_} -o {hash_}.tar --with-sources",
        "reproduce": f"hdenv reproduce {hash_}.tar{named}",
        "reproduce_from": f"hdenv reproduce {hash_}{named} --from DIR|URL",
    }


def report(store: Store, refs: list[str], loaded: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of `refs`, or of the `loaded` profiles (name, hash) when none are given."""
    entries = []
    if refs:
        entries = [_entry(store, ref, None) for ref in refs]
    else:
        for rec in loaded:
            label = rec.get("ref") or rec.get("name")
            try:
                entries.append(_entry(store, rec["hash"], label))
            except UserError:
                entries.append({"kind": "profile", "hash": rec["hash"], "name": label,
                                "missing": True, "artifacts": [],
                                "reproduce": _commands(rec["hash"], label)})
    if not entries:
        raise UserError("nothing is loaded in this shell: name a REF (hdenv report demo)")
    return {"hdenv_version": __version__, "store": str(store.root), "entries": entries,
            "host": host_facts()}


def format_report(data: dict[str, Any]) -> str:
    lines = [f"hdenv report (hdenv {data['hdenv_version']})", ""]
    for e in data["entries"]:
        if e["kind"] == "artifact":
            lines.append(f"artifact {e['id']}")
        else:
            label = e.get("loaded_as") or e.get("name") or "-"
            lines.append(f"profile {label}  {e['hash']}"
                         + ("  (no longer in this store)" if e.get("missing") else ""))
            for n in e.get("names", []):
                mark = " (current)" if n["current"] else ""
                lines.append(f"  generation {n['name']}/{n['generation']}{mark}")
        for heading, rows in (("", e["artifacts"]), ("built with:", e.get("built_with", []))):
            if heading and rows:
                lines.append(f"  {heading}")
            for a in rows:
                extra = f"  host: {a['host']}" if "host" in a else ""
                lines.append(f"  {'  ' if heading else ''}{a['id']}{extra}")
                lines += [f"    DRIFT {d}" for d in a.get("drift", [])]
        cmds = e["reproduce"]
        lines += ["  to reproduce:",
                  f"    here:  {cmds['export']}   (attach the file)",
                  f"    there: {cmds['reproduce']}",
                  f"       or: {cmds['reproduce_from']}   (where bundles are kept)", ""]
    lines.append("host:")
    lines += format_facts(data["host"])
    return "\n".join(lines) + "\n"

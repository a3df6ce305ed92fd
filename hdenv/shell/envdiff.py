"""The record of what each load changed, and its exact undo.

A load is remembered as the entries it put into path-like variables and the
variables it set with their previous values. Unload works from that record
alone (the profile may have been rebuilt or deleted since), removes one
occurrence of each entry it added wherever the user moved it, and restores a
variable only if it still holds the value the load gave it: anything the user
changed by hand in between is theirs and stays.

When several loads touch the same variable, unloading an earlier one hands its
"previous value" (and its ownership of a variable it created) to the next load
that touched it, so unloading in any order ends at the original environment.

The records travel in one environment variable (`HDENV_RECORD`, base64 of
compact JSON) so subshells inherit them and no shell has to quote JSON.
"""

from __future__ import annotations

import binascii

from ..fastjson import json_dumps, json_loads  # noqa: F401 (also the fast path's JSON API)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing and collections cost ms on every load
    from collections.abc import MutableMapping
    from typing import Any

    Env = MutableMapping[str, str]

RECORD_VAR = "HDENV_RECORD"
LOADED_VAR = "HDENV_LOADED"
SEP = ":"
B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


class PathChange:
    """Entries one load put into a colon-separated variable."""

    def __init__(self, pre: list[str] | None = None, post: list[str] | None = None,
                 created: bool = False):
        self.pre = pre or []  # prepended, in order
        self.post = post or []  # appended (MANPATH's empty entry)
        self.created = created  # the variable was unset before the load


class VarChange:
    def __init__(self, old: str | None, new: str):
        self.old = old
        self.new = new


class LoadRecord:
    """One load. Plain classes, not dataclasses: `dataclasses` imports `inspect`."""

    def __init__(self, hash: str, name: str | None = None, family: str | None = None,
                 prefix: str = "", paths: dict[str, PathChange] | None = None,
                 vars: dict[str, VarChange] | None = None, generation: int | None = None):
        self.hash = hash
        self.name = name
        self.generation = generation  # of `name`, when loaded through names/
        self.family = family
        self.prefix = prefix
        self.paths: dict[str, PathChange] = paths or {}
        self.vars: dict[str, VarChange] = vars or {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoadRecord) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"LoadRecord({self.to_json()!r})"

    @property
    def ref(self) -> str:
        """What the user sees and types: `NAME/N` (as Lmod's NAME/VERSION), NAME, or the hash."""
        if self.name and self.generation is not None:
            return f"{self.name}/{self.generation}"
        return self.name or self.hash

    @property
    def label(self) -> str:
        """How `HDENV_LOADED` shows this load: `demo/2:HASH`, or the hash alone."""
        return f"{self.ref}:{self.hash}" if self.name else self.hash

    def to_json(self) -> list[Any]:
        out: list[Any] = [
            self.hash, self.name, self.family, self.prefix,
            {k: [p.pre, p.post, int(p.created)] for k, p in self.paths.items()},
            {k: [v.old, v.new] for k, v in self.vars.items()},
        ]
        if self.generation is not None:  # optional seventh field: older records lack it
            out.append(self.generation)
        return out

    @classmethod
    def from_json(cls, data: list[Any]) -> LoadRecord:
        hash_, name, family, prefix, paths, vars_, *rest = data
        generation = rest[0] if rest else None
        if generation is not None and not isinstance(generation, int):
            raise TypeError("generation is not a number")
        return cls(
            hash=hash_, name=name, family=family, prefix=prefix,
            paths={k: PathChange(list(p[0]), list(p[1]), bool(p[2])) for k, p in paths.items()},
            vars={k: VarChange(v[0], v[1]) for k, v in vars_.items()}, generation=generation,
        )


# -- encoding ---------------------------------------------------------------

def encode(records: list[LoadRecord]) -> str:
    raw = json_dumps([r.to_json() for r in records])
    return binascii.b2a_base64(raw.encode("utf-8"), newline=False).decode("ascii")


class RecordError(ValueError):
    """HDENV_RECORD was damaged (edited by hand, truncated)."""


def decode(value: str | None) -> list[LoadRecord]:
    if not value:
        return []
    try:
        if not set(value) <= B64:
            raise ValueError("not base64")
        data = json_loads(binascii.a2b_base64(value.encode("ascii")).decode("utf-8"))
        return [LoadRecord.from_json(item) for item in data]
    except Exception as e:  # whatever garbage it holds (_json even raises SystemError)
        why = str(e) if isinstance(e, (ValueError, TypeError)) else "not a record hdenv wrote"
        raise RecordError(f"{RECORD_VAR} is damaged ({why})") from None


def loaded_value(records: list[LoadRecord]) -> str:
    return " ".join(r.label for r in records)


# -- path lists ---------------------------------------------------------------

def split_path(value: str) -> list[str]:
    """'' is an empty list, not one empty entry: PATH='' has no directories."""
    return value.split(SEP) if value else []


def _remove_first(parts: list[str], entry: str) -> None:
    if entry in parts:
        parts.remove(entry)


def _remove_last(parts: list[str], entry: str) -> None:
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == entry:
            del parts[i]
            return


def prepend(env: Env, rec: LoadRecord, var: str, entries: list[str],
            keep_default: bool = False) -> None:
    """Prepend `entries` to `var` and record it.

    `keep_default` adds a trailing empty entry when the variable was unset,
    which is how `man` keeps the system search path (MANPATH semantics).
    """
    if not entries:
        return
    change = rec.paths.setdefault(var, PathChange())
    old = env.get(var)
    if old is None:
        change.created = True
        tail = [""] if keep_default else []
        change.post.extend(tail)
        parts = [*entries, *tail]
    else:
        parts = [*entries, *split_path(old)]
    change.pre.extend(entries)
    env[var] = SEP.join(parts)


def set_var(env: Env, rec: LoadRecord, var: str, value: str) -> None:
    rec.vars[var] = VarChange(env.get(var), value)
    env[var] = value


# -- undo -------------------------------------------------------------------

def _next_touching(later: list[LoadRecord], var: str, kind: str) -> LoadRecord | None:
    for other in later:
        if var in (other.paths if kind == "paths" else other.vars):
            return other
    return None


def _undo_path(env: Env, var: str, change: PathChange, later: list[LoadRecord]) -> None:
    value = env.get(var)
    if value is None:
        return  # the user unset it: nothing of ours is left to remove
    parts = split_path(value)
    for entry in change.pre:
        _remove_first(parts, entry)
    heir = _next_touching(later, var, "paths")
    if change.created and parts and heir is not None:
        # The later load now owns the variable's existence (and the trailing
        # entry that keeps man's default path), so its unload removes them.
        heir_change = heir.paths[var]
        heir_change.created = True
        heir_change.post.extend(change.post)
    else:
        for entry in change.post:
            _remove_last(parts, entry)
    if change.created and not parts:
        del env[var]
    else:
        env[var] = SEP.join(parts)


def _undo_var(env: Env, var: str, change: VarChange, later: list[LoadRecord]) -> None:
    heir = _next_touching(later, var, "vars")
    if heir is not None:
        if heir.vars[var].old == change.new:
            heir.vars[var].old = change.old
        return
    if env.get(var) != change.new:
        return  # changed by the user after the load: theirs now
    if change.old is None:
        del env[var]
    else:
        env[var] = change.old


def unload(env: Env, records: list[LoadRecord], index: int) -> LoadRecord:
    """Undo records[index] in `env`, fix up later records, and drop it."""
    rec = records[index]
    later = records[index + 1:]
    for var, vchange in rec.vars.items():  # reverse of the load's order
        _undo_var(env, var, vchange, later)
    for var, pchange in rec.paths.items():
        _undo_path(env, var, pchange, later)
    del records[index]
    return rec


def store_records(env: Env, records: list[LoadRecord]) -> None:
    """Write the bookkeeping variables; unset them when nothing is loaded."""
    if records:
        env[RECORD_VAR] = encode(records)
        env[LOADED_VAR] = loaded_value(records)
    else:
        env.pop(RECORD_VAR, None)
        env.pop(LOADED_VAR, None)


def changes(before: dict[str, str], after: Env) -> list[tuple[str, str | None]]:
    """What the shell must do to turn `before` into `after` (sorted, stable)."""
    out: list[tuple[str, str | None]] = []
    for key in sorted(set(before) | set(after)):
        new = after.get(key)
        if before.get(key) != new:
            out.append((key, new))
    return out

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


INLINE = 256  # a value a load sets is recorded in full up to this length, else by checksum
SAVE_OVER = 1024  # a previous value longer than this waits in a variable of its own
SAVED_PREFIX = "HDENV_SAVED_"



def fingerprint(value: str) -> list[int]:
    """What the record keeps of a long value: enough to tell whether it is still there."""
    data = value.encode("utf-8", "surrogateescape")
    return [len(data), binascii.crc32(data)]


class VarChange:
    """A variable one load set: what it was before, and (a fingerprint of) what it set.

    The record must stay small whatever the values (an environment string over
    128 KiB breaks every command the shell runs), so a long value the load set
    is kept as a fingerprint, and a long previous value waits in a variable of
    its own, `HDENV_SAVED_N`, until the unload restores it.
    """

    def __init__(self, old: Any, new: Any):
        self.old = old
        self.new = new

    def holds_new(self, value: str | None) -> bool:
        """Whether `value` is what this load set (the user has not changed it since)."""
        if value is None:
            return False
        return value == self.new if isinstance(self.new, str) else fingerprint(value) == self.new

    def old_value(self, env: Env) -> str | None:
        old = self.old
        return env.get(old["saved"]) if isinstance(old, dict) else old

    def forget_old(self, env: Env) -> None:
        """Drop the variable a long previous value waited in."""
        if isinstance(self.old, dict):
            env.pop(self.old["saved"], None)

    @classmethod
    def checked(cls, data: Any) -> VarChange:
        old, new = data
        if not (old is None or isinstance(old, str) or (
                isinstance(old, dict) and isinstance(old.get("saved"), str)
                and old["saved"].startswith(SAVED_PREFIX))):
            raise ValueError("bad previous value")
        if not (isinstance(new, str) or (isinstance(new, list) and len(new) == 2
                                         and all(isinstance(n, int) for n in new))):
            raise ValueError("bad value")
        return cls(old, new)


class LoadRecord:
    """One load. Plain classes, not dataclasses: `dataclasses` imports `inspect`."""

    def __init__(self, hash: str, name: str | None = None, family: str | None = None,
                 prefix: str = "", paths: dict[str, PathChange] | None = None,
                 vars: dict[str, VarChange] | None = None, generation: int | None = None,
                 package: str | None = None):
        self.hash = hash
        self.name = name
        self.generation = generation  # of `name`, when loaded through names/
        self.package = package  # the artifact id of a package loaded by name (byname.py)
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
        """What the user sees and types: `NAME/N` (as Lmod's NAME/VERSION), NAME, or the hash;
        a package loaded by name is its NAME/VERSION."""
        if self.package:
            return self.package.rpartition("/")[0]
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
        if self.generation is not None or self.package:  # optional: older records lack them
            out.append(self.generation)
        if self.package:
            out.append(self.package)
        return out

    @classmethod
    def from_json(cls, data: list[Any]) -> LoadRecord:
        """Parse one record; ValueError/TypeError on anything hdenv did not write."""
        hash_, name, family, prefix, paths, vars_, *rest = data
        generation = rest[0] if rest else None
        package = rest[1] if len(rest) > 1 else None
        if generation is not None and not isinstance(generation, int):
            raise TypeError("generation is not a number")
        if package is not None and not (isinstance(package, str) and package.count("/") == 2):
            raise ValueError("bad package id")
        if not all(isinstance(x, (str, type(None))) for x in (name, family)) \
                or not isinstance(hash_, str) or not isinstance(prefix, str):
            raise ValueError("bad record header")
        return cls(
            hash=hash_, name=name, family=family, prefix=prefix,
            paths={_name(k): PathChange(_strings(p[0]), _strings(p[1]), bool(p[2]))
                   for k, p in paths.items()},
            vars={_name(k): VarChange.checked(v) for k, v in vars_.items()}, generation=generation,
            package=package,
        )


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("bad path entries")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("bad variable name")
    return value


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
    old: Any = env.get(var)
    if old is not None and len(old) > SAVE_OVER:
        n = 1
        while f"{SAVED_PREFIX}{n}" in env:
            n += 1
        env[f"{SAVED_PREFIX}{n}"] = old
        old = {"saved": f"{SAVED_PREFIX}{n}"}
    rec.vars[var] = VarChange(old, value if len(value) <= INLINE else fingerprint(value))
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
        successor = heir.vars[var]
        if change.holds_new(successor.old_value(env)):  # it replaced our value: now it
            successor.forget_old(env)  # restores what was there before us
            successor.old = change.old
        else:
            change.forget_old(env)
        return
    if not change.holds_new(env.get(var)):
        change.forget_old(env)
        return  # changed by the user after the load: theirs now
    old = change.old_value(env)
    change.forget_old(env)
    if old is None:
        env.pop(var, None)
    else:
        env[var] = old


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

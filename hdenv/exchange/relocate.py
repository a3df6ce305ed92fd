"""Rewrite an artifact built under one store root for another store root.

Programs bake their install prefix into what they install, so an artifact
from a cache built in `/home/a/store` mentions `/home/a/store/artifacts/...`
in run paths, pkg-config and libtool files, cmake files, scripts, absolute
symlinks and compiled-in strings. On arrival each file is rewritten:

- text files (no NUL byte): every mention of the old root is replaced, any length;
- symlinks with an absolute target under the old root: retargeted;
- ELF run paths (DT_RUNPATH, or DT_RPATH when there is no RUNPATH): set with
  patchelf through `store.elf`, any length, keeping the tag (RPATH stays RPATH:
  its search order differs);
- any other mention inside a binary: overwritten in place, which only works
  when the new root fits in the room the mention has. The new root is padded
  to that room with leading slashes (`/old/store` -> `///new/st`, the same
  path to the kernel) rather than with trailing NULs: every byte after the
  root keeps its offset, so a string the linker tail-merged with another, or
  one that is not NUL-terminated (marshalled Python code, archive members),
  stays valid. The room is the mention with the run of slashes before it:
  builds compile their prefix in through a path `PADDED_ROOT_LENGTH` bytes long
  (`build/rootalias.py`) that becomes such a run when the build is done, so
  whatever they compiled in moves into any root up to that length. Where the
  new root does not fit, `CannotRelocate` says which file holds such a string,
  and the caller builds from source instead;
- compiled Python (`.pyc`), to any length: each marshalled string that
  starts with the old root is rewritten with its new length (a code object's
  file name always does), so the file stays valid and in use; a mention inside
  a longer string (a docstring) makes `CannotRelocate`.

A mention is the old root at the start of a path: not preceded by a file
name character or `/` (except in `-L/...`, `-I/...`, `-R/...` flags), not
followed by a file name character, so `/a/store` does not match inside
`/x/a/store` or `/a/store2`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..store.elf import MAGIC, ElfError, PatchelfMissing, parse_elf, set_runpath

_NAME_CHAR = rb"[A-Za-z0-9._+~-]"
# Where a path may start: not inside another path, but right after a -L/-I/-R flag.
_AFTER = rb"(?:(?<=-[LIR])|(?<![A-Za-z0-9._+~/-]))"


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# How long a store root a build's compiled-in paths have room for, whatever root it was
# built in: builds see their prefix and dependencies through a path this long
# (build/rootalias.py), which becomes slashes and the real root after the build.
PADDED_ROOT_LENGTH = 200


class CannotRelocate(Exception):
    """This content cannot move into the new root; the message is one line."""


class Relocator:
    """Rewrites file contents, link targets and metadata from `old_root` to `new_root`.

    `moves` maps more specific old prefixes elsewhere: a dependency this store
    takes from an upstream store lives under that store's root, not this one's.
    """

    def __init__(self, old_root: str, new_root: str, moves: dict[str, str] | None = None):
        self.old = old_root.rstrip("/") or "/"
        self.new = new_root.rstrip("/") or "/"
        mapping = {self.old: self.new, **(moves or {})}
        self.map = {k: v for k, v in mapping.items() if k != v}
        self.active = bool(self.map)
        self.map_b = {_b(k): _b(v) for k, v in self.map.items()}
        self.pattern = re.compile(_AFTER + b"(?:" + b"|".join(
            re.escape(k) for k in sorted(self.map_b, key=len, reverse=True)) + b")(?!"
            + _NAME_CHAR + b")") if self.active else None
        self.str_pattern = re.compile(_AFTER.decode() + "(?:" + "|".join(
            re.escape(k) for k in sorted(self.map, key=len, reverse=True)) + ")(?!"
            + _NAME_CHAR.decode() + ")") if self.active else None
        # In marshalled Python a string's length byte precedes it, and may be any byte.
        self.pyc_pattern = re.compile(b"(?:" + b"|".join(
            re.escape(k) for k in sorted(self.map_b, key=len, reverse=True)) + b")(?!"
            + _NAME_CHAR + b")") if self.active else None
        # In a binary, a mention's room is the root and the run of slashes before it
        # (group 1 is the root): what padding left there, by this relocator or a build.
        self.bin_pattern = re.compile(_AFTER + b"/*(" + b"|".join(
            re.escape(k) for k in sorted(self.map_b, key=len, reverse=True)) + b")(?!"
            + _NAME_CHAR + b")") if self.active else None
        self.padded = {k: b"/" * (len(k) - len(v)) + v for k, v in self.map_b.items()
                       if len(v) <= len(k)}
        self._pending: dict[str, tuple[tuple[str, ...], bool]] = {}

    def text(self, value: str) -> str:
        if self.str_pattern is None:
            return value
        return self.str_pattern.sub(lambda m: self.map[m.group(0)], value)

    def json_value(self, value: Any) -> Any:
        """Strings inside metadata (lists, dicts) relocated like text."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json_value(v) for k, v in value.items()}
        return value

    def link_target(self, target: str) -> str:
        return self.text(target) if target.startswith("/") else target

    def file_data(self, rel: str, data: bytes) -> bytes:
        """The relocated content of file `rel` (an ELF run path follows in `after_write`)."""
        if self.pattern is None or not any(k in data for k in self.map_b):
            return data
        if b"\0" not in data:
            return self.pattern.sub(lambda m: self.map_b[m.group(0)], data)
        if rel.endswith(".pyc") and self.pyc_pattern is not None:
            return self._pyc(rel, data, list(self.pyc_pattern.finditer(data)))
        assert self.bin_pattern is not None
        found = list(self.bin_pattern.finditer(data))
        if not found:
            return data
        growing_in_run_path = self._run_path(rel, data) if data[:4] == MAGIC else 0
        growing = [m for m in found if not self._fits(m)]
        if len(growing) > growing_in_run_path:
            old = growing[0].group(1).decode("utf-8", "surrogateescape")
            new = self.map[old]
            raise CannotRelocate(
                f"{rel} holds the old store root {old} in a binary string, and the new"
                f" root {new} is longer ({len(_b(new))} bytes) than the room it has there"
                f" ({growing[0].end() - growing[0].start()} bytes)")
        out = bytearray(data)
        for m in found:  # the run path too, where it fits; patchelf then sets it unpadded
            if self._fits(m):
                out[m.start():m.end()] = self._padded_to(m)
        return bytes(out)

    def _fits(self, m: re.Match[bytes]) -> bool:
        return len(self.map_b[m.group(1)]) <= m.end() - m.start()

    def _padded_to(self, m: re.Match[bytes]) -> bytes:
        new = self.map_b[m.group(1)]
        return b"/" * (m.end() - m.start() - len(new)) + new

    def _pyc(self, rel: str, data: bytes, found: list[re.Match[bytes]]) -> bytes:
        """A compiled Python file with each string that starts with the old root re-marshalled.

        Marshal is a stream: a string is its type byte, its length and its
        bytes, and back-references count objects, not bytes, so a string may
        grow by rewriting its length (a short string over 255 bytes becomes a
        long one of the same kind). Each mention must begin a string (a code
        object's file name does); one inside a longer string (a docstring)
        cannot be told from arbitrary bytes: it is padded in place when the new
        root is not longer, and the file cannot move otherwise.
        """
        out = bytearray()
        done = 0
        for m in found:
            if m.start() < done:
                continue  # inside a string already rewritten
            start = m.start()
            kind, length, head = _marshal_string_at(data, start)
            if (kind is None or start + length > len(data) or start < done + head
                    or length < m.end() - start):
                if _path_start(data, start) and m.group(0) in self.padded:
                    # inside a longer string, at a path start: padded in place as in any binary
                    out += data[done:start] + self.padded[m.group(0)]
                    done = m.end()
                    continue
                if not _path_start(data, start):
                    continue  # the root's name inside another path, not a mention
                raise CannotRelocate(
                    f"{rel} holds the old store root {m.group(0).decode('utf-8', 'replace')}"
                    " inside a compiled Python string that cannot be rewritten")
            old_str = data[start:start + length]
            assert self.pattern is not None  # mentions at path starts, the string's own first
            new_str = self.pattern.sub(lambda x: self.map_b[x.group(0)], old_str)
            out += data[done:start - head] + _marshal_header(kind, len(new_str)) + new_str
            done = start + length
        return bytes(out + data[done:])

    def _run_path(self, rel: str, data: bytes) -> int:
        """Remember the run path to rewrite; return how many of its mentions of the old
        root have no room for the new one (patchelf rewrites those, to any length).

        The run path sits once in the dynamic string table, so every other
        mention in the file is a string patchelf cannot rewrite.
        """
        try:
            info = parse_elf(data, rel)
        except ElfError:
            return 0
        if info is None:
            return 0
        entries, is_rpath = (info.runpath, False) if info.runpath is not None else (
            info.rpath, True)
        if not entries or self.bin_pattern is None:
            return 0
        found = list(self.bin_pattern.finditer(_b(":".join(entries))))
        if found:
            self._pending[rel] = (entries, is_rpath)
        return sum(1 for m in found if not self._fits(m))

    def needs_patch(self, rel: str) -> bool:
        """Whether `after_write` will run patchelf on `rel` (`file_data` found a run path)."""
        return rel in self._pending

    def after_write(self, rel: str, path: Path) -> None:
        """Set the relocated run path of an ELF file just written (patchelf works on files)."""
        pending = self._pending.pop(rel, None)
        if pending is None:
            return
        entries, is_rpath = pending
        assert self.bin_pattern is not None
        moved = [self.bin_pattern.sub(lambda m: self.map_b[m.group(1)], _b(e)).decode(
            "utf-8", "surrogateescape") for e in entries]
        try:
            set_runpath(path, moved, rpath=is_rpath)
        except PatchelfMissing as e:
            raise CannotRelocate(f"{rel} has a run path to relocate: {e}") from None
        except OSError as e:
            raise CannotRelocate(f"{rel}: {e}") from None


# marshal's string kinds: short (1-byte length) and long (4-byte length) forms;
# the 0x80 bit (FLAG_REF) says the object may be referred back to.
_SHORT = {ord("z"), ord("Z")}
_LONG = {ord("a"), ord("A"), ord("u"), ord("t")}
_SHORT_TO_LONG = {ord("z"): ord("a"), ord("Z"): ord("A")}


def _path_start(data: bytes, start: int) -> bool:
    """Whether a mention at `start` begins a path (as `_AFTER` says) rather than ends a name."""
    if start == 0:
        return True
    if re.fullmatch(rb"[A-Za-z0-9._+~/-]", data[start - 1:start]) is None:
        return True
    return data[start - 2:start] in (b"-L", b"-I", b"-R")


def _marshal_string_at(data: bytes, start: int) -> tuple[int | None, int, int]:
    """(type byte, length, header size) of a marshalled string whose bytes begin at `start`."""
    if start >= 2 and data[start - 2] & 0x7F in _SHORT:
        return data[start - 2], data[start - 1], 2
    if start >= 5 and data[start - 5] & 0x7F in _LONG:
        return data[start - 5], int.from_bytes(data[start - 4:start], "little"), 5
    return None, 0, 0


def _marshal_header(kind: int, length: int) -> bytes:
    """The header of a string of `kind` (or its long form, when too long for a short one)."""
    if kind & 0x7F in _SHORT:
        if length <= 0xFF:
            return bytes([kind, length])
        kind = _SHORT_TO_LONG[kind & 0x7F] | (kind & 0x80)
    return bytes([kind]) + length.to_bytes(4, "little")

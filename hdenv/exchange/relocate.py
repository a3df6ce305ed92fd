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
  when the new root is no longer than the old one. The new root is padded to
  the old length with leading slashes (`/old/store` -> `///new/st`, the same
  path to the kernel) rather than with trailing NULs: every byte after the
  root keeps its offset, so a string the linker tail-merged with another, or
  one that is not NUL-terminated (marshalled Python code, archive members),
  stays valid. Where the new root is longer, `CannotRelocate` says which file
  holds such a string, and the caller builds from source instead.

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
        found = list(self.pattern.finditer(data))
        if not found:
            return data
        in_run_path = self._run_path(rel, data) if data[:4] == MAGIC else 0
        growing = [m for m in found if m.group(0) not in self.padded]
        if growing and len(found) > in_run_path:
            old = growing[0].group(0).decode("utf-8", "surrogateescape")
            new = self.map[old]
            raise CannotRelocate(
                f"{rel} holds the old store root {old} in a binary string, and the new"
                f" root {new} is longer ({len(_b(new))} > {len(_b(old))} bytes)")
        if growing:
            return data  # only the run path mentions the old root: patchelf grows it
        out = bytearray(data)
        for m in found:  # the run path too; patchelf then sets it without the padding
            out[m.start():m.end()] = self.padded[m.group(0)]
        return bytes(out)

    def _run_path(self, rel: str, data: bytes) -> int:
        """Remember the run path to rewrite; return how many mentions of the old root it holds.

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
        if not entries or self.pattern is None:
            return 0
        count = len(self.pattern.findall(_b(":".join(entries))))
        if count:
            self._pending[rel] = (entries, is_rpath)
        return count

    def after_write(self, rel: str, path: Path) -> None:
        """Set the relocated run path of an ELF file just written (patchelf works on files)."""
        pending = self._pending.pop(rel, None)
        if pending is None:
            return
        entries, is_rpath = pending
        assert self.pattern is not None
        moved = [self.pattern.sub(lambda m: self.map_b[m.group(0)], _b(e)).decode(
            "utf-8", "surrogateescape") for e in entries]
        try:
            set_runpath(path, moved, rpath=is_rpath)
        except PatchelfMissing as e:
            raise CannotRelocate(f"{rel} has a run path to relocate: {e}") from None
        except OSError as e:
            raise CannotRelocate(f"{rel}: {e}") from None

"""Tar entries for a store tree (an artifact or the profile), at its path in the image.

What goes in is what the programs need at run time plus the metadata that
makes the image a store again (`.hdenv/spec.json`, `manifest.json`,
`artifact.json`, `profile.json`), without what only says when or how long
a build ran (`created`, `build_seconds`, the build log): those differ
between two builds of the same spec and would make the same profile give
different layers. With `--root` every file, link and metadata value is
rewritten by the caches' relocation (`exchange.relocate`), ELF run paths
with patchelf, through a scratch file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import HdenvError
from ..exchange.relocate import CannotRelocate, Relocator
from ..store.hashing import canonical_json
from ..store.layout import ARTIFACT_META, META_DIR, PROFILE_META
from .tarlayer import DIR_MODE, Entry, file_mode, open_beneath

VOLATILE = frozenset({"created", "build_seconds", "slurm", "log_first"})
LEFT_OUT = frozenset({"build.log"})


class RelocationFailed(HdenvError):
    """`--root` cannot hold this content (a binary string longer than the old root)."""


def _clean_meta(data: bytes) -> bytes:
    """artifact.json / profile.json without build-time values, canonical."""
    try:
        meta: dict[str, Any] = json.loads(data)
    except ValueError:
        return data
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in VOLATILE}
    return canonical_json(meta) + b"\n"


class TreeReader:
    """Walks store trees into entries; relocates them when the image root differs."""

    def __init__(self, relocator: Relocator | None, scratch: Path):
        self.relocator = relocator if relocator is not None and relocator.active else None
        self.scratch = scratch

    def image_path(self, host_path: Path) -> str:
        p = str(host_path)
        return self.relocator.text(p) if self.relocator is not None else p

    def entries(self, root: Path) -> list[Entry]:
        """Every entry under `root`: an iterative walk (no recursion over the tree's depth)
        through directory fds, nothing followed (`tarlayer.open_beneath`)."""
        top = self.image_path(root).strip("/")
        out = [Entry(top, "dir", DIR_MODE)]
        stack = [""]
        while stack:
            rel = stack.pop()
            fd = open_beneath(root, rel, directory=True)
            try:
                with os.scandir(fd) as it:
                    children = sorted(it, key=lambda e: e.name)
                for child in children:
                    crel = f"{rel}/{child.name}" if rel else child.name
                    if rel == META_DIR and child.name in LEFT_OUT:
                        continue
                    st = child.stat(follow_symlinks=False)
                    name = f"{top}/{crel}"
                    if stat.S_ISDIR(st.st_mode):
                        out.append(Entry(name, "dir", DIR_MODE))
                        stack.append(crel)
                    elif stat.S_ISLNK(st.st_mode):
                        target = os.readlink(child.name, dir_fd=fd)
                        if self.relocator is not None:
                            target = self.relocator.link_target(target)
                        out.append(Entry(name, "link", 0o777, target=target))
                    elif stat.S_ISREG(st.st_mode):
                        out.append(self._file(crel, name, root, st.st_mode))
            finally:
                os.close(fd)
        return out

    def _file(self, rel: str, name: str, root: Path, mode: int) -> Entry:
        meta = rel in (f"{META_DIR}/{ARTIFACT_META}", f"{META_DIR}/{PROFILE_META}")
        if not meta and self.relocator is None:
            return Entry(name, "file", file_mode(mode), source=Path(rel), beneath=root)

        def transform(data: bytes) -> bytes:
            if meta:
                data = _clean_meta(data)
            return self._relocate(rel, data) if self.relocator is not None else data

        return Entry(name, "file", file_mode(mode), source=Path(rel), beneath=root,
                     transform=transform)

    def _relocate(self, rel: str, data: bytes) -> bytes:
        assert self.relocator is not None
        try:
            moved = self.relocator.file_data(rel, data)
            if rel in self.relocator._pending:  # an ELF run path: patchelf works on files
                tmp = self.scratch / "relocating"
                tmp.write_bytes(moved)
                self.relocator.after_write(rel, tmp)
                moved = tmp.read_bytes()
                tmp.unlink()
        except CannotRelocate as e:
            raise RelocationFailed(f"cannot pack with --root: {e}") from None
        return moved

"""A profile's symlink farm made while its artifacts arrive, not after the last one.

`reproduce --from CACHE` knows a profile's members before it downloads them, and
its main thread only waits while they install: the farm (`farm.build_farm`),
made after the last one, was 50-65 ms of a 200-artifact reproduce with nothing
else to do. `GrowingFarm` adds each member as it lands, in whatever order they
come, and ends with what `build_farm` would have made of them all: a directory
only one member provides is one link into it ("folded"); when a second member
provides it too, the link is replaced by a real directory holding the first
member's entries and the second's ("unfolded", as GNU Stow does).

It gives up, and the caller makes the farm as before, wherever it could differ:
a path two members provide that is not a directory in both (a conflict, which
`priority` and `exclude` settle with the whole picture) and any member with a
Python interpreter (the venv technique keeps `bin/` and `site-packages` real,
which depends on every member; pyprofile.py). It gives up on any OSError as
well (a full disk): the caller's farm then meets it and says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import UserError
from .farm import Excluder, FarmStats, Member, _Farm
from .pyprofile import find_pythons


class _Link(NamedTuple):
    member: Member
    source: str  # what the link points at: the member's own path, as scandir gives it
    is_dir: bool


_REAL_DIR = None  # a real directory in the farm: its entries are in `GrowingFarm.tree`


class _GiveUp(Exception):
    """The farm grown so far may differ from `build_farm`'s: the caller makes it anew."""


class GrowingFarm:
    """The farm of `members` in the empty directory `dest`, one `add` per member."""

    def __init__(self, dest: Path, members: Sequence[Member], exclude: Sequence[str] = ()):
        self.dest = dest
        self.exclude = list(exclude)
        # build_farm's own rules for what a directory holds and what may fold (no Python:
        # nothing kept real), so both farms read the members alike
        self.rules = _Farm(dest, Excluder(exclude), (), set(), fold=True)
        self.members = {m.id: m for m in members}
        self.added: set[str] = set()
        # path in the farm -> {name: _Link or _REAL_DIR}, for every real directory
        self.tree: dict[tuple[str, ...], dict[str, _Link | None]] = {(): {}}
        self.gave_up: str | None = None  # why, for tests and --debug readers

    def add(self, member_id: str) -> None:
        """Link the member in (it is installed); never raises: a failure makes `stats` None."""
        if self.gave_up is not None or member_id in self.added:
            return
        member = self.members.get(member_id)
        try:
            if member is None:
                raise _GiveUp(f"{member_id} is no member")
            if find_pythons([member], self.exclude):
                raise _GiveUp(f"{member_id} has a Python")
            self._merge((), member, str(member.root))
        except (_GiveUp, OSError, UserError) as e:
            self.gave_up = str(e) or type(e).__name__
            return
        self.added.add(member_id)

    def stats(self) -> FarmStats | None:
        """What `build_farm` would have returned, if `dest` is what it would have made of
        all the members; None if not (one is missing, or it gave up)."""
        if self.gave_up is not None or self.added != set(self.members):
            return None
        stats = FarmStats()
        for entries in self.tree.values():
            for node in entries.values():
                if node is _REAL_DIR:
                    stats.dirs += 1
                else:
                    stats.links += 1
                    stats.folded += node.is_dir
        return stats

    def _merge(self, parts: tuple[str, ...], member: Member, source: str) -> None:
        """Put the member's directory `source` at `parts` of the farm, depth first."""
        work = [(parts, member, source)]
        while work:
            parts, member, source = work.pop()
            entries = self.tree[parts]
            for name, [(_, path, is_dir)] in self.rules._entries(parts, [(member, source)]).items():
                sub = (*parts, name)
                target = os.path.join(self.dest, *sub)
                if name not in entries:  # the first member with it
                    if is_dir and not self.rules._can_fold(sub, member):
                        self._real_dir(entries, sub, target)
                        work.append((sub, member, path))
                    else:
                        os.symlink(path, target)
                        entries[name] = _Link(member, path, is_dir)
                    continue
                there = entries[name]
                if not is_dir or (there is not _REAL_DIR and not there.is_dir):
                    raise _GiveUp(f"{'/'.join(sub)} is provided by two members")
                if there is not _REAL_DIR:  # one member's folded directory: unfold it
                    os.unlink(target)
                    self._real_dir(entries, sub, target)
                    work.append((sub, there.member, there.source))
                work.append((sub, member, path))

    def _real_dir(self, entries: dict[str, _Link | None], sub: tuple[str, ...],
                  target: str) -> None:
        os.mkdir(target)
        entries[sub[-1]] = _REAL_DIR
        self.tree[sub] = {}

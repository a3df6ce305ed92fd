"""The symlink farm: many artifact trees merged into one prefix.

Directories present in several artifacts become real directories whose entries
are merged; a directory that only one artifact contributes becomes a single
symlink to that artifact's directory ("tree folding", as GNU Stow does). Folding
is what makes a farm cheap: the cost is proportional to the *shared* part of the
trees (bin/, lib/, share/man/...), not to the number of files.

A path that two artifacts both provide (and that is not a directory in both) is
a conflict. The profile can resolve conflicts with two options, both part of the
profile spec and therefore of its hash:

- ``exclude``: patterns ``[ARTIFACT:]PATH`` where PATH is matched component by
  component with shell globs (``*`` never crosses ``/``), e.g.
  ``"share/info/dir"`` (from every artifact) or ``"hello:share/info/dir"``
  (only from hello). A pattern matching a directory drops the whole directory.
- ``priority``: artifacts in decreasing precedence; on a conflict the listed
  artifact that comes first wins the whole path.

ARTIFACT in both is a package name, ``NAME/VERSION`` or a full artifact id: names
are what a stack file knows and they survive rebuilds, ids are exact.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

META_DIR = ".hdenv"


@dataclass(frozen=True)
class Member:
    """One artifact taking part in a farm."""

    id: str
    root: Path

    def matches(self, selector: str) -> bool:
        """Whether a user-written selector (name, name/version or id) names this artifact."""
        if selector == self.id:
            return True
        parts = self.id.split("/")
        return selector == parts[0] or selector == "/".join(parts[:2])


@dataclass(frozen=True)
class Conflict:
    path: str
    ids: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.path} is provided by both {' and '.join(self.ids)}"


@dataclass
class FarmStats:
    links: int = 0
    dirs: int = 0
    folded: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


class Excluder:
    """Compiled `exclude` patterns; knows whether a folded directory could hide a match."""

    def __init__(self, patterns: Iterable[str]):
        self.rules: list[tuple[str | None, tuple[re.Pattern[str], ...]]] = []
        for raw in patterns:
            selector, _, path = raw.partition(":") if ":" in raw else ("", "", raw)
            parts = [p for p in path.strip("/").split("/") if p]
            if not parts or any(p in (".", "..") for p in parts):
                raise UserError(f"bad exclude pattern {raw!r}: expected [ARTIFACT:]PATH")
            compiled = tuple(re.compile(fnmatch.translate(p)) for p in parts)
            self.rules.append((selector or None, compiled))

    def _applies(self, selector: str | None, member: Member) -> bool:
        return selector is None or member.matches(selector)

    def excluded(self, member: Member, parts: Sequence[str]) -> bool:
        for selector, comps in self.rules:
            if len(comps) == len(parts) and self._applies(selector, member) and all(
                c.match(p) for c, p in zip(comps, parts)
            ):
                return True
        return False

    def may_match_below(self, member: Member, parts: Sequence[str]) -> bool:
        """True if some pattern could exclude something inside directory `parts`."""
        for selector, comps in self.rules:
            if len(comps) > len(parts) and self._applies(selector, member) and all(
                c.match(p) for c, p in zip(comps, parts)
            ):
                return True
        return False


_Group = list[tuple[Member, str, bool]]  # (member, source path, is_dir) of one name


class _Farm:
    """State of one farm construction; `merge` walks the shared directories."""

    def __init__(
        self,
        dest: Path,
        excluder: Excluder,
        priority: Sequence[str],
        keep_real: set[tuple[str, ...]],
        fold: bool,
    ):
        self.dest = str(dest)
        self.excluder = excluder
        self.priority = list(priority)
        self.keep_real = keep_real
        self.fold = fold
        self.stats = FarmStats()

    def rank(self, member: Member) -> int | None:
        for i, selector in enumerate(self.priority):
            if member.matches(selector):
                return i
        return None

    def _entries(
        self, parts: tuple[str, ...], contributors: list[tuple[Member, str]]
    ) -> dict[str, list[tuple[Member, str, bool]]]:
        """name -> [(member, source path, is_dir)] over every contributor's directory."""
        found: dict[str, list[tuple[Member, str, bool]]] = {}
        top = not parts
        check_exclude = bool(self.excluder.rules)
        for member, src in contributors:
            with os.scandir(src) as it:
                for entry in it:
                    name = entry.name
                    if top and name == META_DIR:
                        continue
                    if check_exclude and self.excluder.excluded(member, (*parts, name)):
                        continue
                    found.setdefault(name, []).append(
                        (member, entry.path, entry.is_dir(follow_symlinks=False))
                    )
        return found

    def _can_fold(self, parts: tuple[str, ...], member: Member) -> bool:
        if not self.fold or parts in self.keep_real:
            return False
        return not self.excluder.may_match_below(member, parts)

    def _pick(self, rel: str, group: list[tuple[Member, str, bool]]) -> tuple[Member, str, bool]:
        ranks = [(r, i) for i, (m, _s, _d) in enumerate(group) if (r := self.rank(m)) is not None]
        if ranks:
            return group[min(ranks)[1]]
        self.stats.conflicts.append(Conflict(rel, tuple(m.id for m, _s, _d in group)))
        return group[0]

    def merge(self, parts: tuple[str, ...], contributors: list[tuple[Member, str]]) -> None:
        """Merge the contributors' directories at `parts` into the farm, depth first.

        An explicit stack, not recursion: an artifact's tree is as deep as its
        build made it (a 1,000-deep one exceeded Python's recursion limit).
        """
        first = iter(sorted(self._entries(parts, contributors).items()))
        stack: list[tuple[tuple[str, ...], Iterator[tuple[str, _Group]]]] = [(parts, first)]
        while stack:
            parts, entries = stack[-1]
            for name, group in entries:
                sub = self._place(parts, name, group)
                if sub is not None:
                    stack.append((sub[0], iter(sorted(self._entries(*sub).items()))))
                    break
            else:
                stack.pop()

    def _place(self, parts: tuple[str, ...], name: str, group: _Group
               ) -> tuple[tuple[str, ...], list[tuple[Member, str]]] | None:
        """Link one entry, or make it a real directory and return what to merge into it."""
        sub = (*parts, name)
        target = os.path.join(self.dest, *sub)
        if all(is_dir for _m, _s, is_dir in group) and (
            len(group) > 1 or not self._can_fold(sub, group[0][0])
        ):
            os.mkdir(target)
            self.stats.dirs += 1
            return sub, [(m, s) for m, s, _d in group]
        member, src, is_dir = group[0] if len(group) == 1 else self._pick("/".join(sub), group)
        if is_dir and not self._can_fold(sub, member):
            os.mkdir(target)
            self.stats.dirs += 1
            return sub, [(member, src)]
        os.symlink(src, target)
        self.stats.links += 1
        if is_dir:
            self.stats.folded += 1
        return None


def build_farm(
    dest: Path,
    members: Sequence[Member],
    *,
    exclude: Iterable[str] = (),
    priority: Sequence[str] = (),
    keep_real: Iterable[str] = (),
    fold: bool = True,
) -> FarmStats:
    """Link every member's files into the existing empty directory `dest`.

    `keep_real` lists directories that must be real merged directories even when
    one artifact provides them (Python needs its own bin/ and site-packages);
    their parents are kept real too. `fold=False` links file by file, like
    `cp -rs`. Raises UserError naming the path and both artifacts on the first
    unresolved conflict (all of them are counted in the message).
    """
    real: set[tuple[str, ...]] = set()
    for path in keep_real:
        comps = tuple(p for p in path.strip("/").split("/") if p)
        for i in range(1, len(comps) + 1):
            real.add(comps[:i])
    farm = _Farm(dest, Excluder(exclude), priority, real, fold)
    farm.merge((), [(m, str(m.root)) for m in members])
    conflicts = farm.stats.conflicts
    if conflicts:
        more = f" (and {len(conflicts) - 1} more conflicts)" if len(conflicts) > 1 else ""
        first = conflicts[0]
        name = first.ids[0].split("/")[0]
        raise UserError(
            f"profile conflict: {first.describe()}{more}; resolve it in the profile with "
            f'exclude = ["{name}:{first.path}"] or priority = ["{name}"]'
        )
    return farm.stats

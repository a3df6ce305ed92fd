"""A farm grown member by member (profile/growing.py) against the farm made at once.

Random member trees (shared and private directories, files, links to directories,
empty directories, excludes), added in random orders: whenever the grown farm says
it is complete, it must be exactly what `build_farm` makes of the same members, link
for link; where `build_farm` finds a conflict, the grown one must have given up.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from hdenv.errors import UserError
from hdenv.profile.farm import FarmStats, Member, build_farm
from hdenv.profile.growing import GrowingFarm

DIRS = ["bin", "lib", "lib/pkgconfig", "share", "share/man/man1", "share/doc", "include",
        "include/sub/deeper", "etc"]
EXCLUDES = [[], ["share/doc"], ["m1:lib/pkgconfig"], ["share/man/*"], ["*/x0.txt"]]


def listing(root: Path) -> dict[str, str]:
    """relative path -> "dir" or "-> TARGET", for everything in a farm."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            out[rel] = f"-> {os.readlink(path)}" if os.path.islink(path) else "dir"
    return out


def make_member(base: Path, i: int, rng: random.Random, clash: bool) -> Member:
    root = base / f"m{i}" / "1" / f"h{i}"
    root.mkdir(parents=True)
    (root / ".hdenv").mkdir()
    (root / ".hdenv" / "artifact.json").write_text("{}")
    for d in rng.sample(DIRS, rng.randint(0, len(DIRS))):
        (root / d).mkdir(parents=True, exist_ok=True)
        for j in range(rng.randint(0, 2)):
            (root / d / f"{'x' if clash else f'f{i}'}{j}.txt").write_text(f"{i}\n")
    if rng.random() < 0.3:
        (root / "lib").mkdir(exist_ok=True)
        (root / "lib" / f"alias{i}").symlink_to(".")  # a link to a directory: not merged
    if rng.random() < 0.2:
        (root / f"empty{i}").mkdir()
    return Member(f"m{i}/1/h{i}", root)


@pytest.mark.parametrize("seed", range(40))
def test_a_grown_farm_is_the_farm_build_farm_makes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    members = [make_member(tmp_path / "artifacts", i, rng, clash=rng.random() < 0.15)
               for i in range(rng.randint(1, 7))]
    exclude = rng.choice(EXCLUDES)
    at_once, grown_dir = tmp_path / "at-once", tmp_path / "grown"
    at_once.mkdir()
    grown_dir.mkdir()
    grown = GrowingFarm(grown_dir, members, exclude)
    for m in rng.sample(members, len(members)):
        grown.add(m.id)
    try:
        expected: FarmStats | None = build_farm(at_once, members, exclude=exclude)
    except UserError:
        expected = None  # a conflict: the grown farm must not claim to be complete
    stats = grown.stats()
    if expected is None:
        assert stats is None and grown.gave_up is not None
        return
    assert grown.gave_up is None
    assert stats == expected
    assert listing(grown_dir) == listing(at_once)


def growing(tmp_path: Path, *trees: dict[str, str]) -> tuple[GrowingFarm, list[Member]]:
    """A farm to grow in tmp_path/farm, of one member per tree (relative path -> text)."""
    members = []
    for i, tree in enumerate(trees):
        root = tmp_path / f"a{i}"
        for rel, text in tree.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        members.append(Member(f"a{i}/1/h", root))
    (tmp_path / "farm").mkdir()
    return GrowingFarm(tmp_path / "farm", members), members


def test_a_second_member_unfolds_a_shared_directory(tmp_path: Path) -> None:
    grown, [a, b] = growing(tmp_path, {"share/man/man1/a.1": "a"}, {"share/man/man3/b.3": "b"})
    grown.add(a.id)
    assert os.readlink(tmp_path / "farm" / "share") == f"{a.root}/share"  # folded
    grown.add(b.id)
    assert not os.path.islink(tmp_path / "farm" / "share" / "man")
    assert os.readlink(tmp_path / "farm" / "share" / "man" / "man1") == f"{a.root}/share/man/man1"
    assert grown.stats() == FarmStats(links=2, dirs=2, folded=2)


def test_a_path_two_members_provide_gives_up(tmp_path: Path) -> None:
    grown, [a, b] = growing(tmp_path, {"bin/tool": "a"}, {"bin/tool": "b"})
    grown.add(a.id)
    grown.add(b.id)
    assert grown.stats() is None and grown.gave_up == "bin/tool is provided by two members"


def test_a_member_with_a_python_gives_up(tmp_path: Path) -> None:
    """The venv technique keeps bin/ real, which only the whole picture decides."""
    grown, [a] = growing(tmp_path, {"bin/python3.11": "#!"})
    grown.add(a.id)
    assert grown.stats() is None and grown.gave_up == f"{a.id} has a Python"


def test_it_is_complete_only_with_every_member(tmp_path: Path) -> None:
    grown, [a, b] = growing(tmp_path, {"bin/a": "a"}, {"bin/b": "b"})
    grown.add(a.id)
    assert grown.stats() is None
    grown.add(b.id)
    assert grown.stats() == FarmStats(links=2, dirs=1, folded=0)


def test_a_failing_file_system_gives_up_instead_of_raising(tmp_path: Path) -> None:
    """An add runs while the downloads go on: it must never stop them."""
    grown, [a, b] = growing(tmp_path, {"bin/a": "a"}, {"bin/b": "b"})
    grown.add(a.id)
    shutil.rmtree(tmp_path / "farm")
    grown.add(b.id)
    assert grown.stats() is None and "No such file" in (grown.gave_up or "")

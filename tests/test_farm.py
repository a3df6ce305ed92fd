"""The symlink farm on real trees: merging, folding, conflicts, exclude and priority."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hdenv.errors import UserError
from hdenv.profile.farm import Member, build_farm


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    return root


@pytest.fixture
def two(tmp_path: Path) -> tuple[Member, Member, Path]:
    a = make_tree(tmp_path / "a", {
        "bin/foo": "foo", "lib/libfoo.so": "A", "share/foo/data/x.txt": "x",
        ".hdenv/artifact.json": "{}",
    })
    b = make_tree(tmp_path / "b", {
        "bin/bar": "bar", "lib/libbar.so": "B", "include/bar.h": "h",
        ".hdenv/artifact.json": "{}",
    })
    dest = tmp_path / "farm"
    dest.mkdir()
    return Member("foo/1.0/aaaaaa", a), Member("bar/2.0/bbbbbb", b), dest


def test_merges_shared_dirs_and_folds_private_ones(two: tuple[Member, Member, Path]) -> None:
    a, b, dest = two
    stats = build_farm(dest, [a, b])
    assert (dest / "bin").is_dir() and not (dest / "bin").is_symlink()
    assert os.readlink(dest / "bin" / "foo") == str(a.root / "bin" / "foo")
    assert (dest / "bin" / "bar").read_text() == "bar"
    # share/ and include/ come from one artifact each: one link for the whole directory
    assert os.readlink(dest / "share") == str(a.root / "share")
    assert os.readlink(dest / "include") == str(b.root / "include")
    assert (dest / "share" / "foo" / "data" / "x.txt").read_text() == "x"
    assert stats.folded == 2
    # artifact metadata never leaks into the farm
    assert not os.path.lexists(dest / ".hdenv")


def test_no_fold_links_every_file(two: tuple[Member, Member, Path]) -> None:
    a, b, dest = two
    build_farm(dest, [a, b], fold=False)
    assert not (dest / "share").is_symlink()
    assert os.readlink(dest / "share/foo/data/x.txt") == str(a.root / "share/foo/data/x.txt")


def test_keep_real_unfolds_directory_and_its_parents(two: tuple[Member, Member, Path]) -> None:
    a, b, dest = two
    build_farm(dest, [a, b], keep_real=["share/foo"])
    assert not (dest / "share").is_symlink()
    assert not (dest / "share" / "foo").is_symlink()
    assert os.readlink(dest / "share/foo/data") == str(a.root / "share/foo/data")


def test_conflict_names_path_and_both_artifacts(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"share/info/dir": "a", "bin/x": "1"})
    b = make_tree(tmp_path / "b", {"share/info/dir": "b", "bin/y": "2"})
    dest = tmp_path / "farm"
    dest.mkdir()
    with pytest.raises(UserError) as e:
        build_farm(dest, [Member("hello/2.10/aaaaaa", a), Member("lua/5.4/bbbbbb", b)])
    msg = str(e.value)
    assert "share/info/dir" in msg
    assert "hello/2.10/aaaaaa" in msg and "lua/5.4/bbbbbb" in msg
    assert "exclude" in msg and "priority" in msg


def test_file_against_directory_is_a_conflict(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"lib/thing": "file"})
    b = make_tree(tmp_path / "b", {"lib/thing/inner": "dir"})
    dest = tmp_path / "farm"
    dest.mkdir()
    with pytest.raises(UserError, match="lib/thing"):
        build_farm(dest, [Member("a/1/aaaaaa", a), Member("b/1/bbbbbb", b)])


def test_exclude_everywhere_and_per_artifact(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"share/info/dir": "a", "share/info/a.info": "ai"})
    b = make_tree(tmp_path / "b", {"share/info/dir": "b", "share/info/b.info": "bi"})
    ma, mb = Member("hello/2.10/aaaaaa", a), Member("lua/5.4/bbbbbb", b)
    d1 = tmp_path / "f1"
    d1.mkdir()
    build_farm(d1, [ma, mb], exclude=["share/info/dir"])
    assert not os.path.lexists(d1 / "share/info/dir")
    assert (d1 / "share/info/b.info").read_text() == "bi"
    d2 = tmp_path / "f2"
    d2.mkdir()
    build_farm(d2, [ma, mb], exclude=["hello:share/info/dir"])
    assert (d2 / "share/info/dir").read_text() == "b"


def test_exclude_glob_prevents_folding_of_the_directory_holding_a_match(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"share/doc/a/README": "r", "share/doc/a/big.pdf": "p"})
    dest = tmp_path / "farm"
    dest.mkdir()
    build_farm(dest, [Member("a/1/aaaaaa", a)], exclude=["share/doc/*/*.pdf"])
    assert (dest / "share/doc/a/README").read_text() == "r"
    assert not os.path.lexists(dest / "share/doc/a/big.pdf")
    # the excluded file is really absent: the directory is not one link into the artifact
    assert not (dest / "share/doc/a").is_symlink()


def test_exclude_directory_drops_subtree(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"share/doc/x": "x", "bin/t": "t"})
    dest = tmp_path / "farm"
    dest.mkdir()
    build_farm(dest, [Member("a/1/aaaaaa", a)], exclude=["share/doc"])
    assert not os.path.lexists(dest / "share/doc")
    assert (dest / "bin/t").read_text() == "t"


def test_priority_picks_the_listed_artifact(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", {"bin/tool": "from a", "bin/a": "a"})
    b = make_tree(tmp_path / "b", {"bin/tool": "from b", "bin/b": "b"})
    ma, mb = Member("alpha/1/aaaaaa", a), Member("beta/1/bbbbbb", b)
    for prio, expect in ((["beta"], "from b"), (["alpha/1", "beta"], "from a"),
                         (["beta/1/bbbbbb"], "from b")):
        dest = tmp_path / ("f-" + "-".join(p.replace("/", "_") for p in prio))
        dest.mkdir()
        build_farm(dest, [ma, mb], priority=prio)
        assert (dest / "bin/tool").read_text() == expect
        assert (dest / "bin/a").read_text() == "a" and (dest / "bin/b").read_text() == "b"


def test_bad_exclude_pattern_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="exclude"):
        build_farm(tmp_path, [], exclude=["../etc"])


def test_symlinks_in_artifacts_are_leaves(tmp_path: Path) -> None:
    """A symlink to a directory (lib64 -> lib) is linked, not merged into."""
    a = make_tree(tmp_path / "a", {"lib/liba.so": "a"})
    os.symlink("lib", a / "lib64")
    b = make_tree(tmp_path / "b", {"lib/libb.so": "b"})
    dest = tmp_path / "farm"
    dest.mkdir()
    build_farm(dest, [Member("a/1/aaaaaa", a), Member("b/1/bbbbbb", b)])
    assert os.readlink(dest / "lib64") == str(a / "lib64")
    assert sorted(os.listdir(dest / "lib")) == ["liba.so", "libb.so"]

"""Unknown REFs: package names point at their profiles, typos at the closest names.

The store is written by the layout contract (names/NAME/N links, profile.json
with its artifacts, artifacts with artifact.json), as a build leaves it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from shellfixtures import add_artifact, add_profile, fake_hash

from hdenv.errors import UserError
from hdenv.shell import fastload
from hdenv.store.layout import Store

LUA = "lua/5.4.4/" + fake_hash("lua")
LUA_DEBUG = "lua/5.4.4/" + fake_hash("lua-debug")
HELLO = "hello/2.10/" + fake_hash("hello")
ZLIB_OLD = "zlib/1.2.12/" + fake_hash("zlib")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    for aid in (LUA, LUA_DEBUG, HELLO, ZLIB_OLD):
        add_artifact(root, aid)
    add_profile(root, "gnu", [HELLO, LUA])
    add_profile(root, "gnu-debug", [HELLO, LUA_DEBUG])
    add_profile(root, "demo", [ZLIB_OLD], generation=1, current=False)
    add_profile(root, "demo", [HELLO], generation=2)
    return root


def both(root: Path, ref: str) -> str:
    """The message from the full resolver and from the load fast path: they must agree."""
    with pytest.raises(UserError) as full:
        Store(root).resolve(ref)
    with pytest.raises(UserError) as fast:
        fastload.resolve(str(root), ref)
    assert full.value.message == fast.value.message
    return full.value.message


def full(root: Path, ref: str) -> str:
    """The full resolver's message (`show` and the other click commands)."""
    with pytest.raises(UserError) as info:
        Store(root).resolve(ref)
    return info.value.message


def test_a_package_name_gets_the_profiles_that_hold_it(store: Path) -> None:
    assert full(store, "lua") == (
        "unknown REF 'lua': lua is a package in profiles gnu, gnu-debug: hdenv load gnu")
    assert full(store, "hello") == (
        "unknown REF 'hello': hello is a package in profiles demo, gnu, gnu-debug:"
        " hdenv load demo")


def test_load_takes_a_package_by_name_or_lists_its_builds(store: Path) -> None:
    """The load path loads packages by name (issue 22, shell/byname.py)."""
    assert fastload.resolve(str(store), "hello").package == HELLO
    # two builds, nothing recorded to tell them apart: the hash is the last resort
    with pytest.raises(UserError, match=r"^lua is ambiguous: lua/5\.4\.4-\w{7} \(no compiler\),"
                                        r" lua/5\.4\.4-\w{7} \(no compiler\);"):
        fastload.resolve(str(store), "lua")


def test_a_package_only_in_an_older_generation_names_that_generation(store: Path) -> None:
    assert full(store, "zlib") == (
        "unknown REF 'zlib': zlib is a package in older generations only (demo/1):"
        " hdenv load demo/1")
    assert fastload.resolve(str(store), "zlib").package == ZLIB_OLD  # load: that build


def test_a_typo_gets_the_closest_names(store: Path) -> None:
    assert both(store, "demoo") == "unknown REF 'demoo'; did you mean demo?"
    assert both(store, "gnu-debgu") == "unknown REF 'gnu-debgu'; did you mean gnu-debug?"
    assert both(store, "Demo") == "unknown REF 'Demo'; did you mean demo?"
    assert both(store, "luaa") == "unknown REF 'luaa'; did you mean lua (a package in gnu, gnu-debug)?"


def test_nothing_close_says_what_a_ref_is(store: Path) -> None:
    assert "not a profile name, NAME/N" in both(store, "qqqqqqqqqqq")
    assert "hash prefix needs at least 6 characters" in both(store, "xz")


def test_name_version_resolves_when_unique(store: Path) -> None:
    s = Store(store)
    assert s.resolve("hello/2.10").ident == HELLO
    assert s.resolve("zlib/1.2.12").ident == ZLIB_OLD
    with pytest.raises(UserError, match=r"NAME/VERSION 'lua/5.4.4' is ambiguous: lua/5.4.4/"):
        s.resolve("lua/5.4.4")
    assert s.resolve(LUA[:16]).ident == LUA
    assert both(store, "hello/9.9").startswith("unknown REF 'hello/9.9': hello is a package in")
    assert s.resolve("demo/1").kind == "profile"  # NAME/N stays a generation


def test_name_version_with_a_numeric_version(tmp_path: Path) -> None:
    root = tmp_path / "store"
    add_artifact(root, "tool/7/" + fake_hash("tool"))
    assert Store(root).resolve("tool/7").ident == "tool/7/" + fake_hash("tool")

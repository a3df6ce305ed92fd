"""Levels, names, suffixes and defaults, decided from plain data before any file."""

from __future__ import annotations

import pytest

from hdenv.errors import UserError
from hdenv.modules.hierarchy import (
    CORE,
    Node,
    ProfileNode,
    plan_layout,
)
from hdenv.store.variants import variant_suffixes, version_key

GCC = "gcc/12.2.0/" + "g" * 32
CLANG = "clang/14.0.6/" + "c" * 32
MPI = "openmpi/4.1.4/" + "m" * 32


def node(aid: str, *, family: str | None = None, compilers: tuple[str, ...] = (),
         mpis: tuple[str, ...] = (), deps: tuple[str, ...] = (), created: str = "1") -> Node:
    name, version, _ = aid.split("/")
    return Node(aid, name, version, family, compilers, mpis, deps, created)


def where(layout, aid: str) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(f"{layout.level_dirs[p.level]}/{p.full_name}"
                  for p in layout.placements if p.ident == aid)


def stack(*extra: Node) -> dict[str, Node]:
    base = [node(GCC, family="compiler"), node(CLANG, family="compiler"),
            node(MPI, family="mpi")]
    return {n.id: n for n in [*base, *extra]}


def test_compilers_in_core_open_their_level_and_never_core() -> None:
    zlib = "zlib/1.2.13/" + "a" * 32
    layout = plan_layout(stack(node(zlib, compilers=(GCC,))), [])
    assert where(layout, GCC) == ["Core/gcc/12.2.0"]
    assert where(layout, zlib) == ["Compiler/gcc/12.2.0/zlib/1.2.13"]
    gcc = next(p for p in layout.placements if p.ident == GCC)
    assert layout.level_dirs[gcc.opens] == "Compiler/gcc/12.2.0"  # type: ignore[index]
    assert all(p.opens != CORE for p in layout.placements)
    assert layout.warnings == []


def test_mpi_sits_under_each_compiler_it_was_used_with() -> None:
    hello_g = "hello/1.0/" + "h" * 32
    hello_c = "hello/1.0/" + "i" * 32
    layout = plan_layout(stack(node(hello_g, compilers=(GCC,), mpis=(MPI,)),
                               node(hello_c, compilers=(CLANG,), mpis=(MPI,))), [])
    assert where(layout, MPI) == ["Compiler/clang/14.0.6/openmpi/4.1.4",
                                  "Compiler/gcc/12.2.0/openmpi/4.1.4"]
    assert where(layout, hello_g) == ["MPI/gcc/12.2.0/openmpi/4.1.4/hello/1.0"]
    assert where(layout, hello_c) == ["MPI/clang/14.0.6/openmpi/4.1.4/hello/1.0"]
    opened = sorted(layout.level_dirs[p.opens] for p in layout.placements
                    if p.ident == MPI and p.opens)
    assert opened == ["MPI/clang/14.0.6/openmpi/4.1.4", "MPI/gcc/12.2.0/openmpi/4.1.4"]


def test_unused_host_mpi_and_plain_packages_are_core() -> None:
    data = "data/1/" + "d" * 32
    layout = plan_layout(stack(node(data)), [])
    assert where(layout, MPI) == ["Core/openmpi/4.1.4"]
    assert where(layout, data) == ["Core/data/1"]


def test_a_package_without_compiler_follows_its_runtime_dependencies() -> None:
    zlib = "zlib/1.2.13/" + "a" * 32
    pyz = "pyzlib/1/" + "p" * 32  # a pure-Python binding of zlib, no compiler of its own
    layout = plan_layout(stack(node(zlib, compilers=(GCC,)), node(pyz, deps=(zlib,))), [])
    assert where(layout, pyz) == ["Compiler/gcc/12.2.0/pyzlib/1"]
    assert next(p for p in layout.placements if p.ident == pyz).depends == ["zlib/1.2.13"]


def test_same_name_and_version_get_hash_suffixes_and_the_newest_is_default() -> None:
    old = "zlib/1.2.13/" + "aaaaaaa" + "x" * 25
    new = "zlib/1.2.13/" + "bbbbbbb" + "y" * 25
    layout = plan_layout(stack(node(old, compilers=(GCC,), created="1"),
                               node(new, compilers=(GCC,), created="2")), [])
    assert where(layout, old) == ["Compiler/gcc/12.2.0/zlib/1.2.13-aaaaaaa"]
    assert where(layout, new) == ["Compiler/gcc/12.2.0/zlib/1.2.13-bbbbbbb"]
    assert list(layout.defaults.values()) == ["1.2.13-bbbbbbb"]


def test_suffixes_grow_until_unique() -> None:
    a = "zlib/1.2.13/" + "abcdefgh" + "x" * 24
    b = "zlib/1.2.13/" + "abcdefgk" + "x" * 24
    layout = plan_layout(stack(node(a, compilers=(GCC,)), node(b, compilers=(GCC,))), [])
    assert where(layout, a) == ["Compiler/gcc/12.2.0/zlib/1.2.13-abcdefgh"]
    assert where(layout, b) == ["Compiler/gcc/12.2.0/zlib/1.2.13-abcdefgk"]


def test_the_same_name_at_two_levels_is_no_clash() -> None:
    g = "zlib/1.2.13/" + "a" * 32
    c = "zlib/1.2.13/" + "b" * 32
    layout = plan_layout(stack(node(g, compilers=(GCC,)), node(c, compilers=(CLANG,))), [])
    assert where(layout, g) == ["Compiler/gcc/12.2.0/zlib/1.2.13"]
    assert where(layout, c) == ["Compiler/clang/14.0.6/zlib/1.2.13"]
    assert layout.defaults == {}


def test_highest_version_is_default_when_versions_differ() -> None:
    nodes = stack(node("lua/5.4.10/" + "a" * 32, created="1"),
                  node("lua/5.4.9/" + "b" * 32, created="2"))
    assert plan_layout(nodes, []).defaults == {(CORE, "lua"): "5.4.10"}
    assert version_key("1.10") > version_key("1.9")


def test_profiles_are_core_and_default_to_the_current_generation() -> None:
    profiles = [ProfileNode("demo", 1, "p" * 32, False), ProfileNode("demo", 2, "q" * 32, True),
                ProfileNode("demo", 3, "r" * 32, False)]  # rolled back to 2
    layout = plan_layout(stack(), profiles)
    assert sorted(p.full_name for p in layout.placements if p.kind == "profile") == [
        "demo/1", "demo/2", "demo/3"]
    assert layout.defaults[(CORE, "demo")] == "2"


def test_profile_and_artifact_sharing_a_name_warns_and_the_profile_wins() -> None:
    hello = "hello/2/" + "a" * 32
    layout = plan_layout(stack(node(hello)), [ProfileNode("hello", 1, "p" * 32, True),
                                              ProfileNode("hello", 2, "q" * 32, False)])
    assert layout.defaults[(CORE, "hello")] == "1"
    assert where(layout, hello) == ["Core/hello/2-aaaaaaa"]  # clashes with generation 2
    assert any("share the module name hello" in w for w in layout.warnings)


def test_dependency_under_another_compiler_is_a_warning() -> None:
    zlib = "zlib/1.2.13/" + "a" * 32
    app = "app/1/" + "b" * 32
    layout = plan_layout(stack(node(zlib, compilers=(GCC,)),
                               node(app, compilers=(CLANG,), deps=(zlib,))), [])
    assert next(p for p in layout.placements if p.ident == app).depends == []
    assert any(app in w and zlib in w for w in layout.warnings)


def test_names_that_cannot_be_module_names_are_refused() -> None:
    with pytest.raises(UserError, match="cannot be a module name"):
        plan_layout({"x": Node("x", "bad name", "1")}, [])


def test_variant_suffixes_say_what_differs_and_give_way_to_the_hash() -> None:
    assert variant_suffixes({"a": ("dep:gcc", "env:CFLAGS=-O1"),
                             "b": ("dep:gcc", "env:CFLAGS=-O3 -g")}) == {"a": "O1", "b": "O3-g"}
    assert variant_suffixes({"a": ("dep:gcc", "dep:zlib"), "b": ("dep:gcc",)}) is None  # b: ""
    assert variant_suffixes({"a": ("dep:openblas",), "b": ("dep:netlib",)}) == {
        "a": "openblas", "b": "netlib"}
    assert variant_suffixes({"a": ("env:X=1",), "b": ("env:X=1",)}) is None

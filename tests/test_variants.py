"""Names that tell builds apart: shared by modulefiles, avail and `load`'s choices."""

from __future__ import annotations

import re

from hdenv.store.variants import build_names, spec_traits, variant_suffixes, version_key

GCC_ZLIB = "zlib/1.2.13/" + "a" * 32
CLANG_ZLIB = "zlib/1.2.13/" + "b" * 32


def _regex_key(version: str) -> list[tuple[int, int, str]]:
    """The regex form this replaced (the load path avoids `re`): both must agree."""
    return [(1, int(p), "") if p.isdigit() else (0, 0, p)
            for p in re.findall(r"\d+|[A-Za-z]+", version)]


def test_version_key_agrees_with_the_regex_it_replaced() -> None:
    for v in ("1.10", "1.9rc2", "2.0-beta.3", "", "x", "12.2.0", "1..2", "v3_4+5~6"):
        assert version_key(v) == _regex_key(v), v
    assert version_key("1.10") > version_key("1.9")


def test_a_compiler_named_as_dependency_and_as_CC_is_said_once() -> None:
    gcc = spec_traits({"build_deps": ["gcc/12/" + "g" * 32], "env": {"CC": "gcc"}})
    clang = spec_traits({"build_deps": ["clang/14/" + "c" * 32], "env": {"CC": "clang"}})
    assert variant_suffixes({"a": gcc, "b": clang}) == {"a": "gcc", "b": "clang"}


def test_build_names_plain_when_alone_suffixed_when_shared() -> None:
    names = build_names({GCC_ZLIB: ("dep:gcc", "env:CFLAGS=-O1"),
                         CLANG_ZLIB: ("dep:clang", "env:CFLAGS=-O1"),
                         "hello/2.10/" + "c" * 32: ()})
    assert names == {GCC_ZLIB: "zlib/1.2.13-gcc", CLANG_ZLIB: "zlib/1.2.13-clang",
                     "hello/2.10/" + "c" * 32: "hello/2.10"}
    same = build_names({GCC_ZLIB: ("env:X=1",), CLANG_ZLIB: ("env:X=1",)})
    assert same == {GCC_ZLIB: "zlib/1.2.13-aaaaaaa", CLANG_ZLIB: "zlib/1.2.13-bbbbbbb"}


def test_the_load_paths_profile_hash_is_the_profile_modules() -> None:
    """byname.profile_hash writes canonical JSON by hand: it must be spec_hash's."""
    from hdenv.profile.profiles import profile_hash, profile_spec
    from hdenv.shell import byname

    for closure, family in (([GCC_ZLIB, CLANG_ZLIB], None), ([CLANG_ZLIB], "compiler"),
                            (["é-ü/1/" + "c" * 32, GCC_ZLIB, GCC_ZLIB], "mpi"), ([], None)):
        assert byname.profile_hash(closure, family) == profile_hash(
            profile_spec(closure, {}, family)), (closure, family)

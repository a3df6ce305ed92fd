"""lightos agrees with `os` on everything the fast load path asks of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hdenv.shell import lightos


def test_environ_decodes_like_os_environ_even_for_bad_bytes() -> None:
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from hdenv.shell import lightos;"
            "print(lightos.environ() == dict(os.environ), ascii(lightos.environ()['ODD']))")
    env = {b"ODD": b"caf\xe9 \xff", b"PLAIN": "èрт🚒".encode(), b"LANG": b"C.UTF-8"}
    package_parent = str(Path(lightos.__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, package_parent], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == "True 'caf\\udce9 \\udcff'\n"


def test_file_tests(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "broken").symlink_to(tmp_path / "missing")
    (tmp_path / "to-file").symlink_to("file")
    for name in ("file", "dir", "broken", "to-file", "missing"):
        path = str(tmp_path / name)
        assert lightos.is_file(path) == os.path.isfile(path), name
        assert lightos.is_dir(path) == os.path.isdir(path), name
        assert lightos.exists(path) == os.path.exists(path), name
        assert lightos.lexists(path) == os.path.lexists(path), name
    assert sorted(lightos.listdir(str(tmp_path))) == sorted(os.listdir(tmp_path))
    assert not lightos.exists("bad\0path")


def test_final_target_follows_chains_like_realpath(tmp_path: Path) -> None:
    target = tmp_path / "profiles" / "abc123"
    target.mkdir(parents=True)
    names = tmp_path / "names" / "demo"
    names.mkdir(parents=True)
    (names / "2").symlink_to(target)  # absolute
    (names / "current").symlink_to("2")  # relative, to another link
    (names / "rel").symlink_to("../../profiles/abc123")
    for link in ("2", "current", "rel"):
        got = lightos.final_target(str(names / link))
        assert lightos.basename(got) == os.path.basename(os.path.realpath(names / link))
        assert os.path.samefile(got, target)
    (names / "loop-a").symlink_to("loop-b")
    (names / "loop-b").symlink_to("loop-a")
    assert not lightos.is_file(lightos.final_target(str(names / "loop-a")))


@pytest.mark.parametrize("path", ["/plain/abs", "/with space/$x", "relative/dir", "~/store",
                                  "/a/./b", "/a/../b", "/a//b", "/trailing/", "~"])
def test_absolute_matches_os(path: str) -> None:
    assert lightos.absolute(path) == os.path.abspath(os.path.expanduser(path))

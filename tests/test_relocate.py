"""Relocation from one store root to another (exchange/relocate.py), on real ELF files."""

from __future__ import annotations

import marshal
import os
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool

from hdenv.exchange.relocate import CannotRelocate, Relocator

PROGRAM = r"""
#include <stdio.h>
int answer(void);
int main(void) {
    FILE *f = fopen(DATA, "r");
    char line[64] = "unreadable";
    if (f) { fgets(line, sizeof line, f); fclose(f); }
    printf("%d %s %s", answer(), DATA, line);
    return 0;
}
"""


def test_text_files_are_rewritten_at_path_starts_only() -> None:
    r = Relocator("/old/store", "/a/much/longer/new/store")
    text = (b"prefix=/old/store/artifacts/x\nLibs: -L/old/store/lib -I/old/store/inc\n"
            b"PATH=/bin:/old/store/bin '/old/store' /x/old/store/no /old/store2/no\n")
    assert r.file_data("x.pc", text) == (
        b"prefix=/a/much/longer/new/store/artifacts/x\n"
        b"Libs: -L/a/much/longer/new/store/lib -I/a/much/longer/new/store/inc\n"
        b"PATH=/bin:/a/much/longer/new/store/bin '/a/much/longer/new/store'"
        b" /x/old/store/no /old/store2/no\n")


def test_binary_strings_are_padded_in_place_when_the_root_is_not_longer() -> None:
    r = Relocator("/old/store/", "/new")
    data = b"\x00\x01/old/store/lib\x00x=/old/store\x00"
    out = r.file_data("lib/libx.a", data)
    assert len(out) == len(data)
    assert out == b"\x00\x01///////new/lib\x00x=///////new\x00"
    assert Relocator("/same", "/same").file_data("f", data) == data


def test_binary_strings_cannot_grow() -> None:
    r = Relocator("/old", "/longer/root")
    with pytest.raises(CannotRelocate, match=r"bin/x holds the old store root /old in a binary"
                                             r" string, and the new root /longer/root is longer"):
        r.file_data("bin/x", b"\x00/old/share\x00")
    assert r.file_data("bin/y", b"\x00/older/share\x00") == b"\x00/older/share\x00"


def test_slashes_before_a_binary_mention_are_room_for_a_longer_root() -> None:
    # what a build leaves: its compiled-in prefix padded to 20 bytes by the root alias
    padded = b"/" * 10 + b"/old/store"
    data = b"\x00" + padded + b"/share\x00-L" + padded + b"/lib\x00"
    out = Relocator("/old/store", "/a/longer/st").file_data("bin/x", data)
    assert out == (b"\x00" + b"/" * 8 + b"/a/longer/st/share\x00-L" + b"/" * 8
                   + b"/a/longer/st/lib\x00")
    # the room stays: the copy moves on into another root up to 20 bytes long
    back = Relocator("/a/longer/st", "/twenty/bytes/root").file_data("bin/x", out)
    assert back == b"\x00///twenty/bytes/root/share\x00-L///twenty/bytes/root/lib\x00"
    with pytest.raises(CannotRelocate, match=r"is longer \(21 bytes\) than the room it has"
                                             r" there \(20 bytes\)"):
        Relocator("/old/store", "/twentyone/bytes/root").file_data("bin/x", data)
    # a slash run that is part of another path is no room: `x//old/store` is not a mention
    assert Relocator("/old/store", "/n").file_data("f", b"\x00x//old/store\x00") == \
        b"\x00x//old/store\x00"


def test_links_and_metadata() -> None:
    r = Relocator("/old", "/new/root")
    assert r.link_target("/old/artifacts/a/1/h/lib") == "/new/root/artifacts/a/1/h/lib"
    assert r.link_target("../lib/old") == "../lib/old"
    assert r.link_target("/usr/bin/gcc") == "/usr/bin/gcc"
    assert r.json_value({"a": ["/old/x", 3, {"b": "/old"}]}) == {"a": ["/new/root/x", 3,
                                                                      {"b": "/new/root"}]}


def build_program(tmp_path: Path, root: Path, dtags: str = "--enable-new-dtags") -> Path:
    """A program in ROOT/bin whose run path and a compiled-in string point into ROOT."""
    gcc = require_tool("gcc")
    (root / "lib").mkdir(parents=True)
    (root / "share").mkdir()
    (root / "bin").mkdir()
    (root / "share" / "data").write_text("found\n")
    (tmp_path / "answer.c").write_text("int answer(void){return 42;}\n")
    subprocess.run([gcc, "-shared", "-fPIC", str(tmp_path / "answer.c"), "-o",
                    str(root / "lib" / "libanswer.so")], check=True)
    (tmp_path / "prog.c").write_text(PROGRAM)
    subprocess.run([gcc, str(tmp_path / "prog.c"), f'-DDATA="{root}/share/data"',
                    "-o", str(root / "bin" / "prog"), f"-L{root}/lib", "-lanswer",
                    f"-Wl,{dtags}", f"-Wl,-rpath,{root}/lib"], check=True)
    return root / "bin" / "prog"


def relocate_tree(old: Path, new: Path) -> None:
    """What pack.py does per file: rewrite the content, write it, then fix the run path."""
    r = Relocator(str(old), str(new))
    for dirpath, _, files in os.walk(old):
        for name in files:
            src = Path(dirpath) / name
            rel = str(src.relative_to(old))
            dst = new / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(r.file_data(rel, src.read_bytes()))
            os.chmod(dst, os.stat(src).st_mode)
            r.after_write(rel, dst)


def dynamic(path: Path) -> str:
    readelf = require_tool("readelf")
    return subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_an_elf_program_moves_to_a_shorter_root_and_runs(tmp_path: Path) -> None:
    old = tmp_path / "a-rather-long-old-store-root"
    build_program(tmp_path, old)
    new = tmp_path / "short"
    relocate_tree(old, new)
    shutil.rmtree(old)  # nothing may still point there
    assert f"Library runpath: [{new}/lib]" in dynamic(new / "bin" / "prog")
    proc = subprocess.run([str(new / "bin" / "prog")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    answer, data_path, line = proc.stdout.split(" ")
    assert answer == "42" and line == "found\n"
    assert data_path.endswith(f"{new}/share/data") and data_path.lstrip("/") == \
        f"{new}/share/data".lstrip("/") and len(data_path) == len(f"{old}/share/data")


def test_an_rpath_keeps_its_tag_and_a_run_path_alone_can_grow(tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    old = tmp_path / "o"
    (old / "lib").mkdir(parents=True)
    (tmp_path / "answer.c").write_text("int answer(void){return 42;}\n")
    subprocess.run([gcc, "-shared", "-fPIC", str(tmp_path / "answer.c"), "-o",
                    str(old / "lib" / "libanswer.so")], check=True)
    (tmp_path / "main.c").write_text("int answer(void);\nint main(void){return answer()-42;}\n")
    (old / "bin").mkdir()
    subprocess.run([gcc, str(tmp_path / "main.c"), "-o", str(old / "bin" / "main"),
                    f"-L{old}/lib", "-lanswer", "-Wl,--disable-new-dtags",
                    f"-Wl,-rpath,{old}/lib"], check=True)
    new = tmp_path / "a-much-longer-root-than-before"
    relocate_tree(old, new)
    shutil.rmtree(old)
    assert f"Library rpath: [{new}/lib]" in dynamic(new / "bin" / "main")
    assert subprocess.run([str(new / "bin" / "main")]).returncode == 0


def test_a_compiled_in_path_cannot_move_to_a_longer_root(tmp_path: Path) -> None:
    old = tmp_path / "old"
    build_program(tmp_path, old)
    with pytest.raises(CannotRelocate, match="bin/prog holds the old store root"):
        relocate_tree(old, tmp_path / "a-longer-root")


PY_MODULE = '''"""A module whose strings name no store."""


def where():
    raise RuntimeError("from here")
'''


def test_compiled_python_moves_to_a_longer_root_and_stays_valid(tmp_path: Path) -> None:
    old = tmp_path / "o"
    pkg = old / "lib" / "python3" / "site-packages" / "placed"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PY_MODULE)
    compiled = Path(str(py_compile.compile(str(pkg / "__init__.py"), doraise=True)))
    new = tmp_path / ("a-store-root-" + "x" * 150)
    relocate_tree(old, new)
    os.utime(new / compiled.relative_to(old).parent.parent / "__init__.py",
             ns=(os.stat(pkg / "__init__.py").st_mtime_ns,) * 2)  # as the installer keeps it
    shutil.rmtree(old)
    moved = new / compiled.relative_to(old)
    data = moved.read_bytes()
    assert str(old).encode() not in data
    code = marshal.loads(data[16:])
    assert code.co_filename == str(new / "lib" / "python3" / "site-packages" / "placed"
                                   / "__init__.py")
    # the interpreter takes the rewritten file as it is (-B: it writes none of its own)
    proc = subprocess.run(
        [sys.executable, "-B", "-c", "import placed, sys; print(placed.__cached__);"
         " placed.where()"], capture_output=True, text=True,
        env={"PYTHONPATH": str(new / "lib" / "python3" / "site-packages"),
             "PATH": "/usr/bin:/bin"})
    assert proc.stdout.strip() == str(moved)
    assert f'File "{new}/lib/python3/site-packages/placed/__init__.py"' in proc.stderr
    assert moved.read_bytes() == data


def test_compiled_python_naming_the_root_inside_a_string_cannot_grow(tmp_path: Path) -> None:
    old = tmp_path / "o"
    old.mkdir()
    (old / "m.py").write_text(f'PATH = "see {old}/share"\n')
    compiled = Path(str(py_compile.compile(str(old / "m.py"), doraise=True)))
    with pytest.raises(CannotRelocate, match=f"{compiled.name} holds the old store root"):
        relocate_tree(old, tmp_path / "a-longer-root")


def test_compiled_python_moves_to_a_shorter_root_without_padding(tmp_path: Path) -> None:
    old = tmp_path / "a-rather-long-old-root"
    old.mkdir()
    (old / "m.py").write_text(f'"""Data in {old}/share."""\n\n\ndef f():\n    return 1\n')
    compiled = Path(str(py_compile.compile(str(old / "m.py"), doraise=True)))
    new = tmp_path / "n"
    relocate_tree(old, new)
    code = marshal.loads((new / compiled.relative_to(old)).read_bytes()[16:])
    assert code.co_filename == f"{new}/m.py"  # the file name re-marshalled, no slashes
    doc = code.co_consts[0]
    # inside the docstring: padded in place with leading slashes, the same path
    assert doc == "Data in " + "/" * (len(str(old)) - len(str(new))) + f"{new}/share."
    assert str(old) not in doc

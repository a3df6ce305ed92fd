"""ELF reading (checked against binutils' readelf) and run-path writing with patchelf."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from hdenv.store import elf


def readelf_dynamic(path: Path) -> dict[str, list[str]]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    found: dict[str, list[str]] = {}
    for tag, value in re.findall(r"\((NEEDED|SONAME|RUNPATH|RPATH)\)\s+\S.*?\[(.*)\]", out):
        found.setdefault(tag, []).append(value)
    return found


@pytest.fixture
def built(tmp_path: Path) -> dict[str, Path]:
    """A shared library and a program using it through $ORIGIN, made by the real gcc."""
    require_tool("gcc")
    require_tool("readelf")
    (tmp_path / "lib").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "f.c").write_text("int f(void) { return 7; }\n")
    (tmp_path / "m.c").write_text("int f(void);\nint main(void) { return f() - 7; }\n")
    lib = tmp_path / "lib" / "libf.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libf.so.1", "-o", str(lib),
                    str(tmp_path / "f.c")], check=True)
    os.symlink("libf.so.1", tmp_path / "lib" / "libf.so")
    exe = tmp_path / "bin" / "m"
    subprocess.run(["gcc", "-o", str(exe), str(tmp_path / "m.c"), f"-L{tmp_path / 'lib'}", "-lf",
                    "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags"], check=True)
    return {"lib": lib, "exe": exe}


def test_reads_what_readelf_reads(built: dict[str, Path]) -> None:
    for path in (built["lib"], built["exe"], Path(os.path.realpath("/bin/sh"))):
        info = elf.read_elf(path)
        assert info is not None and info.dynamic
        ref = readelf_dynamic(path)
        assert list(info.needed) == ref.get("NEEDED", [])
        assert ([info.soname] if info.soname else []) == ref.get("SONAME", [])
        assert (":".join(info.runpath) if info.runpath else None) == \
            (ref["RUNPATH"][0] if "RUNPATH" in ref else None)
    exe = elf.read_elf(built["exe"])
    assert exe is not None and exe.interp and exe.type in (elf.ET_EXEC, elf.ET_DYN)
    assert exe.runpath == ("$ORIGIN/../lib",)


def test_not_elf_and_broken_elf(tmp_path: Path) -> None:
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    assert elf.read_elf(text) is None and not elf.is_elf(text)
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 20)
    with pytest.raises(elf.ElfError):
        elf.read_elf(broken)


def test_loader_path_expands_origin_and_falls_back_to_the_system(built: dict[str, Path]) -> None:
    exe = elf.read_elf(built["exe"])
    assert exe is not None
    loader = elf.LoaderPath()
    found = loader.find(exe, "libf.so.1")
    assert found.via == "runpath" and found.path == str(built["lib"])
    libc = loader.find(exe, "libc.so.6")
    assert libc.via == "system" and libc.path and os.path.isfile(libc.path)
    assert loader.find(exe, "libnothing.so.9").via == "missing"


def test_set_runpath_keeps_mode_and_the_program_runs(built: dict[str, Path],
                                                     tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "bin"  # $ORIGIN/../lib does not exist here
    elsewhere.mkdir(parents=True)
    exe = elsewhere / "m"
    shutil.copy2(built["exe"], exe)
    os.chmod(exe, 0o555)
    assert subprocess.run(["env", "-i", str(exe)], capture_output=True).returncode != 0
    elf.set_runpath(exe, [str(built["lib"].parent)])
    info = elf.read_elf(exe)
    assert info is not None and info.runpath == (str(built["lib"].parent),)
    assert os.stat(exe).st_mode & 0o777 == 0o555
    assert subprocess.run(["env", "-i", str(exe)]).returncode == 0


def test_system_lib_dirs_follow_includes(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "conf.d" / "x.conf").write_text(f"# comment\n{tmp_path / 'a'}\n")
    conf = tmp_path / "ld.so.conf"
    conf.write_text("include conf.d/*.conf\n/nonexistent-dir\n")
    dirs = elf.system_lib_dirs(str(conf))
    assert dirs[0] == str(tmp_path / "a") and "/nonexistent-dir" not in dirs


def test_patchelf_is_found() -> None:
    tool = elf.patchelf_program()
    assert tool is not None
    assert subprocess.run([tool, "--version"], capture_output=True).returncode == 0


def test_walk_skips_broken_elf_and_metadata(built: dict[str, Path], tmp_path: Path) -> None:
    root = built["lib"].parent.parent
    (root / "broken.debug").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 20)
    (root / ".hdenv").mkdir()
    shutil.copy2(built["exe"], root / ".hdenv" / "copy")
    found = sorted(os.path.relpath(i.path, root) for i in elf.walk_elf(root))
    assert found == ["bin/m", "lib/libf.so.1"]

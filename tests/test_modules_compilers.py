"""The compiler and MPI hierarchy in real Lmod and Environment Modules 5.

One stack builds real zlib (from the source mirror) with Debian's gcc and with
clang as a matrix, a second build adds a gcc zlib with other CFLAGS (a name
clash), and a small MPI program is built with Open MPI's mpicc under each
compiler. The generated trees are then driven as a user would: load a compiler
and a package under it, swap the compiler, load the MPI and its program,
unload and purge, avail and spider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, require, require_tool
from modulerunner import LMOD_LIBEXEC, ModuleShell, path_entries

pytestmark = pytest.mark.slow

HDENV = str(Path(sys.executable).parent / "hdenv")
ZLIB_SHA = "71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1"

STACK = """
[stack]
name = "cz"

[parameters]
cflags = "-O2"

[matrix]
compiler = ["gcc", "clang"]

[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar", "ranlib"]
family = "compiler"

[host.clang]
programs = ["clang", "as", "ld", "ar", "ranlib"]
family = "compiler"

[host.mpi]
programs = ["mpicc", "mpirun"]
family = "mpi"

[packages.zlib]
version = "1.2.13"
description = "Compression library"
sources = [{ url = "file://SOURCES/zlib-1.2.13.tar.bz2", sha256 = "ZLIB_SHA", strip = 1 }]
build-deps = ["{{ compiler }}"]
env = { CC = "{{ compiler }}", CFLAGS = "{{ cflags }}" }
script = '''
./configure --prefix="$PREFIX"
make -j"$HDENV_JOBS" && make install
'''

[packages.mpihello]
version = "1.0"
sources = [{ path = "mpihello" }]
deps = ["zlib"]
build-deps = ["{{ compiler }}", "mpi"]
env = { OMPI_CC = "{{ compiler }}" }
script = '''
mkdir -p "$PREFIX/bin"
mpicc hello.c -o "$PREFIX/bin/mpihello" -lz
'''

[profiles.cz]
packages = ["zlib", "mpihello"]
env = { CZ_HOME = "{{ profile }}" }
"""

HELLO = r"""
#include <mpi.h>
#include <stdio.h>
#include <zlib.h>
int main(int argc, char **argv) {
    int rank;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    printf("mpihello rank %d zlib %s\n", rank, zlibVersion());
    MPI_Finalize();
    return 0;
}
"""


class Built:
    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "HDENV_STORE": str(root / "store"),
                    "HDENV_CONFIG": str(root / "none.toml"), "HDENV_JOBS": "2"}
        self.env.pop("HDENV_MIRRORS", None)
        # about module trees, not link declarations: mpihello loads Open MPI's libmpi from
        # an MPI that is (for the hierarchy) a build dependency, which strict-links refuses
        (root / "none.toml").write_text("strict-links = false\n")
        self.lua = root / "lua"
        self.tcl = root / "tcl"

    def hdenv(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([HDENV, *args], env=self.env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"hdenv {args}:\n{proc.stderr}"
        return proc

    def artifacts(self, name: str) -> list[dict[str, str]]:
        rows = json.loads(self.hdenv("list", "artifacts", "--json").stdout)
        return [r for r in rows if r["id"].startswith(f"{name}/")]

    def spec(self, aid: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.hdenv("show", aid, "--json").stdout)["spec"]
        return data

    def zlib(self, compiler: str, cflags: str) -> str:
        """The path of the zlib built with `compiler` and `cflags`."""
        for row in self.artifacts("zlib"):
            spec = self.spec(row["id"])
            env = spec["env"]
            assert isinstance(env, dict)
            if env["CC"] == compiler and env["CFLAGS"] == cflags:
                return row["path"]
        raise AssertionError(f"no zlib built with {compiler} {cflags}")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in ("gcc", "clang", "mpicc", "mpirun"):
        require_tool(tool)
    require((SHARED_SOURCES / "zlib-1.2.13.tar.bz2").is_file(), "zlib is not in the mirror")
    b = Built(tmp_path_factory.mktemp("compilers"))
    (b.root / "mpihello").mkdir()
    (b.root / "mpihello" / "hello.c").write_text(HELLO)
    stack = b.root / "stack.toml"
    stack.write_text(STACK.replace("SOURCES", str(SHARED_SOURCES)).replace("ZLIB_SHA", ZLIB_SHA))
    b.hdenv("build", str(stack))
    b.hdenv("build", str(stack), "--set", "compiler=gcc", "--set", "cflags=-O1")
    b.hdenv("modulefiles", "--out", str(b.lua))
    b.hdenv("modulefiles", "--format", "tcl", "--out", str(b.tcl))
    return b


def level(tree: Path, prefix: str) -> Path:
    """The one directory under `tree` matching e.g. `Compiler/gcc/*`."""
    found = sorted(tree.glob(prefix))
    assert len(found) == 1, found
    return found[0]


def test_the_clash_gives_suffixed_names_and_one_default(built: Built) -> None:
    gcc_zlib = level(built.lua, "Compiler/gcc/*") / "zlib"
    clang_zlib = level(built.lua, "Compiler/clang/*") / "zlib"
    names = sorted(p.name for p in gcc_zlib.iterdir())
    # the suffix says what tells the two gcc builds apart (CFLAGS), not a hash
    newest, older = "O1", "O2"
    assert names == sorted([".modulerc.lua", f"1.2.13-{newest}.lua", f"1.2.13-{older}.lua"])
    rc = (gcc_zlib / ".modulerc.lua").read_text()
    assert f'module_version("zlib/1.2.13-{newest}", "default")' in rc
    assert sorted(p.name for p in clang_zlib.iterdir()) == ["1.2.13.lua"]
    assert not list(built.lua.rglob(".version"))
    tcl_zlib = level(built.tcl, "Compiler/gcc/*") / "zlib"
    assert sorted(p.name for p in tcl_zlib.iterdir()) == sorted(
        [".version", f"1.2.13-{newest}", f"1.2.13-{older}"])
    assert not list(built.tcl.rglob(".modulerc*"))
    assert not (built.lua / "Core" / "zlib").exists()  # only under the compilers


def test_lmod_compiler_swap_reloads_the_package(built: Built, tmp_path: Path) -> None:
    sh = ModuleShell("lmod", tmp_path)
    run = sh.run(built.lua / "Core", [
        "dump before",
        "module load gcc zlib", "dump gcc",
        "module swap gcc clang 2>&1", "dump clang",
        "module swap clang gcc 2>&1", "dump back",
        "module load mpi mpihello", "dump mpi", "mpihello > \"$HOME/hello.out\"",
        "module purge", "dump purged",
    ])
    assert "reloaded" in run.stdout
    gcc, clang = sh.env("gcc"), sh.env("clang")
    assert gcc["ZLIB_ROOT"] == built.zlib("gcc", "-O1")  # the default: newest
    assert clang["ZLIB_ROOT"] == built.zlib("clang", "-O2")
    assert path_entries(clang, "CPATH") == [f"{clang['ZLIB_ROOT']}/include"]
    # zlib's lib, then what the compiler module itself adds (a captured host
    # compiler carries its runtime libraries in lib/); nothing of the gcc build is left
    libs = path_entries(clang, "LIBRARY_PATH")
    assert libs[0] == f"{clang['ZLIB_ROOT']}/lib"
    assert all("/artifacts/clang/" in d for d in libs[1:]), libs
    assert gcc["ZLIB_ROOT"] not in ":".join(clang.values())
    assert sh.env("back")["ZLIB_ROOT"] == built.zlib("gcc", "-O1")
    mpi = sh.env("mpi")
    hello = mpi["MPIHELLO_ROOT"]
    assert path_entries(mpi, "PATH")[0] == f"{hello}/bin"
    assert "mpihello rank 0 zlib 1.2.13" in (tmp_path / "hello.out").read_text()
    before, purged = sh.env("before"), sh.env("purged")
    for var in ("PATH", "MANPATH", "CPATH", "LIBRARY_PATH", "PKG_CONFIG_PATH",
                "CMAKE_PREFIX_PATH", "ZLIB_ROOT"):
        assert purged.get(var) == before.get(var), var
    assert path_entries(purged, "MODULEPATH") == [str(built.lua / "Core")]


def test_lmod_unload_gives_path_back_and_profile_modules_load(built: Built,
                                                              tmp_path: Path) -> None:
    sh = ModuleShell("lmod", tmp_path)
    sh.run(built.lua / "Core", [
        "dump before", "module load cz-gcc", "dump profile", "module unload cz-gcc",
        "dump unloaded", "module load gcc zlib", "module unload zlib gcc", "dump after",
    ])
    before = sh.env("before")
    profile = sh.env("profile")
    gen = built.hdenv("path", "cz-gcc").stdout.strip()
    assert profile["CZ_HOME"] == gen
    assert path_entries(profile, "PATH")[0] == f"{gen}/bin"
    for label in ("unloaded", "after"):
        after = sh.env(label)
        assert after["PATH"] == before["PATH"], label
        assert after.get("CZ_HOME") is None and after.get("ZLIB_ROOT") is None


def test_lmod_avail_and_spider(built: Built, tmp_path: Path) -> None:
    sh = ModuleShell("lmod", tmp_path)
    run = sh.run(built.lua / "Core", [
        "echo AVAIL; module -t avail 2>&1", "module load gcc",
        "echo GCC; module -t avail 2>&1", "echo DEFAULTS; module -d -t avail 2>&1",
        "echo SPIDER; module -t spider zlib 2>&1",
        "echo DETAIL; module spider zlib/1.2.13 2>&1",
        "echo SUFFIXED; module spider zlib/1.2.13-O1 2>&1",
    ])
    text = run.stdout
    sections = {}
    for name in ("SUFFIXED", "DETAIL", "SPIDER", "DEFAULTS", "GCC", "AVAIL"):
        text, _, body = text.rpartition(f"{name}\n")
        sections[name] = {line.strip() for line in body.splitlines() if line.strip()}
    core = sections["AVAIL"]
    assert {"cz-gcc/1", "cz-gcc/2", "cz-clang/1"} <= core
    assert any(m.startswith("gcc/") for m in core) and any(m.startswith("clang/") for m in core)
    assert not any(m.startswith("zlib") for m in core)  # only below a compiler
    newest, older = "O1", "O2"
    assert {f"zlib/1.2.13-{newest}", f"zlib/1.2.13-{older}"} <= sections["GCC"]
    assert any(m.startswith("mpi/") for m in sections["GCC"])
    assert f"zlib/1.2.13-{newest}" in sections["DEFAULTS"]
    assert f"zlib/1.2.13-{older}" not in sections["DEFAULTS"]
    assert "cz-gcc/2" in sections["DEFAULTS"] and "cz-gcc/1" not in sections["DEFAULTS"]
    assert {"zlib/1.2.13", f"zlib/1.2.13-{newest}", f"zlib/1.2.13-{older}"} <= sections["SPIDER"]
    # Which compiler to load first: clang for the plain name, gcc for the suffixed one.
    assert any(m.startswith("clang/") for m in sections["DETAIL"])
    assert not any(m.startswith("gcc/") for m in sections["DETAIL"])
    assert any(m.startswith("gcc/") for m in sections["SUFFIXED"])


def test_lmod_checker_accepts_the_hierarchy(built: Built, tmp_path: Path) -> None:
    checker = LMOD_LIBEXEC / "check_module_tree_syntax"
    sh = ModuleShell("lmod", tmp_path)
    for tree in (built.lua, built.tcl):
        run = sh.run(None, [f"'{checker}' '{tree}/Core' 2>&1"], check=False)
        assert run.returncode == 0 and "No errors found" in run.stdout, run.stdout


def test_lmod_reads_the_tcl_tree_too(built: Built, tmp_path: Path) -> None:
    sh = ModuleShell("lmod", tmp_path)
    sh.run(built.tcl / "Core", ["module load gcc zlib", "module swap gcc clang",
                                "dump clang"])
    assert sh.env("clang")["ZLIB_ROOT"] == built.zlib("clang", "-O2")


def test_environment_modules_load_unload_and_defaults(built: Built, tmp_path: Path) -> None:
    sh = ModuleShell("em", tmp_path)
    run = sh.run(built.tcl / "Core", [
        "dump before", "echo AVAIL; module -t avail 2>&1",
        "module load gcc", "echo ZLIB; module -t avail zlib 2>&1", "module load zlib", "dump gcc",
        "module load mpi mpihello", "dump mpi", "mpihello > \"$HOME/hello.out\"",
        "module unload mpihello mpi zlib gcc", "dump unloaded",
        "module load cz-clang", "dump profile", "module purge", "dump purged",
    ])
    avail_text, _, zlib_text = run.stdout.split("AVAIL", 1)[1].partition("ZLIB")
    avail = {line.strip() for line in avail_text.splitlines()}
    assert {"cz-clang/1", "cz-gcc/1", "cz-gcc/2(default)"} <= avail  # .version marks it
    assert any(m.startswith("gcc/") for m in avail)
    newest, older = "O1", "O2"
    assert {f"zlib/1.2.13-{newest}(default)", f"zlib/1.2.13-{older}"} <= {
        line.strip() for line in zlib_text.splitlines()}
    assert sh.env("gcc")["ZLIB_ROOT"] == built.zlib("gcc", "-O1")
    assert "mpihello rank 0 zlib 1.2.13" in (tmp_path / "hello.out").read_text()
    assert sh.env("profile")["CZ_HOME"] == built.hdenv("path", "cz-clang").stdout.strip()
    before = sh.env("before")
    for label in ("unloaded", "purged"):
        after = sh.env(label)
        for var in ("PATH", "CPATH", "LIBRARY_PATH", "ZLIB_ROOT", "CZ_HOME"):
            assert after.get(var) == before.get(var), (label, var)

"""A host library captured by distro package has a layout CMake's `find_package` accepts
(issue 27): real `include/` and `lib/` directories of links into the package's files,
found through CMAKE_PREFIX_PATH, never the system's /usr (hidden by the jail anyway)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import Runner, require, require_tool
from projects import artifact_path, project

CMAKELISTS = """cmake_minimum_required(VERSION 3.13)
project(zv C)
find_package(ZLIB REQUIRED)
add_executable(zv zv.c)
target_link_libraries(zv ZLIB::ZLIB)
install(TARGETS zv)
install(CODE "file(WRITE \\${CMAKE_INSTALL_PREFIX}/share/found.txt \\"${ZLIB_INCLUDE_DIRS}\\")")
"""
ZV = """#include <zlib.h>
#include <stdio.h>
int main(void) { printf("zlib %s\\n", zlibVersion()); return 0; }
"""


def test_cmake_find_package_finds_a_host_library_in_its_artifact(
        run_hdenv: Runner, tmp_path: Path) -> None:
    for tool in ("gcc", "cmake"):
        require_tool(tool)
    require(Path("/usr/include/zlib.h").is_file(), "zlib1g-dev is not installed")
    stack = project(tmp_path, {"CMakeLists.txt": CMAKELISTS, "zv.c": ZV}, "zv.toml",
                    """[stack]
name = "zv"
repos = ["builtin"]
toolchain = ["gcc"]

[host.zlib]
packages = ["zlib1g-dev"]

[packages.zv]
version = "1.0"
build-system = "cmake"
build-deps = ["cmake"]
deps = ["zlib"]
sources = [{ path = "src" }]
""")
    proc = run_hdenv("build", str(stack), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    zlib_prefix = artifact_path(run_hdenv, "zlib")
    zv_prefix = artifact_path(run_hdenv, "zv")
    assert (zv_prefix / "share" / "found.txt").read_text() == f"{zlib_prefix}/include"
    ran = subprocess.run([str(zv_prefix / "bin" / "zv")], capture_output=True, text=True)
    assert ran.stdout.startswith("zlib 1."), ran.stderr

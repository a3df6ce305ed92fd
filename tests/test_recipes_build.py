"""Recipes build real upstream archives through their build-system templates alone
(issue 24): autotools (hello, libpng on zlib), CMake (json-c, libyaml), make (lua),
python (PyYAML with its C extension on libyaml, MarkupSafe, six, a wheel), from a
stack that only names them; and meson on a small project of the test's own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, Runner, require, require_tool
from projects import artifact_path, project

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "recipes" / "stack.toml"


def test_the_readme_shows_the_recipe_example_as_it_is() -> None:
    readme = (REPO / "README.md").read_text()
    assert "```toml\n" + EXAMPLE.read_text() + "```" in readme


@pytest.mark.slow
def test_a_stack_of_package_names_builds_and_runs(run_hdenv: Runner, tmp_path: Path) -> None:
    for tool in ("gcc", "g++", "cmake", "make"):
        require_tool(tool)
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    require(subprocess.run(["/usr/bin/python3", "-c", "import Cython, pip"]).returncode == 0,
            "Debian's cython3 and python3-pip (for /usr/bin/python3) are not installed")
    stack = tmp_path / "ten.toml"
    stack.write_text(EXAMPLE.read_text())  # the README's stack, exactly
    env = {"HDENV_MIRRORS": str(SHARED_SOURCES)}
    proc = run_hdenv("build", str(stack), env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = Path(run_hdenv("path", "ten", check=True).stdout.strip())
    clean = {"PATH": "/usr/bin:/bin"}
    hello = subprocess.run([str(profile / "bin" / "hello")], capture_output=True, text=True,
                           env=clean)
    assert hello.stdout == "Hello, world!\n"
    lua = subprocess.run([str(profile / "bin" / "lua"), "-e", "print(2^10)"],
                         capture_output=True, text=True, env=clean)
    assert lua.stdout == "1024.0\n"
    # libpng links the stack's zlib (a dependency its recipe names), never the system's
    zlib = artifact_path(run_hdenv, "zlib")
    (libpng,) = artifact_path(run_hdenv, "libpng").glob("lib/libpng16.so.16")
    assert f"{zlib}/lib/libz.so.1" in subprocess.run(
        ["ldd", str(libpng)], capture_output=True, text=True).stdout
    assert list(artifact_path(run_hdenv, "json-c").glob("lib/libjson-c.so.5"))  # CMake, lib/
    assert list(artifact_path(run_hdenv, "json-c").glob("lib/cmake/json-c/json-c-config.cmake"))
    # every Python package imports from the profile (not from the system's dist-packages),
    # the C extensions included, under an empty environment
    code = ("import yaml, yaml._yaml, markupsafe._speedups, six, packaging.version;"
            "print('\\n'.join(m.__file__ for m in (yaml, yaml._yaml, markupsafe._speedups,"
            " six, packaging.version)))")
    ran = subprocess.run([str(profile / "bin" / "python3"), "-c", code], capture_output=True,
                         text=True, env={})
    assert ran.returncode == 0, ran.stderr
    files = ran.stdout.splitlines()
    assert len(files) == 5 and all(f.startswith(f"{profile}/lib/python3") for f in files), files
    # the C extension loads the stack's libyaml
    libyaml = artifact_path(run_hdenv, "libyaml")
    assert f"{libyaml}/lib/libyaml" in subprocess.run(
        ["ldd", files[1]], capture_output=True, text=True).stdout


MESON_BUILD = """project('twice', 'c')
executable('twice', 'twice.c', install: true)
"""
TWICE_C = """#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) { printf("%d\\n", 2 * atoi(argc > 1 ? argv[1] : "0")); return 0; }
"""


@pytest.mark.slow
def test_meson_through_its_template(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("meson")
    require_tool("ninja")
    require_tool("gcc")
    stack = project(tmp_path, {"meson.build": MESON_BUILD, "twice.c": TWICE_C}, "m.toml",
                    """[stack]
name = "m"
repos = ["builtin"]
toolchain = ["gcc"]

[packages.twice]
version = "1.0"
build-system = "meson"
build-deps = ["meson"]
sources = [{ path = "src" }]
meson-args = ["-Doptimization=2"]
check = ["twice 21"]
""")
    proc = run_hdenv("build", str(stack), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = subprocess.run([str(artifact_path(run_hdenv, "twice") / "bin" / "twice"), "21"],
                         capture_output=True, text=True).stdout
    assert out == "42\n"
    spec = (artifact_path(run_hdenv, "twice") / ".hdenv" / "spec.json").read_text()
    assert "meson setup _hdenv_build" in spec and "-Doptimization=2" in spec


MPI_HELLO = """#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) printf("ranks %d\\n", size);
    MPI_Finalize();
    return 0;
}
"""
MPI_MAKEFILE = """hello: hello.c
\tmpicc -o hello hello.c
install: hello
\tmkdir -p $(PREFIX)/bin && cp hello $(PREFIX)/bin/
"""


@pytest.mark.slow
def test_the_mpi_virtual_provided_by_the_host_open_mpi_builds_and_runs_in_the_sandbox(
        run_hdenv: Runner, tmp_path: Path) -> None:
    for tool in ("mpicc", "mpirun", "gcc"):
        require_tool(tool)
    stack = project(tmp_path, {"hello.c": MPI_HELLO, "Makefile": MPI_MAKEFILE}, "mpi.toml",
                    """[stack]
name = "mpihello"
repos = ["builtin"]
toolchain = ["gcc"]

[packages.mpi]
use = "openmpi"

[packages.mpihello]
version = "1.0"
build-system = "make"
sources = [{ path = "src" }]
deps = ["mpi"]
env = { OMPI_ALLOW_RUN_AS_ROOT = "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = "1" }
check = ["mpirun -np 2 hello"]
""")
    proc = run_hdenv("build", str(stack), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = artifact_path(run_hdenv, "mpihello")
    # the check ran two ranks inside the build (OMPI_MCA_plm=isolated from the recipe)
    assert "ranks 2" in (built / ".hdenv" / "build.log").read_text()
    spec = (built / ".hdenv" / "spec.json").read_text()
    assert "openmpi/" in spec  # the virtual became its provider


YAML_USER = """#include <yaml.h>
#include <stdio.h>
int main(void) { printf("libyaml %s\\n", yaml_get_version_string()); return 0; }
"""


@pytest.mark.slow
def test_a_gcc_and_clang_matrix_links_the_stacks_libyaml_never_the_systems(
        run_hdenv: Runner, tmp_path: Path) -> None:
    for tool in ("gcc", "clang", "cmake"):
        require_tool(tool)
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    require(Path("/usr/include/yaml.h").is_file(),
            "libyaml-dev is not installed: nothing for the jail to hide")
    stack = project(tmp_path, {"yamlver.c": YAML_USER}, "m.toml", """[stack]
name = "yv"
repos = ["builtin"]
toolchain = ["{{ compiler }}"]

[matrix]
compiler = ["gcc", "clang"]

[packages.yamlver]
version = "1.0"
build-system = "make"
sources = [{ path = "src" }]
deps = ["libyaml"]
script = '''
mkdir -p "$PREFIX/bin"
$CC -o "$PREFIX/bin/yamlver" yamlver.c -lyaml
'''
""")
    proc = run_hdenv("build", str(stack), env={"HDENV_MIRRORS": str(SHARED_SOURCES)},
                     timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = run_hdenv("list", "artifacts", check=True).stdout.splitlines()
    yamls = [line.split()[0] for line in lines if line.startswith("libyaml/")]
    assert len(yamls) == 2  # one libyaml per compiler
    libdirs = [Path(run_hdenv("path", y, check=True).stdout.strip()) / "lib" for y in yamls]
    for name in ("yv-gcc", "yv-clang"):
        program = Path(run_hdenv("path", name, check=True).stdout.strip()) / "bin" / "yamlver"
        ran = subprocess.run([str(program)], capture_output=True, text=True)
        assert ran.stdout == "libyaml 0.2.5\n", ran.stderr
        ldd = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout
        assert any(f"{d}/libyaml.so" in ldd for d in libdirs), ldd
        assert "/lib/x86_64-linux-gnu/libyaml" not in ldd, ldd

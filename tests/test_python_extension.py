"""A Python package with a C extension on a library the stack builds: real PyYAML 6.0.1
(Cython, from Debian's cython3) on real libyaml 0.2.5 (CMake), with `check` proving the
extension is there, and the same package without the library failing its check.

The issue this answers (27) saw a package "succeed" without its C extension;
here PyYAML falls back to pure Python unless told otherwise, so only the
check tells the two builds apart.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, Runner, require, require_tool

PYTHON = "/usr/bin/python3"  # the system Python, which has Debian's Cython

STACK = """
[stack]
name = "yaml"

[host.python]
programs = ["{python}"]

[host.gcc]
programs = ["gcc", "cc", "ld", "as", "ar", "ranlib"]
family = "compiler"

[host.cmake]
programs = ["cmake", "make"]

[packages.libyaml]
version = "0.2.5"
sources = [{{ url = "file://{src}/libyaml-0.2.5.tar.gz", sha256 = "fa240dbf262be053f3898006d502d514936c818e422afdcf33921c63bed9bf2e", strip = 1 }}]
build-deps = ["gcc", "cmake"]
script = '''
cmake -S . -B build -DBUILD_SHARED_LIBS=ON -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_TESTING=OFF
cmake --build build -j"$HDENV_JOBS"
cmake --install build
'''

[packages.pyyaml]
version = "6.0.1"
sources = [{{ url = "file://{src}/PyYAML-6.0.1.tar.gz", sha256 = "bfdf460b1736c775f2ba9f6a92bca30bc2095067b8a9d77876d1fad6cc3b4a43", strip = 1 }}]
deps = ["libyaml"]
build-deps = ["gcc", "python"]
check = ["python3 -c 'import sys, yaml; yaml.CLoader; sys.exit(not yaml.__with_libyaml__)'"]
script = '''
export CFLAGS="-I$HDENV_DEP_LIBYAML/include{cflags}" LDFLAGS="-L$HDENV_DEP_LIBYAML/lib"
python3 -m pip install --no-build-isolation --no-deps --no-index --no-cache-dir --ignore-installed --prefix "$PREFIX" .
'''

[profiles.yaml]
packages = ["pyyaml", "python"]
"""


def write(tmp_path: Path, cflags: str = "") -> Path:
    path = tmp_path / "yaml.toml"
    path.write_text(STACK.format(python=PYTHON, src=SHARED_SOURCES, cflags=cflags))
    return path


@pytest.mark.slow
def test_pyyaml_builds_its_c_extension_on_the_stacks_libyaml_and_checks_it(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require(Path(PYTHON).is_file(), f"{PYTHON} is absent")
    require(subprocess.run([PYTHON, "-c", "import Cython, pip"]).returncode == 0,
            "Debian's cython3 and python3-pip (for /usr/bin/python3) are not installed")
    require_tool("cmake")
    require_tool("gcc")
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    proc = run_hdenv("build", str(write(tmp_path)), timeout=900)
    assert proc.returncode == 0, proc.stderr
    (aid,) = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True)
              .stdout.splitlines() if line.startswith("pyyaml/")]
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    (ext,) = list(prefix.glob("lib/python3*/site-packages/yaml/_yaml*.so"))
    # the extension loads the stack's libyaml, not a system one
    ldd = subprocess.run(["ldd", str(ext)], capture_output=True, text=True).stdout
    libyaml = Path(run_hdenv("path", next(
        line.split()[0] for line in run_hdenv("list", "artifacts", check=True).stdout
        .splitlines() if line.startswith("libyaml/")), check=True).stdout.strip())
    assert f"{libyaml}/lib/libyaml" in ldd, ldd
    log = (prefix / ".hdenv" / "build.log").read_text()
    assert "hdenv: check:" in log
    # through the profile (a venv of the system Python): CLoader parses
    profile = Path(run_hdenv("path", "yaml", check=True).stdout.strip())
    ran = subprocess.run([str(profile / "bin" / "python3"), "-c",
                          "import yaml; print(yaml.load('a: [1, 2]', Loader=yaml.CLoader))"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert ran.stdout == "{'a': [1, 2]}\n", ran.stderr


@pytest.mark.slow
def test_pyyaml_whose_extension_does_not_compile_fails_its_check(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require(subprocess.run([PYTHON, "-c", "import Cython, pip"]).returncode == 0,
            "Debian's cython3 and python3-pip (for /usr/bin/python3) are not installed")
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    # the extension's compile fails; PyYAML's setup.py then installs pure Python and
    # says nothing, so the build "succeeds" -- unless its check looks
    proc = run_hdenv("build", str(write(tmp_path, " -include hdenv-absent.h")), timeout=900)
    assert proc.returncode == 1, proc.stderr
    assert "check `python3 -c 'import sys, yaml; yaml.CLoader;" in proc.stderr
    assert not [line for line in run_hdenv("list", "artifacts", check=True).stdout.splitlines()
                if line.startswith("pyyaml/")]

"""Host capture of real toolchains: binutils, target-prefixed names, runtime libraries,
libraries, versions, `env`; and what moves an id (a new gcc version) and what does not
(an m4 or perl appearing on PATH)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import Runner, require, require_tool

from hdenv.build import host, toolchain
from hdenv.store.layout import Store

LIBMPI = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"


def spec_of(store: Store, aid: str) -> dict:
    return store.read_spec(aid.rsplit("/", 1)[1])


def test_driver_names() -> None:
    for name, lang in [("gcc", "c"), ("x86_64-linux-gnu-gcc-12", "c"), ("g++", "c++"),
                       ("gfortran", "fortran"), ("clang-16", "c"), ("cc", "c")]:
        assert toolchain.driver_language(name) == lang
    for name in ("mpicc", "gccgo", "ld", "cmake", "gcc-ar"):
        assert toolchain.driver_language(name) is None


def test_gcc_alone_brings_its_binutils_prefixed_names_and_runtime(tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    store = Store(tmp_path / "store")
    aid = host.capture(store, "gcc", ["gcc"], family="compiler")
    spec = spec_of(store, aid)
    programs = spec["programs"]
    for tool in ("as", "ld", "ar", "nm", "ranlib", "strip"):
        assert tool in programs, tool
        assert os.path.realpath(programs[tool]["path"]) == programs[tool]["path"]
        assert (store.artifact_dir(aid) / "bin" / tool).exists()
    machine = subprocess.run([gcc, "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    prefixed = Path(os.path.dirname(gcc)) / f"{machine}-gcc"
    if prefixed.exists() and os.path.realpath(prefixed) == os.path.realpath(gcc):
        assert programs[f"{machine}-gcc"]["path"] == programs["gcc"]["path"]
    libs = spec["libraries"]
    assert "libgcc_s.so.1" in libs
    assert "libstdc++.so.6" not in libs and "libgfortran.so.5" not in libs  # not C's
    assert (store.artifact_dir(aid) / "lib" / "libgcc_s.so.1").exists()
    # the bytes are in the metadata, not in the spec
    meta = store.artifact_meta(aid)
    assert meta["host_files"][programs["as"]["path"]]
    assert "sha256" not in programs["gcc"]
    # the assembler's own libraries are recorded (binutils load libbfd)
    assert any("libbfd" in lib for lib in meta["loads"].get("as", {}))


def test_gfortran_brings_libgfortran(tmp_path: Path) -> None:
    require_tool("gfortran")
    store = Store(tmp_path / "store")
    spec = host.host_spec(store, "gfortran", ["gfortran"])
    assert {"as", "ld"} <= set(spec["programs"])
    assert "libgfortran.so.5" in spec["libraries"]
    assert spec["libraries"]["libgfortran.so.5"]["version"]


def test_a_prefixed_name_that_is_another_program_is_not_taken(tmp_path: Path) -> None:
    """A cross compiler named TRIPLET-gcc is not the gcc that was asked for."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    driver = bindir / "gcc"
    driver.write_text('#!/bin/sh\ncase "$1" in\n --version) echo "gcc 9.9.1";;\n'
                      ' -dumpmachine) echo "zz-test-linux";;\n'
                      ' -print-prog-name=*) echo "${1#-print-prog-name=}";;\n'
                      ' *) echo "$1";;\nesac\n')
    cross = bindir / "zz-test-linux-gcc"
    cross.write_text('#!/bin/sh\necho "cross 1.0"\n')
    os.chmod(driver, 0o755)
    os.chmod(cross, 0o755)
    os.symlink(os.path.realpath(require_tool("as")), bindir / "as")
    os.symlink("as", bindir / "zz-test-linux-as")
    spec = host.host_spec(Store(tmp_path / "store"), "gcc", ["gcc"], search_path=str(bindir))
    assert "as" in spec["programs"] and "zz-test-linux-as" in spec["programs"]
    assert "zz-test-linux-gcc" not in spec["programs"]
    assert spec["version"] == "9.9.1"


def test_libraries_by_soname_and_path_with_versions(tmp_path: Path) -> None:
    require(os.path.exists(LIBMPI), "Open MPI (libopenmpi-dev) is not installed")
    require_tool("mpirun")
    store = Store(tmp_path / "store")
    aid = host.capture(store, "mpi", ["mpicc", "mpirun"], libraries=("libmpi.so.40",),
                       version_from="mpirun", family="mpi")
    name, version, _ = aid.split("/")
    assert name == "mpi" and version.startswith("4.")  # Open MPI's own, not gcc's 12.x
    lib = spec_of(store, aid)["libraries"]["libmpi.so.40"]
    assert lib["path"] == os.path.realpath(LIBMPI) and lib["version"].startswith("40.")
    assert os.path.realpath(store.artifact_dir(aid) / "lib" / "libmpi.so.40") == lib["path"]
    # mpicc alone reports gcc's version: the default is the first program
    assert host.capture(store, "mpi2", ["mpicc"]).split("/")[1] != version
    assert host.capture(store, "fixed", ["mpirun"], version="7.0").split("/")[1] == "7.0"


def test_cli_captures_a_library(run_hdenv: Runner, tmp_path: Path) -> None:
    require(os.path.exists(LIBMPI), "Open MPI (libopenmpi-dev) is not installed")
    dev = "/usr/lib/x86_64-linux-gnu/libmpi.so"
    proc = run_hdenv("host", "capture", "openmpi", dev, "--version", "4.1", check=True)
    aid = proc.stdout.strip()
    assert aid.startswith("openmpi/4.1/")
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    assert {p.name for p in (prefix / "lib").iterdir()} == {"libmpi.so", "libmpi.so.40"}
    bad = run_hdenv("host", "capture", "x", "--library", "/etc/hostname")
    assert bad.returncode == 2 and "is not a shared library" in bad.stderr


HOSTS = """
[host.mpi]
programs = ["mpicc", "mpirun"]
{extra}

[packages.probe]
version = "1"
build-deps = ["mpi"]
script = 'mkdir -p "$PREFIX/share"; echo "$SITE_MPI_FLAVOUR" > "$PREFIX/share/flavour"'

[profiles.probe]
packages = ["probe", "mpi"]
"""


def test_version_from_and_env_from_the_stack_file(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("mpirun")
    stack = tmp_path / "s.toml"
    stack.write_text(HOSTS.format(extra='version-from = "mpicc"\nversion = "1"'))
    proc = run_hdenv("build", str(stack), "--dry-run")
    assert proc.returncode == 2 and f"{stack}:4:" in proc.stderr and "not both" in proc.stderr
    stack.write_text(HOSTS.format(extra='version-from = "mpiexec"'))
    proc = run_hdenv("build", str(stack), "--dry-run")
    assert proc.returncode == 2 and f"{stack}:4:" in proc.stderr and "mpiexec" in proc.stderr
    stack.write_text(HOSTS.format(extra='version-from = "mpirun"\n'
                                        'env = { SITE_MPI_FLAVOUR = "openmpi" }'))
    run_hdenv("build", str(stack), check=True)
    ids = [x.split()[0] for x in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    (mpi,) = [i for i in ids if i.startswith("mpi/")]
    assert mpi.split("/")[1].startswith("4.")
    (probe,) = [i for i in ids if i.startswith("probe/")]
    prefix = Path(run_hdenv("path", probe, check=True).stdout.strip())
    assert (prefix / "share" / "flavour").read_text() == "openmpi\n"  # set in the build
    profile = Path(run_hdenv("path", "probe", check=True).stdout.strip())
    env = json.loads((profile / ".hdenv" / "profile.json").read_text())["env"]
    assert env["SITE_MPI_FLAVOUR"] == "openmpi"  # and in the profile


ID_STACK = """
[host.gcc]
programs = ["gcc"]
family = "compiler"

[packages.tiny]
version = "1"
build-deps = ["gcc"]
script = '''
printf 'int main(void){return 0;}\\n' > t.c
mkdir -p "$PREFIX/bin"
gcc -o "$PREFIX/bin/tiny" t.c
'''
"""

FAKE_GCC = """#!/bin/sh
# reports another version, else behaves as the real gcc
case "$1" in
  --version) echo "gcc (Fake) {version}"; exit 0;;
esac
exec {real} "$@"
"""


@pytest.mark.slow
def test_unrelated_programs_on_path_change_no_id_and_another_gcc_version_does(
        run_hdenv: Runner, tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    stack = tmp_path / "s.toml"
    stack.write_text(ID_STACK)
    run_hdenv("build", str(stack), check=True)
    extra = tmp_path / "extra-bin"
    extra.mkdir()
    for name in ("m4", "perl", "file", "python3"):
        (extra / name).write_text(f'#!/bin/sh\necho "{name} 99.1"\n')
        os.chmod(extra / name, 0o755)
    path = f"{extra}:{os.environ['PATH']}"
    dry = run_hdenv("build", str(stack), "--dry-run", env={"PATH": path}, check=True)
    assert dry.stdout == "" and "nothing to build" in dry.stderr
    # a gcc that reports another version, first on PATH: the compiler and its users change
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "gcc").write_text(FAKE_GCC.format(version="12.9.0", real=os.path.realpath(gcc)))
    os.chmod(fake / "gcc", 0o755)
    dry1 = run_hdenv("build", str(stack), "--dry-run", env={"PATH": f"{fake}:{path}"},
                     check=True).stdout
    assert "would build gcc/12.9.0/" in dry1 and "would build tiny/1/" in dry1
    # the same fake rewritten to report yet another version: another id again
    (fake / "gcc").write_text(FAKE_GCC.format(version="12.9.1", real=os.path.realpath(gcc)))
    dry2 = run_hdenv("build", str(stack), "--dry-run", env={"PATH": f"{fake}:{path}"},
                     check=True).stdout
    assert "would build gcc/12.9.1/" in dry2


FORTRAN = """
[host.gfortran]
programs = ["gfortran"]

[packages.vecmod]
version = "1.0"
sources = [{{ path = "{examples}/mpi/src/vecmod" }}]
build-deps = ["gfortran"]
script = 'make PREFIX="$PREFIX" install'

[packages.dotprog]
version = "1.0"
sources = [{{ path = "prog" }}]
deps = ["vecmod"]
build-deps = ["gfortran"]
script = '''
mkdir -p "$PREFIX/bin"
gfortran -O2 -I"$HDENV_DEP_VECMOD/include" -o "$PREFIX/bin/dotprog" main.f90 -lvecmod
'''
"""

MAIN_F90 = """program dotprog
  use vecmod
  implicit none
  print '(f0.1)', dot([1d0, 2d0], [3d0, 4d0])
end program dotprog
"""


@pytest.mark.slow
def test_gfortran_declared_alone_builds_a_program_with_a_module_library(
        run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("gfortran")
    from conftest import EXAMPLES

    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "main.f90").write_text(MAIN_F90)
    stack = tmp_path / "s.toml"
    stack.write_text("[stack]\nallow-outside = true\n" + FORTRAN.format(examples=EXAMPLES))
    run_hdenv("build", str(stack), check=True)
    ids = [x.split()[0] for x in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    (prog,) = [i for i in ids if i.startswith("dotprog/")]
    exe = Path(run_hdenv("path", prog, check=True).stdout.strip()) / "bin" / "dotprog"
    out = subprocess.run(["env", "-i", str(exe)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "11.0"
    meta = json.loads((exe.parent.parent / ".hdenv" / "artifact.json").read_text())
    assert meta["links"]["undeclared"] == []  # libgfortran comes with the declared gfortran


ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@pytest.mark.slow
def test_mpi_example_hello_runs_with_mpirun_np_2(run_hdenv: Runner, tmp_path: Path) -> None:
    require_tool("mpirun")
    require_tool("gfortran")
    import shutil

    from conftest import EXAMPLES

    shutil.copytree(EXAMPLES / "mpi", tmp_path / "mpi")
    out = run_hdenv("build", str(tmp_path / "mpi" / "stack.toml"), check=True)
    assert out.stdout.split()[0] == "mpi-demo"
    ids = [x.split()[0] for x in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    (mpi,) = [i for i in ids if i.startswith("mpi/")]
    # Open MPI's own version as this machine's ompi_info reports it ("Open MPI v4.1.4"),
    # which the stack takes from `mpirun --version`, not gcc's from `mpicc --version`
    require_tool("ompi_info")
    info = subprocess.run(["ompi_info", "--version"], capture_output=True, text=True,
                          check=True).stdout
    found = re.search(r"Open MPI v(\d+(?:\.\d+)+)", info)
    assert found, info
    ompi_version = found.group(1)
    gcc_version = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True,
                                 check=True).stdout.strip()
    assert mpi.split("/")[1] == ompi_version != gcc_version
    profile = Path(run_hdenv("path", "mpi-demo", check=True).stdout.strip())
    env = {**json.loads((profile / ".hdenv" / "profile.json").read_text())["env"],
           "OMPI_MCA_plm": "isolated", **ROOT_OK}  # one node, no ssh; as root: allowed
    for program, lines in (("hello", ["hello from rank 0 of 2", "hello from rank 1 of 2",
                                      "total 13.0"]),
                           ("hello_c", ["hello from C rank 0 of 2", "hello from C rank 1 of 2",
                                        f"library Open MPI v{ompi_version}"])):
        proc = subprocess.run(
            ["env", "-i", *[f"{k}={v}" for k, v in env.items()], str(profile / "bin" / "mpirun"),
             "-np", "2", str(profile / "bin" / program)],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for line in lines:
            assert line in proc.stdout, (program, proc.stdout)


MARKUPSAFE = """
[host.python]
programs = ["/usr/bin/python3.11"]

[host.gcc]
programs = ["gcc"]
family = "compiler"

[packages.markupsafe]
version = "2.1.5"
sources = [{{ url = "file://{src}/MarkupSafe-2.1.5.tar.gz", sha256 = "d283d37a890ba4c1ae73ffadf8046435c76e7bc2247bbb63c00bd1a709c6544b", strip = 1 }}]
deps = ["python"]
build-deps = ["gcc"]
script = '''
python3.11 -m pip install --no-deps --no-index --no-build-isolation --no-cache-dir \\
    --disable-pip-version-check --target "$PREFIX/lib/python3.11/site-packages" .
'''

[profiles.ms]
packages = ["markupsafe"]
"""


@pytest.mark.slow
def test_python_c_extension_is_really_built_with_the_declared_compiler(
        run_hdenv: Runner, tmp_path: Path, shared_sources: Path) -> None:
    """Debian's Python compiles with x86_64-linux-gnu-gcc, which the gcc capture brings;
    without it MarkupSafe would quietly install its pure-Python fallback."""
    python = Path("/usr/bin/python3.11")
    require(python.is_file(), "Debian's python3.11 is not installed")
    require(subprocess.run([str(python), "-c", "import setuptools, wheel"],
                           env={}).returncode == 0,
            "python3-pip (with setuptools and wheel) is not installed")
    cc = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('CC'))"],
                        capture_output=True, text=True).stdout.split()[0]
    stack = tmp_path / "s.toml"
    stack.write_text(MARKUPSAFE.format(src=shared_sources))
    run_hdenv("build", str(stack), check=True)
    ids = [x.split()[0] for x in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    (gcc,) = [i for i in ids if i.startswith("gcc/")]
    assert (Path(run_hdenv("path", gcc, check=True).stdout.strip()) / "bin" / cc).exists()
    profile = Path(run_hdenv("path", "ms", check=True).stdout.strip())
    site = profile / "lib" / "python3.11" / "site-packages" / "markupsafe"
    assert list(site.glob("_speedups*.so")), sorted(p.name for p in site.iterdir())
    out = subprocess.run(["env", "-i", str(profile / "bin" / "python3.11"), "-c",
                          "import markupsafe; print(markupsafe.escape.__module__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "markupsafe._speedups"


def test_verify_reports_drift_of_a_host_file(run_hdenv: Runner, tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\necho "tool 1.0"\n')
    os.chmod(tool, 0o755)
    aid = run_hdenv("host", "capture", "tool", str(tool), check=True).stdout.strip()
    assert run_hdenv("verify", aid).returncode == 0
    tool.write_text('#!/bin/sh\necho "tool 1.0" # rebuilt\n')  # same version, other bytes
    assert run_hdenv("host", "capture", "tool", str(tool), check=True).stdout.strip() == aid
    proc = run_hdenv("verify", aid)
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"{aid}: host file {tool} changed since it was captured (drift)"

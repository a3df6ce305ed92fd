"""The build jail (issue 23): real gcc, g++, gfortran, clang and bwrap, real libyaml-dev.

In the sandbox a build sees, of the host's headers and libraries, only the C
library's, the compilers' own and those of the host artifacts it declared.
Each refusal is also shown to get through where the jail is off
(`sandbox = "none"`), so these tests show the jail is what stops it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import Runner, require, require_tool

from hdenv import hostpkgs
from hdenv.build import bwrap, jail, missing

GCC = """
[host.gcc]
programs = ["gcc", "cc", "ld", "as"]
family = "compiler"
"""

YAML_HOST = """
[host.yaml]
packages = ["libyaml-dev"]
"""

YAMLPROG = """
[packages.yamlprog]
version = "1"
{deps}
build-deps = ["gcc"]
script = '''
printf '{include}#include <stdio.h>\\nconst char *yaml_get_version_string(void);\\nint main(void){{printf("%%s\\\\n", yaml_get_version_string());return 0;}}\\n' > y.c
mkdir -p "$PREFIX/bin"
gcc y.c -o "$PREFIX/bin/yamlprog" -lyaml
'''
"""


def jailed() -> None:
    """The jail needs bwrap that can run here and a package database (dpkg or rpm)."""
    require_tool("bwrap")
    require(bwrap.unavailable_reason() is None, f"bwrap cannot run: {bwrap.unavailable_reason()}")
    require(jail.available(), "no dpkg or rpm: the jail cannot tell libc's files")
    require_tool("gcc")


def yaml_version() -> str:
    require(hostpkgs.manager() is not None, "no dpkg or rpm on this host")
    try:
        (pkg,) = hostpkgs.installed(["libyaml-dev"], "test")
    except Exception:  # noqa: BLE001 - not installed here
        require(False, "libyaml-dev is not installed (apt-get install libyaml-dev)")
        raise
    return pkg.version.split("-")[0]


def artifact(run_hdenv: Runner, name: str) -> Path:
    ids = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True).stdout
           .splitlines() if line.startswith(name + "/")]
    assert len(ids) == 1, ids
    return Path(run_hdenv("path", ids[0], check=True).stdout.strip())


BWRAP = {"HDENV_SANDBOX": "bwrap"}


@pytest.mark.parametrize("include,needle", [
    ("#include <yaml.h>\\n", "yaml.h is hidden from builds (the jail): the host has"
                             " /usr/include/yaml.h, from package libyaml-dev"),
    ("", "-lyaml is hidden from builds (the jail): the host has "),
])
def test_an_undeclared_header_or_library_fails_naming_file_package_and_declaration(
        run_hdenv: Runner, tmp_path: Path, include: str, needle: str) -> None:
    jailed()
    yaml_version()
    stack = tmp_path / "s.toml"
    stack.write_text(GCC + YAMLPROG.format(deps="", include=include))
    proc = run_hdenv("build", str(stack), env=BWRAP)
    assert proc.returncode == 1, proc.stderr
    assert ("fatal error: yaml.h: No such file or directory" if include
            else "cannot find -lyaml") in proc.stderr
    assert needle in proc.stderr
    assert '[host.yaml] packages = ["libyaml-dev"]' in proc.stderr
    assert "Traceback" not in proc.stderr
    # the same stack in the sandbox without the jail (jail = false) finds the host's
    # files: the jail stopped it
    off = run_hdenv("build", str(stack), env={**BWRAP, "HDENV_JAIL": "0",
                                               "HDENV_STRICT_LINKS": "0"}, check=True)
    assert "undeclared system libraries: libyaml-0.so.2" in off.stderr, off.stderr


def test_a_bad_jail_setting_is_one_line(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text(GCC)
    proc = run_hdenv("build", str(stack), env={"HDENV_JAIL": "maybe"})
    assert proc.returncode == 2
    assert proc.stderr == "hdenv: error: jail must be true or false, got 'maybe'\n"


def test_declared_by_package_it_builds_and_runs_in_the_jail(run_hdenv: Runner, tmp_path: Path,
                                                           store_dir: Path) -> None:
    jailed()
    version = yaml_version()
    stack = tmp_path / "s.toml"
    stack.write_text(GCC + YAML_HOST + YAMLPROG.format(deps='deps = ["yaml"]',
                                                       include="#include <yaml.h>\\n"))
    proc = run_hdenv("build", str(stack), env=BWRAP, check=True)
    assert "undeclared" not in proc.stderr
    exe = artifact(run_hdenv, "yamlprog") / "bin" / "yamlprog"
    ran = subprocess.run([str(exe)], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == version, ran
    assert "/usr/include/stdio.h" in json.loads(
        (store_dir / "cache" / "jail.json").read_text())["base"]  # for the next hdenv build


PROBE = """
[packages.probe]
version = "{mode}"
build-deps = ["gcc"]
script = '''
mkdir -p "$PREFIX/share"
r="$PREFIX/share/seen"
for f in /usr/include/stdio.h /usr/include/linux/limits.h /usr/include/yaml.h \\
         /usr/include/zlib.h {libdir}/libc.so {libdir}/libc.so.6 {libdir}/libz.so.1 \\
         {libdir}/libz.so {libdir}/libz.a {libdir}/libyaml.so {libdir}/pkgconfig/zlib.pc \\
         {libdir}/crt1.o /usr/local/include {libdir}/openmpi/include/mpi.h \\
         {libdir}/openmpi/lib/openmpi3/mca_allocator_basic.so; do
  if [ -e "$f" ]; then echo "$f=yes" >> "$r"; else echo "$f=no" >> "$r"; fi
done
for run in "make --version" "sh -c true" "perl -MPOSIX -e 1" "cmake --version"; do
  tool=${{run%% *}}
  if /usr/bin/$run >/dev/null 2>&1; then echo "$tool=runs" >> "$r"; else echo "$tool=broken" >> "$r"; fi
done
'''
"""


def test_the_jail_hides_dev_files_but_not_runtime_libraries(run_hdenv: Runner,
                                                           tmp_path: Path) -> None:
    jailed()
    libdir = "/usr/lib/x86_64-linux-gnu"
    require(Path(libdir, "libz.so").exists() and Path("/usr/include/zlib.h").exists(),
            "zlib1g-dev is not installed (apt-get install zlib1g-dev)")
    stack = tmp_path / "s.toml"
    seen = {}
    for mode in ("bwrap", "none"):  # the version is the mode: two artifacts, both built
        stack.write_text(GCC + PROBE.format(libdir=libdir, mode=mode))
        run_hdenv("build", str(stack), env={"HDENV_SANDBOX": mode}, check=True)
        out = artifact(run_hdenv, f"probe/{mode}") / "share" / "seen"
        seen[mode] = dict(line.split("=") for line in out.read_text().split())
    inside, outside = seen["bwrap"], seen["none"]
    for f in ("/usr/include/stdio.h", "/usr/include/linux/limits.h", f"{libdir}/libc.so",
              f"{libdir}/libc.so.6", f"{libdir}/libz.so.1", f"{libdir}/crt1.o"):
        assert inside[f] == "yes", (f, inside)
    # a subdirectory of the library directory: its headers go, its runtime plugins stay
    mpi_h, plugin = f"{libdir}/openmpi/include/mpi.h", f"{libdir}/openmpi/lib/openmpi3/" \
        "mca_allocator_basic.so"
    if outside[mpi_h] == "yes":  # libopenmpi-dev is installed (CI installs it)
        assert inside[mpi_h] == "no", inside
    if outside[plugin] == "yes":
        assert inside[plugin] == "yes", inside
    for f in ("/usr/include/yaml.h", "/usr/include/zlib.h", f"{libdir}/libz.so",
              f"{libdir}/libz.a", f"{libdir}/pkgconfig/zlib.pc", "/usr/local/include"):
        assert inside[f] == "no", (f, inside)
        if not f.endswith("yaml.h"):  # libyaml-dev is not needed here
            assert outside[f] == "yes", (f, outside)
    for tool in ("make", "sh", "perl", "cmake"):
        assert inside[tool] == "runs", (tool, inside)


CXX_FORTRAN = """
[host.gxx]
programs = ["g++", "c++", "ld", "as"]
family = "compiler"

[host.gfortran]
programs = ["gfortran", "ld", "as"]

[host.clang]
programs = ["clang", "clang++", "ld", "as"]

[packages.langs]
version = "1"
build-deps = ["gxx", "gfortran", "clang"]
script = '''
mkdir -p "$PREFIX/bin"
cat > c.cc <<'EOF'
#include <iostream>
#include <map>
#include <string>
#include <vector>
int main() {
  std::map<std::string, std::vector<int> > m;
  m["a"] = std::vector<int>(3, 7);
  std::cout << "cxx " << m["a"].size() << std::endl;
}
EOF
cat > f.f90 <<'EOF'
program hello
  use iso_fortran_env, only: output_unit
  write(output_unit, '(a, i0)') 'fortran ', 3
end program
EOF
printf '#include <math.h>\\n#include <stdio.h>\\nint main(void){printf("clang %%d\\\\n", (int)sqrt(9.0));return 0;}\\n' > m.c
g++ -O1 c.cc -o "$PREFIX/bin/cxx"
gfortran f.f90 -o "$PREFIX/bin/fortran"
clang m.c -o "$PREFIX/bin/clangc" -lm
clang++ c.cc -o "$PREFIX/bin/clangxx"
'''
"""


def test_cxx_fortran_and_clang_programs_build_in_the_jail(run_hdenv: Runner,
                                                         tmp_path: Path) -> None:
    jailed()
    for tool in ("g++", "gfortran", "clang", "clang++"):
        require_tool(tool)
    stack = tmp_path / "s.toml"
    stack.write_text(CXX_FORTRAN)
    run_hdenv("build", str(stack), env=BWRAP, check=True)
    bindir = artifact(run_hdenv, "langs") / "bin"
    outs = [subprocess.run([str(bindir / p)], capture_output=True, text=True).stdout.strip()
            for p in ("cxx", "fortran", "clangc", "clangxx")]
    assert outs == ["cxx 3", "fortran 3", "clang 3", "cxx 3"]


ZLIB_PNG = """
[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar", "ranlib", "nm", "strip"]
family = "compiler"

[packages.zlib]
version = "1.2.13"
sources = [{{ url = "file://{src}/zlib-1.2.13.tar.bz2", sha256 = "71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1", strip = 1 }}]
build-deps = ["gcc"]
script = '''
./configure --prefix="$PREFIX"
make -j"$HDENV_JOBS"
make install
'''

[packages.libpng]
version = "1.6.39"
sources = [{{ url = "file://{src}/libpng-1.6.39.tar.gz", sha256 = "a00e9d2f2f664186e4202db9299397f851aea71b36a35e74910b8820e380d441", strip = 1 }}]
{deps}
build-deps = ["gcc"]
script = '''
./configure --prefix="$PREFIX" --disable-static
make -j"$HDENV_JOBS"
make install
'''
"""


@pytest.mark.slow
def test_libpng_from_its_release_sees_only_the_declared_zlib(run_hdenv: Runner, tmp_path: Path,
                                                             shared_sources: Path) -> None:
    jailed()
    require(Path("/usr/include/zlib.h").exists(),
            "zlib1g-dev is not installed (apt-get install zlib1g-dev)")
    stack = tmp_path / "s.toml"
    # zlib undeclared: the host's zlib.h and libz.so are there, but not in the jail
    stack.write_text(ZLIB_PNG.format(src=shared_sources, deps=""))
    proc = run_hdenv("build", str(stack), env=BWRAP)
    assert proc.returncode == 1, proc.stderr
    assert "libpng" in proc.stderr and "zlib not installed" in proc.stderr, proc.stderr
    # configure's failed check (in config.log) is named, with the host package
    assert "-lz is hidden from builds (the jail): the host has" in proc.stderr, proc.stderr
    if hostpkgs.manager() == "deb":
        assert '[host.zlib1g] packages = ["zlib1g-dev"]' in proc.stderr, proc.stderr
    stack.write_text(ZLIB_PNG.format(src=shared_sources, deps='deps = ["zlib"]'))
    run_hdenv("build", str(stack), env=BWRAP, check=True)
    zlib = artifact(run_hdenv, "zlib")
    png = artifact(run_hdenv, "libpng")
    ldd = subprocess.run(["env", "-i", "ldd", str(png / "bin" / "pngfix")], capture_output=True,
                         text=True).stdout
    assert f"{zlib}/lib/libz.so.1" in ldd, ldd
    flags = subprocess.run([str(png / "bin" / "libpng-config"), "--ldflags"],
                           capture_output=True, text=True).stdout
    assert "-lpng16" in flags


def test_the_compiler_messages_name_the_missing_files() -> None:
    log = ("y.c:1:10: fatal error: yaml.h: No such file or directory\n"
           "m.c:2:10: fatal error: 'sys/xyz.h' file not found\n"
           "cc1: fatal error: nosuch.c: No such file or directory\n"
           "/usr/bin/ld: cannot find -lyaml: No such file or directory\n"
           "/usr/bin/ld: cannot find -lz\n"
           "ld.lld: error: unable to find library -lpng16\n"
           "y.c:1:10: fatal error: yaml.h: No such file or directory\n")
    assert missing.missing_names(log) == (["yaml.h", "sys/xyz.h"], ["yaml", "z", "png16"])
    assert missing.host_name("libyaml-dev") == "yaml"
    assert missing.host_name("zlib1g-dev") == "zlib1g"
    assert missing.explain("y.c:1:10: fatal error: hdenv-no-such.h: No such file or"
                           " directory\n") == []


CONFIG_LOG = """\
configure:5000: checking for yaml.h
conftest.c:10:10: fatal error: yaml.h: No such file or directory
configure:5010: result: no
configure:13013: checking for zlibVersion in -lz
/usr/bin/ld: cannot find -lz: No such file or directory
collect2: error: ld returned 1 exit status
configure:13042: result: no
configure:13054: error: zlib not installed
## Cache variables. ##
"""


def test_only_the_check_that_stopped_configure_is_named(tmp_path: Path) -> None:
    require(missing.host_library("z") is not None and missing.host_header("yaml.h") is not None,
            "zlib1g-dev and libyaml-dev are not both installed")
    log = tmp_path / "config.log"
    log.write_text(CONFIG_LOG)
    (line,) = missing.explain_config_log(log)  # not yaml.h: an optional probe
    assert line.startswith("-lz is hidden from builds (the jail): the host has /"), line
    log.write_text(CONFIG_LOG.replace("configure:13054: error: zlib not installed\n", ""))
    assert missing.explain_config_log(log) == []


def test_the_jail_cache_is_believed_only_while_the_host_is_unchanged(tmp_path: Path) -> None:
    jailed()
    jail.forget()
    cold = jail.bwrap_args()
    cache = tmp_path / "jail.json"
    jail.save_cache(cache)
    require(cache.exists(), "the package database or /usr/include changed in the last 2 s")
    data = json.loads(cache.read_text())
    jail.forget()
    jail.load_cache(cache)
    assert jail.bwrap_args() == cold
    # the arguments themselves are kept per allowed set: a marked copy is what comes back
    (only_base,) = data["args"]
    marked = json.loads(json.dumps(data))
    marked["args"][only_base] = [*cold, "--marked"]
    cache.write_text(json.dumps(marked))
    jail.forget()
    jail.load_cache(cache)
    assert jail.bwrap_args() == [*cold, "--marked"]
    assert "--marked" not in jail.bwrap_args([str(tmp_path)])  # another allowed set
    assert len(json.loads(jail.cache_data() or b"{}")["args"]) == 2  # saved for next time
    # an answer that differs shows whether the cache was used
    data["base"].remove("/usr/include/stdio.h")
    cache.write_text(json.dumps(data))
    jail.forget()
    jail.load_cache(cache)
    assert "/usr/include/stdio.h" not in jail.bwrap_args()
    data["key"][-1][3] -= 1  # a library directory changed since
    cache.write_text(json.dumps(data))
    jail.forget()
    jail.load_cache(cache)
    assert "/usr/include/stdio.h" in jail.bwrap_args()
    jail.forget()


def test_a_damaged_jail_cache_is_ignored(tmp_path: Path) -> None:
    """Whatever cache/jail.json holds (damage, or a planted file): never an error."""
    cache = tmp_path / "jail.json"
    key = json.dumps(jail._host_key())
    parts = f'"key": {key}, "base": [], "link_time": {{}}, "dev_subdirs": {{}}'
    for text in ["[" * 100_000, "{not json", "[1, 2]", '{"key": 3}', "\u0000",
                 f'{{{parts}, "args": {{"k": [1]}}}}', f'{{{parts}, "args": []}}',
                 f'{{{parts}}}']:
        cache.write_text(text)
        jail.forget()
        jail.load_cache(cache)  # ignored
        assert "base" not in jail._known, text
    jail.forget()

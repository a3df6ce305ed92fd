"""Run paths that hold and the link audit, with real upstream zlib 1.2.13 and libpng 1.6.39.

One store per module: zlib and libpng (autotools + libtool) are built once;
each test adds a small package of its own on top.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, require, require_tool

from hdenv import hostpkgs
from hdenv.build import linkaudit
from hdenv.store.elf import read_elf

SYSTEM_LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1"

HOST = """
[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar", "ranlib", "nm", "strip"]
family = "compiler"

[host.pkgconf]
programs = ["pkg-config"]
"""

PACKAGES = """
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
deps = ["zlib"]
build-deps = ["gcc"]
script = '''
./configure --prefix="$PREFIX" --disable-static
make -j"$HDENV_JOBS"
make install
'''
"""

Hd = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def hd(tmp_path_factory: pytest.TempPathFactory) -> Hd:
    """Run hdenv against this module's store; `config` lines go into its config.toml."""
    work = tmp_path_factory.mktemp("linkaudit")
    exe = str(Path(sys.executable).parent / "hdenv")

    def run(*args: str, config: str = "", check: bool = False) -> subprocess.CompletedProcess[str]:
        cfg = work / "config.toml"
        cfg.write_text(config)
        env = {**os.environ, "HDENV_STORE": str(work / "store"), "HDENV_CONFIG": str(cfg),
               "HDENV_JOBS": "2"}
        env.pop("HDENV_MIRRORS", None)
        proc = subprocess.run([exe, *args], env=env, capture_output=True, text=True,
                              timeout=900)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


def stack(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(HOST + PACKAGES.format(src=SHARED_SOURCES) + extra)
    return path


def artifact(hd: Hd, name: str) -> Path:
    ids = [line.split()[0] for line in hd("list", "artifacts", check=True).stdout.splitlines()]
    (aid,) = [i for i in ids if i.startswith(name + "/")]
    return Path(hd("path", aid, check=True).stdout.strip())


def tiny_png(path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def built(hd: Hd, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("gcc")
    require_tool("pkg-config")
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    proc = hd("build", str(stack(tmp_path_factory.mktemp("png"))))
    assert proc.returncode == 0, proc.stderr
    return {"zlib": artifact(hd, "zlib"), "libpng": artifact(hd, "libpng")}


@pytest.mark.slow
def test_every_libpng_file_loads_zlib_from_the_zlib_artifact(built: dict[str, Path],
                                                            tmp_path: Path) -> None:
    zlib_lib = built["zlib"] / "lib"
    users = []
    for dirpath, _dirs, files in os.walk(built["libpng"]):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink() or ".hdenv" in p.parts:
                continue
            info = read_elf(p)
            if info is None or "libz.so.1" not in info.needed:
                continue
            users.append(p.relative_to(built["libpng"]).as_posix())
            ldd = subprocess.run(["env", "-i", "ldd", str(p)], capture_output=True, text=True,
                                 check=True).stdout
            (line,) = [x for x in ldd.splitlines() if "libz.so.1" in x]
            assert f"{zlib_lib}/libz.so.1" in line, (p, ldd)
            runpath = subprocess.run(["readelf", "-d", str(p)], capture_output=True, text=True,
                                     check=True).stdout
            assert str(zlib_lib) in runpath
    assert "bin/pngfix" in users and any(u.startswith("lib/libpng16.so") for u in users)
    # libtool passed its own -rpath, so hdenv completed pngfix's run path
    meta = json.loads((built["libpng"] / ".hdenv" / "artifact.json").read_text())
    assert "bin/pngfix" in meta["links"]["completed"]
    assert meta["links"]["undeclared"] == []
    assert "libpng16.so.16" in meta["libraries"]
    # and it works with an empty environment
    png = tmp_path / "in.png"
    tiny_png(png)
    proc = subprocess.run(["env", "-i", str(built["libpng"] / "bin" / "pngfix"), str(png)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout or proc.stdout.strip() == "" or "in.png" in proc.stdout


@pytest.mark.slow
def test_no_run_path_entry_points_at_a_directory_that_does_not_exist(
        built: dict[str, Path]) -> None:
    """LD_RUN_PATH names `$PREFIX/lib64` before the build; an artifact without one keeps none."""
    checked = 0
    for root in built.values():
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                info = None if p.is_symlink() else read_elf(p)
                if info is None or not info.dynamic:
                    continue
                checked += 1
                for entry in info.search_path:
                    real = entry.replace("$ORIGIN", str(p.parent))
                    assert os.path.isdir(real), (p, entry)
    assert checked >= 3
    assert not (built["zlib"] / "lib64").exists()


SYSTEM_COPY = """
[packages.usesz]
version = "1"
deps = ["zlib"]
build-deps = ["gcc"]
script = '''
printf '#include <zlib.h>\\nint main(void){{return zlibVersion()[0] != 0x31;}}\\n' > main.c
mkdir -p "$PREFIX/bin"
gcc main.c -o "$PREFIX/bin/usesz" {link}
'''
"""


@pytest.mark.slow
def test_dependency_library_taken_from_the_system_is_refused(hd: Hd, built: dict[str, Path],
                                                            tmp_path: Path) -> None:
    link = f"-Wl,-rpath,/usr/lib/x86_64-linux-gnu {SYSTEM_LIBZ}"
    proc = hd("build", str(stack(tmp_path, SYSTEM_COPY.format(link=link))))
    assert proc.returncode == 1
    err = proc.stderr
    assert "bin/usesz needs libz.so.1" in err
    assert f"loads {SYSTEM_LIBZ}" in err and f"{built['zlib']}/lib/libz.so.1" in err
    assert "zlib/1.2.13/" in err
    assert not [line for line in hd("list", "artifacts").stdout.splitlines() if line.startswith("usesz/")]


@pytest.mark.slow
def test_runpath_is_completed_when_the_build_gave_none(hd: Hd, built: dict[str, Path],
                                                        tmp_path: Path) -> None:
    # linked against the dependency, but the link line names no run path and
    # LD_RUN_PATH is overridden: hdenv still makes it load zlib's copy
    link = '-Wl,-rpath,"$PREFIX/lib" -lz'
    proc = hd("build", str(stack(tmp_path, SYSTEM_COPY.format(link=link))))
    assert proc.returncode == 0, proc.stderr
    exe = artifact(hd, "usesz") / "bin" / "usesz"
    ldd = subprocess.run(["env", "-i", "ldd", str(exe)], capture_output=True, text=True).stdout
    assert f"{built['zlib']}/lib/libz.so.1" in ldd
    assert subprocess.run(["env", "-i", str(exe)]).returncode == 0


UNDECLARED = """
[packages.sysz]
version = "1"
build-deps = ["gcc"]
script = '''
printf 'int zlibVersion(void);\\nint main(void){{return !zlibVersion();}}\\n' > main.c
mkdir -p "$PREFIX/bin"
gcc main.c -o "$PREFIX/bin/sysz" {link}
'''
"""


@pytest.mark.slow
def test_undeclared_system_library_is_listed_and_fails_with_strict_links(
        hd: Hd, built: dict[str, Path], tmp_path: Path) -> None:
    # by path: `-lz` finds nothing in the build jail (tests/test_jail.py), a .so.N does
    path = stack(tmp_path, UNDECLARED.format(link=SYSTEM_LIBZ))
    for config in ("", "strict-links = true\n"):  # true is the default
        strict = hd("build", str(path), config=config)
        assert strict.returncode == 1
        assert "undeclared system libraries (strict-links): libz.so.1" in strict.stderr
        if hostpkgs.manager() == "deb":
            assert 'from package zlib1g (libz.so.1): declare it with [host.zlib1g] packages' \
                ' = ["zlib1g"]' in strict.stderr, strict.stderr
        assert not [line for line in hd("list", "artifacts").stdout.splitlines()
                    if line.startswith("sysz/")]
    proc = hd("build", str(path), config="strict-links = false\n", check=True)
    (line,) = [x for x in proc.stderr.splitlines() if "undeclared system libraries" in x]
    assert "sysz/1/" in line and "libz.so.1 (/" in line and "/libz.so.1)" in line
    ids = [x.split()[0] for x in hd("list", "artifacts").stdout.splitlines() if x.startswith("sysz/")]
    shown = hd("show", ids[0], check=True).stdout
    assert "undeclared system libraries:" in shown and "(needed by bin/sysz)" in shown
    data = json.loads(hd("show", ids[0], "--json", check=True).stdout)
    (entry,) = data["undeclared_system_libraries"]
    assert entry["library"] == "libz.so.1" and entry["file"] == "bin/sysz"
    assert os.path.realpath(entry["path"]) == os.path.realpath(SYSTEM_LIBZ)
    # libc and the loader are expected, never listed
    assert not [u for u in data["undeclared_system_libraries"] if u["library"] == "libc.so.6"]


BUILD_ONLY = """
[packages.buildonly]
version = "1"
build-deps = ["gcc", "zlib"]
script = '''
printf '#include <zlib.h>\\nint main(void){return !zlibVersion();}\\n' > main.c
mkdir -p "$PREFIX/bin"
gcc main.c -o "$PREFIX/bin/buildonly" -lz
'''
"""


@pytest.mark.slow
def test_library_of_a_build_only_dependency_must_be_declared(hd: Hd, built: dict[str, Path],
                                                             tmp_path: Path) -> None:
    proc = hd("build", str(stack(tmp_path, BUILD_ONLY)))
    assert proc.returncode == 1
    assert "bin/buildonly needs libz.so.1 at run time" in proc.stderr
    assert "declare it in deps" in proc.stderr


HOST_ZLIB = """
[host.hostz]
libraries = ["libz.so.1"]

[packages.usesysz]
version = "1"
{which} = ["gcc", "hostz"]
script = '''
printf 'int zlibVersion(void);\\nint main(void){{return !zlibVersion();}}\\n' > main.c
mkdir -p "$PREFIX/bin"
gcc main.c -o "$PREFIX/bin/usesysz" "$HDENV_DEP_HOSTZ/lib/libz.so.1"
'''
"""


@pytest.mark.slow
def test_a_host_library_linked_at_run_time_must_be_a_runtime_dependency(
        hd: Hd, built: dict[str, Path], tmp_path: Path) -> None:
    """Only in build-deps, the host's libz would vanish from the profile's closure: refused."""
    def host_zlib_stack(which: str) -> str:
        path = tmp_path / f"{which}.toml"
        path.write_text(HOST + HOST_ZLIB.format(which=which))
        return str(path)

    proc = hd("build", host_zlib_stack("build-deps"))
    assert proc.returncode == 1, proc.stderr
    assert "bin/usesysz needs libz.so.1 at run time, which only the build-only dependency" \
        " hostz/" in proc.stderr
    assert "declare it in deps" in proc.stderr
    assert not [x for x in hd("list", "artifacts").stdout.splitlines() if x.startswith("usesysz/")]
    ok = hd("build", host_zlib_stack("deps"))
    assert ok.returncode == 0, ok.stderr
    exe = artifact(hd, "usesysz") / "bin" / "usesysz"
    assert subprocess.run(["env", "-i", str(exe)]).returncode == 0


PKGCONF = """
[packages.pcprobe]
version = "{v}"
build-deps = ["gcc", "pkgconf"]
deps = {deps}
script = '''
mkdir -p "$PREFIX/share"
pkg-config --variable=prefix zlib > "$PREFIX/share/zlib-prefix" || echo none > "$PREFIX/share/zlib-prefix"
'''
"""


@pytest.mark.slow
def test_pkg_config_sees_declared_packages_only(hd: Hd, built: dict[str, Path],
                                                tmp_path: Path) -> None:
    host_answer = subprocess.run(["pkg-config", "--variable=prefix", "zlib"],
                                 capture_output=True, text=True).stdout.strip()
    require(host_answer == "/usr", "the host has no zlib.pc (zlib1g-dev)")
    hd("build", str(stack(tmp_path, PKGCONF.format(v="1", deps="[]"))), check=True)
    assert (artifact(hd, "pcprobe") / "share" / "zlib-prefix").read_text() == "none\n"
    (tmp_path / "two").mkdir()
    hd("build", str(stack(tmp_path / "two", PKGCONF.format(v="2", deps='["zlib"]'))), check=True)
    ids = [x.split()[0] for x in hd("list", "artifacts").stdout.splitlines() if x.startswith("pcprobe/2/")]
    prefix = Path(hd("path", ids[0], check=True).stdout.strip())
    assert (prefix / "share" / "zlib-prefix").read_text().strip() == str(built["zlib"])


SYSTEM_PC = """
[packages.syspc]
version = "{v}"
build-deps = {deps}
script = '''
mkdir -p "$PREFIX/share"
pkg-config --modversion zlib > "$PREFIX/share/zlib-version" || echo none > "$PREFIX/share/zlib-version"
'''
"""

ALLOWED_ZLIB = """
[host.syszlib]
libraries = ["libz.so.1"]
pkgconfig = ["{pcdir}"]
"""


def test_host_pkgconfig_dir_lets_a_build_see_a_system_library(hd: Hd, tmp_path: Path) -> None:
    require_tool("pkg-config")
    def host_pkg_config(*args: str) -> str:
        proc = subprocess.run(["pkg-config", *args, "zlib"], capture_output=True, text=True)
        require(proc.returncode == 0, "the host has no zlib.pc (zlib1g-dev)")
        return proc.stdout.strip()

    version, pcdir = host_pkg_config("--modversion"), host_pkg_config("--variable=pcfiledir")
    # not declared: the build's pkg-config does not see the system's zlib.pc
    (tmp_path / "one").mkdir()
    one = tmp_path / "one" / "stack.toml"
    one.write_text(HOST + SYSTEM_PC.format(v="1", deps='["pkgconf"]'))
    hd("build", str(one), check=True)
    assert (artifact(hd, "syspc") / "share" / "zlib-version").read_text() == "none\n"
    # a host artifact allowing it by `pkgconfig = [DIR]`: the system's zlib is found
    (tmp_path / "two").mkdir()
    two = tmp_path / "two" / "stack.toml"
    two.write_text(HOST + ALLOWED_ZLIB.format(pcdir=pcdir)
                   + SYSTEM_PC.format(v="2", deps='["pkgconf", "syszlib"]'))
    hd("build", str(two), check=True)
    ids = [x.split()[0] for x in hd("list", "artifacts").stdout.splitlines() if x.startswith("syspc/2/")]
    prefix = Path(hd("path", ids[0], check=True).stdout.strip())
    assert (prefix / "share" / "zlib-version").read_text() == version + "\n"
    (syszlib,) = [x.split()[0] for x in hd("list", "artifacts").stdout.splitlines()
                  if x.startswith("syszlib/")]
    spec = json.loads(Path(hd("path", syszlib, check=True).stdout.strip(), ".hdenv",
                           "spec.json").read_text())
    assert spec["pkgconfig"] == [pcdir]


def test_libc_and_loaders_are_expected() -> None:
    for name in ("libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2", "libnss_files.so.2"):
        assert linkaudit.is_libc(name)
    for name in ("libz.so.1", "libstdc++.so.6", "libcrypt.so.1"):
        assert not linkaudit.is_libc(name)


CMAKE = """
[host.cmake]
programs = ["cmake"]

[packages.cmprobe]
version = "1"
sources = [{ path = "cm" }]
deps = ["zlib"]
build-deps = ["gcc", "cmake"]
script = '''
cmake -S . -B b > cmake.log
mkdir -p "$PREFIX/share"
cp b/found.txt "$PREFIX/share/"
'''
"""

CMAKELISTS = """cmake_minimum_required(VERSION 3.13)
project(probe C)
find_library(Z z)
find_package(ZLIB REQUIRED)
file(WRITE ${CMAKE_BINARY_DIR}/found.txt "${Z}\\n${ZLIB_LIBRARIES}\\n${ZLIB_INCLUDE_DIRS}\\n")
"""


@pytest.mark.slow
def test_cmake_finds_the_dependency_before_the_system(hd: Hd, built: dict[str, Path],
                                                      tmp_path: Path) -> None:
    require_tool("cmake")
    (tmp_path / "cm").mkdir()
    (tmp_path / "cm" / "CMakeLists.txt").write_text(CMAKELISTS)
    proc = hd("build", str(stack(tmp_path, CMAKE)))
    assert proc.returncode == 0, proc.stderr
    lib, pkg, inc = (artifact(hd, "cmprobe") / "share" / "found.txt").read_text().splitlines()
    zlib = str(built["zlib"])
    assert lib.startswith(zlib) and pkg.startswith(zlib) and inc.startswith(zlib)


VERBOSE = """
[packages.auditme]
version = "1"
deps = ["zlib"]
build-deps = ["gcc"]
script = '''
printf 'int zlibVersion(void);\\nint main(void){return !zlibVersion();}\\n' > main.c
mkdir -p "$PREFIX/bin"
gcc main.c -o "$PREFIX/bin/auditme" -L"$HDENV_DEP_ZLIB/lib" -lz
'''
"""


def test_verbose_build_says_what_the_passing_link_audit_saw(hd: Hd, built: dict[str, Path],
                                                            tmp_path: Path) -> None:
    path = stack(tmp_path, VERBOSE)
    quiet = hd("build", str(path), "--dry-run", check=True)
    assert "link audit" not in quiet.stderr
    proc = hd("build", "-v", str(path), check=True)
    (line,) = [x for x in proc.stderr.splitlines() if "link audit" in x]
    assert line.startswith("auditme/1/") and line.endswith(
        ": link audit passed: 1 ELF file(s), 2 libraries (system: libc.so.6;"
        " zlib/1.2.13: libz.so.1)"), line
    log = (artifact(hd, "auditme") / ".hdenv" / "build.log").read_text()
    assert "hdenv: link audit passed: 1 ELF file(s)" in log  # the log has it without -v

"""Python in profiles, and the issue's acceptance test on real builds.

The acceptance stack: hello (./configure), lua (a C library: headers + liblua.a),
a host Python captured with hdenv.host, six installed by pip into its own
artifact, a script artifact whose shebang names the host interpreter, and a tiny
C program whose CFLAGS is the "parameter" changed to make generation 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_SOURCES, require

from hdenv.build import host
from hdenv.errors import UserError
from hdenv.profile.farm import Member
from hdenv.profile.profiles import (
    create_profile,
    list_generations,
    profile_spec,
    rollback,
    set_current,
)
from hdenv.profile.pyprofile import rewrite_scripts, single_python
from hdenv.store.artifacts import install_artifact
from hdenv.store.hashing import sha256_file
from hdenv.store.layout import Store

REAL_PYTHON = os.path.realpath(sys.executable)
PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"


need = require


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def build_spec(name: str, version: str, tarball: Path | None, script: str,
               env: dict[str, str] | None = None, deps: list[str] | None = None) -> dict[str, Any]:
    sources = []
    if tarball is not None:
        sources = [{"key": f"sha256:{sha256_file(tarball)}", "strip": 1, "target": ""}]
    return {"kind": "build", "name": name, "version": version, "sources": sources,
            "deps": sorted(deps or []), "build_deps": [], "env": env or {}, "script": script}


def unpack(tarball: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    run(["tar", "xzf", str(tarball), "-C", str(into)])
    (top,) = list(into.iterdir())
    return top


BUILD_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C"}


def build_hello(store: Store, work: Path) -> str:
    tarball = SHARED_SOURCES / "hello-2.10.tar.gz"
    script = './configure --prefix="$PREFIX" && make -j2 && make install'
    spec = build_spec("hello", "2.10", tarball, script)

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        src = unpack(tarball, work / "hello")
        run(["sh", "-c", script], cwd=src, env={**BUILD_ENV, "PREFIX": str(prefix)})

    return install_artifact(store, spec, populate, runtime_deps=[])[0]


def build_lua(store: Store, work: Path) -> str:
    tarball = SHARED_SOURCES / "lua-5.4.4.tar.gz"
    script = 'make -j2 linux && make install INSTALL_TOP="$PREFIX"'
    spec = build_spec("lua", "5.4.4", tarball, script)

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        src = unpack(tarball, work / "lua")
        run(["sh", "-c", script], cwd=src, env={**BUILD_ENV, "PREFIX": str(prefix)})

    return install_artifact(store, spec, populate, runtime_deps=[])[0]


def build_six(store: Store, python_id: str, work: Path) -> str:
    """six installed with the real interpreter into its own prefix (plain layout, no egg)."""
    tarball = SHARED_SOURCES / "six-1.16.0.tar.gz"
    script = ('python3 setup.py install --prefix "$PREFIX" '
              "--single-version-externally-managed --record installed.txt")
    spec = build_spec("six", "1.16.0", tarball, script, deps=[python_id])

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        src = unpack(tarball, work / "six")
        run([REAL_PYTHON, "setup.py", "-q", "install", "--prefix", str(prefix),
             "--single-version-externally-managed", "--record", "installed.txt"],
            cwd=src, env={**BUILD_ENV})

    return install_artifact(store, spec, populate, runtime_deps=[python_id])[0]


def build_script_artifact(store: Store, python_id: str, six_id: str) -> str:
    """A package installing a console script, as pip would write it (absolute shebang)."""
    body = "import six, sys\nprint('six', six.__version__, 'prefix', sys.prefix)\n"
    spec = build_spec("sixver", "1.0", None, body, deps=[python_id, six_id])

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        (prefix / "bin").mkdir()
        script = prefix / "bin" / "sixver"
        script.write_text(f"#!{REAL_PYTHON}\n{body}")
        script.chmod(0o755)

    return install_artifact(store, spec, populate, runtime_deps=[python_id, six_id])[0]


def build_greet(store: Store, work: Path, cflags: str) -> str:
    """A small C program built with real gcc; CFLAGS is the stack parameter."""
    source = '#include <stdio.h>\nint main(void){puts(GREETING);return 0;}\n'
    script = f'gcc {cflags} greet.c -o "$PREFIX/bin/greet"'
    spec = build_spec("greet", "1.0", None, script, env={"CFLAGS": cflags})

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        d = work / f"greet-{abs(hash(cflags))}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "greet.c").write_text(source)
        (prefix / "bin").mkdir()
        run(["sh", "-c", script], cwd=d, env={**BUILD_ENV, "PREFIX": str(prefix)})

    return install_artifact(store, spec, populate, runtime_deps=[])[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for tarball in ("hello-2.10.tar.gz", "lua-5.4.4.tar.gz", "six-1.16.0.tar.gz"):
        need((SHARED_SOURCES / tarball).is_file(), f"{SHARED_SOURCES / tarball} is missing")
    for tool in ("gcc", "make", "tar"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    need(PYVER.startswith("3."), "needs CPython 3")
    root = tmp_path_factory.mktemp("accept")
    store = Store(root / "store").ensure()
    work = root / "work"
    python_id = host.capture(store, "python", [f"python{PYVER}", "python3"],
                             search_path=os.path.dirname(REAL_PYTHON))
    six_id = build_six(store, python_id, work)
    ids = {
        "python": python_id, "six": six_id,
        "hello": build_hello(store, work), "lua": build_lua(store, work),
        "sixver": build_script_artifact(store, python_id, six_id),
        "greet1": build_greet(store, work, '-O2 -DGREETING=\\"one\\"'),
        "greet2": build_greet(store, work, '-O3 -DGREETING=\\"two\\"'),
    }
    return {"store": store, "ids": ids, "work": work}


def make_profile(stack: dict[str, Any], greet: str) -> Path:
    ids = stack["ids"]
    arts = [ids[k] for k in ("python", "six", "hello", "lua", "sixver")] + [ids[greet]]
    spec = profile_spec(arts, {"DEMO_HOME": "@@HDENV_PROFILE@@/share/demo"}, None)
    return create_profile(stack["store"], spec)


@pytest.mark.slow
def test_acceptance_profile_runs_programs_libraries_and_python(stack: dict[str, Any]) -> None:
    prof = make_profile(stack, "greet1")
    clean = {"PATH": "/usr/bin:/bin"}
    assert "Hello, world!" in run([str(prof / "bin/hello")], env=clean)
    assert run([str(prof / "bin/greet")], env=clean).strip() == "one"
    assert "Lua 5.4.4" in run([str(prof / "bin/lua"), "-v"], env=clean)

    # a program compiled against the profile's headers and library runs
    src = stack["work"] / "uselua.c"
    src.write_text('#include "lua.h"\n#include "lauxlib.h"\n#include "lualib.h"\n'
                   '#include <stdio.h>\nint main(void){lua_State*L=luaL_newstate();'
                   'luaL_openlibs(L);luaL_dostring(L,"print(6*7)");lua_close(L);return 0;}\n')
    exe = stack["work"] / "uselua"
    run(["gcc", f"-I{prof}/include", str(src), f"-L{prof}/lib", "-llua", "-lm", "-o", str(exe)])
    assert run([str(exe)], env=clean).strip() == "42"

    # Python: env -i, no PYTHONPATH; packages of other artifacts import; sys.prefix is the profile
    py = prof / "bin" / f"python{PYVER}"
    assert py.is_symlink()
    out = run(["env", "-i", str(py), "-c",
               "import six, sys; print(six.__version__); print(sys.prefix); print(sys.path)"])
    version, prefix, path = out.splitlines()
    assert version == "1.16.0"
    assert prefix == str(prof)
    assert f"{prof}/lib/python{PYVER}/site-packages" in path
    assert run(["env", "-i", str(prof / "bin/python3"), "-c", "import six"]) == ""
    cfg = (prof / "pyvenv.cfg").read_text()
    assert f"home = {os.path.dirname(REAL_PYTHON)}" in cfg
    assert "include-system-site-packages = false" in cfg

    # the script installed by a Python package runs from the profile, with its packages
    script = prof / "bin" / "sixver"
    assert not script.is_symlink()
    assert script.read_text().startswith(f"#!{py}\n")
    assert run(["env", "-i", str(script)]).split() == ["six", "1.16.0", "prefix", str(prof)]

    # the merged site-packages is a real directory, not a link into the six artifact
    site = prof / "lib" / f"python{PYVER}" / "site-packages"
    assert site.is_dir() and not site.is_symlink()
    assert (prof / "include").is_symlink()  # only lua has include/: folded


@pytest.mark.slow
def test_acceptance_generations_and_rollback(stack: dict[str, Any]) -> None:
    store: Store = stack["store"]
    first = make_profile(stack, "greet1")
    assert set_current(store, "demo", first.name) == (1, True)
    assert set_current(store, "demo", first.name) == (1, False)  # same hash: no new generation
    second = make_profile(stack, "greet2")  # the CFLAGS parameter changed
    assert second != first
    assert set_current(store, "demo", second.name) == (2, True)
    assert store.resolve("demo").path == second
    assert run([str(store.resolve("demo").path / "bin/greet")]).strip() == "two"
    assert rollback(store, "demo") == 1
    assert store.resolve("demo").path == first
    assert os.path.realpath(store.names / "demo" / "current") == str(first)
    gens = list_generations(store, "demo")
    assert [(g.number, g.current) for g in gens] == [(1, True), (2, False)]


# -- unit tests on small real trees ------------------------------------------------
def write_script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_rewrite_scripts_handles_shebang_forms(tmp_path: Path) -> None:
    art = tmp_path / "art" / "bin"
    write_script(art / "direct", "#!/opt/py/bin/python3.11 -E\nprint(1)\n")
    write_script(art / "viaenv", "#!/usr/bin/env python3\nprint(2)\n")
    write_script(art / "pip", "#!/bin/sh\n'''exec' \"/very/long/python3.11\" \"$0\" \"$@\"\n"
                 "' '''\nprint(3)\n")
    write_script(art / "shell", "#!/bin/sh\necho 4\n")
    (art / "binary").write_bytes(b"\x7fELF\x00\x00")
    farm = tmp_path / "farm"
    (farm / "bin").mkdir(parents=True)
    for name in os.listdir(art):
        os.symlink(art / name, farm / "bin" / name)
    prefix = tmp_path / "final"
    done = rewrite_scripts(farm, prefix, "3.11")
    assert done == ["direct", "pip", "viaenv"]
    py = f"{prefix}/bin/python3.11"
    assert (farm / "bin/direct").read_text() == f"#!{py} -E\nprint(1)\n"
    assert (farm / "bin/viaenv").read_text() == f"#!{py}\nprint(2)\n"
    assert (farm / "bin/pip").read_text() == (
        f"#!/bin/sh\n'''exec' \"{py}\" \"$0\" \"$@\"\n' '''\nprint(3)\n")
    assert os.access(farm / "bin/direct", os.X_OK)
    assert (farm / "bin/shell").is_symlink() and (farm / "bin/binary").is_symlink()
    # the artifact itself is untouched
    assert (art / "direct").read_text().startswith("#!/opt/py/bin/python3.11")


def test_long_shebang_uses_sh_exec_trampoline(tmp_path: Path) -> None:
    art = tmp_path / "art" / "bin"
    write_script(art / "tool", f"#!{REAL_PYTHON}\nimport sys; print(sys.prefix)\n")
    farm = tmp_path / "farm"
    (farm / "bin").mkdir(parents=True)
    os.symlink(art / "tool", farm / "bin" / "tool")
    os.symlink(REAL_PYTHON, farm / "bin" / f"python{PYVER}")
    prefix = farm / ("x" * 120)
    rewrite_scripts(farm, prefix, PYVER)
    text = (farm / "bin/tool").read_text()
    assert text.startswith("#!/bin/sh\n'''exec' ")
    # it really runs (through sh) with the long interpreter path
    os.symlink(farm, prefix)
    assert run([str(farm / "bin/tool")], env={"PATH": "/usr/bin:/bin"}).strip() != ""


def test_two_python_versions_are_refused(tmp_path: Path) -> None:
    for name, ver in (("a", "3.10"), ("b", "3.11")):
        write_script(tmp_path / name / "bin" / f"python{ver}", "")
    members = [Member("pya/1/aaaaaa", tmp_path / "a"), Member("pyb/1/bbbbbb", tmp_path / "b")]
    with pytest.raises(UserError, match="several Python versions"):
        single_python(members)
    assert single_python(members[:1]) == "3.10"
    assert single_python(members, exclude=["pya:bin/python3.10"]) == "3.11"

"""One hash carries a software state: export, then reproduce into an empty store.

The stack is real: Lua 5.4.4 from its upstream archive built with the host
gcc, the host Python, and the `packaging` wheel installed for it. The first
store gets sources from the offline mirror; every reproduction runs with no
mirror and source URLs that cannot be reached, so only the bundle can supply
what it needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_SOURCES, Runner, require, require_tool

PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"
REAL_PYTHON = os.path.realpath(sys.executable)
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: no network

STACK = f"""
[stack]
name = "repro"

[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar", "ranlib"]
family = "compiler"

[host.python]
programs = ["{REAL_PYTHON}"]

[packages.lua]
version = "5.4.4"
sources = [{{ url = "{DEAD}/lua-5.4.4.tar.gz", sha256 = "164c7849653b80ae67bec4b7473b884bf5cc8d2dca05653475ec2ed27b9ebf61", strip = 1 }}]
build-deps = ["gcc"]
script = '''
make -j"$HDENV_JOBS" linux
make install INSTALL_TOP="$PREFIX"
'''

[packages.packaging]
version = "24.1"
sources = [{{ url = "{DEAD}/packaging-24.1-py3-none-any.whl", sha256 = "5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124" }}]
deps = ["python"]
script = '''
site="$PREFIX/lib/python{PYVER}/site-packages"
mkdir -p "$site"
cp -R packaging packaging-24.1.dist-info "$site/"
'''

[profiles.repro]
packages = ["lua", "packaging", "python"]
"""


def line_of(stdout: str) -> tuple[str, str]:
    name, hash_ = stdout.split()
    return name, hash_


def check_profile(prefix: Path) -> None:
    """Lua runs, the profile's Python imports the package from inside this store."""
    env = {"PATH": "/usr/bin:/bin"}
    lua = subprocess.run([str(prefix / "bin" / "lua"), "-e", "print(6*7)"], capture_output=True,
                         text=True, env=env)
    assert lua.stdout == "42\n", lua.stderr
    # -B: as root, Python would write __pycache__ into the read-only artifact (verify sees it)
    py = subprocess.run([str(prefix / "bin" / f"python{PYVER}"), "-B", "-c",
                         "import packaging, sys; print(packaging.__version__, packaging.__file__)"],
                        capture_output=True, text=True, env=env)
    assert py.returncode == 0, py.stderr
    version, where = py.stdout.split()
    assert version == "24.1"
    assert where.startswith(str(prefix)), where


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, hdenv_exe_module: str) -> dict[str, Any]:
    """Store A built from the mirror, and its bundles (sources; artifacts)."""
    require((SHARED_SOURCES / "lua-5.4.4.tar.gz").is_file(), "lua is missing from the mirror")
    require_tool("gcc")
    work = tmp_path_factory.mktemp("repro")
    (work / "none.toml").write_text("")
    env = {**os.environ, "HDENV_CONFIG": str(work / "none.toml"), "HDENV_JOBS": "2",
           "HDENV_STORE": str(work / "store-a-with-a-much-longer-root-for-relocation"),
           "HDENV_MIRRORS": str(SHARED_SOURCES)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([hdenv_exe_module, *args], env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc

    stack = work / "repro.toml"
    stack.write_text(STACK)
    name, hash_ = line_of(run("build", str(stack)).stdout)
    sources = work / "bundles"
    sources.mkdir()
    with_sources = Path(run("export", name, "-o", str(sources), "--with-sources").stdout.strip())
    assert with_sources == sources / f"{hash_}.tar"
    (work / "full").mkdir()
    with_artifacts = Path(run("export", hash_, "-o", str(work / "full"),
                              "--with-artifacts").stdout.strip())
    return {"work": work, "hash": hash_, "name": name, "sources": with_sources,
            "artifacts": with_artifacts, "store": Path(env["HDENV_STORE"])}


@pytest.fixture(scope="module")
def hdenv_exe_module() -> str:
    return str(Path(sys.executable).parent / "hdenv")


@pytest.mark.slow
def test_reproduce_from_a_bundle_with_sources_builds_the_same_hash(
        exported: dict[str, Any], run_hdenv: Runner, tmp_path: Path) -> None:
    with tarfile.open(exported["sources"]) as tar:
        names = tar.getnames()
    assert names[0] == "hdenv-bundle.json"
    assert any(n.startswith("specs/") for n in names)
    assert len([n for n in names if n.startswith("sources/sha256/")]) == 2
    store = tmp_path / "empty"
    proc = run_hdenv("reproduce", str(exported["sources"]), env={"HDENV_STORE": str(store)})
    assert proc.returncode == 0, proc.stderr
    assert line_of(proc.stdout) == (exported["name"], exported["hash"])
    assert "built lua (" in proc.stderr and "fetching" not in proc.stderr
    check_profile(store / "profiles" / exported["hash"])
    assert run_hdenv("verify", env={"HDENV_STORE": str(store)}).returncode == 0
    # the reproduced store can export the same state again
    again = run_hdenv("export", exported["name"], "-o", str(tmp_path / "again.tar"),
                      env={"HDENV_STORE": str(store)})
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_reproduce_with_artifacts_runs_no_build_script(
        exported: dict[str, Any], run_hdenv: Runner, tmp_path: Path) -> None:
    store = tmp_path / "s"  # shorter than store A's root: relocated on arrival
    proc = run_hdenv("reproduce", str(exported["artifacts"]), "--name", "mine",
                     env={"HDENV_STORE": str(store)})
    assert proc.returncode == 0, proc.stderr
    assert line_of(proc.stdout) == ("mine", exported["hash"])
    assert "building" not in proc.stderr and "0 built" in proc.stderr
    assert "installed lua/5.4.4/" in proc.stderr
    assert not (store / "logs").exists() or not os.listdir(store / "logs")
    assert not any(a.startswith("gcc") for a in os.listdir(store / "artifacts"))
    check_profile(store / "profiles" / exported["hash"])
    assert run_hdenv("verify", env={"HDENV_STORE": str(store)}).returncode == 0


@pytest.mark.slow
def test_a_changed_byte_in_a_spec_is_refused(exported: dict[str, Any], run_hdenv: Runner,
                                             tmp_path: Path) -> None:
    data = bytearray(exported["sources"].read_bytes())
    with tarfile.open(exported["sources"]) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("specs/")
                      and b'"name":"lua"' in tar.extractfile(m).read())  # type: ignore[union-attr]
    lua_hash = member.name.split("/")[1].split(".")[0]
    start = member.offset_data
    at = data.index(b"make install", start)
    data[at] = ord("M")  # one byte of lua's build script
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bytes(data))
    store = tmp_path / "untouched"
    proc = run_hdenv("reproduce", str(tampered), env={"HDENV_STORE": str(store)})
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("hdenv: error:") and f"lua/5.4.4/{lua_hash}" in line
    assert "does not hash" in line
    assert not (store / "artifacts").exists() or not os.listdir(store / "artifacts")
    assert not (store / "specs").exists() or not os.listdir(store / "specs")


@pytest.mark.slow
def test_reproduce_by_hash_from_a_store_a_directory_and_a_url(
        exported: dict[str, Any], run_hdenv: Runner, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    hash_ = exported["hash"]
    # another store: names work too, and its artifacts are packed across
    other = run_hdenv("reproduce", exported["name"], "--from", str(exported["store"]),
                      env={"HDENV_STORE": str(tmp_path / "a")})
    assert other.returncode == 0, other.stderr
    assert line_of(other.stdout) == (exported["name"], hash_)
    assert "0 built" in other.stderr
    # a directory of bundles (the one with artifacts: nothing to build)
    bydir = run_hdenv("reproduce", hash_[:10], "--from", str(exported["artifacts"].parent),
                      env={"HDENV_STORE": str(tmp_path / "b")})
    assert bydir.returncode == 0, bydir.stderr
    assert line_of(bydir.stdout)[1] == hash_
    # a URL prefix serving that directory
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(exported["artifacts"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        byurl = run_hdenv("reproduce", hash_, "--from", url,
                          env={"HDENV_STORE": str(tmp_path / "b")})
        assert byurl.returncode == 0, byurl.stderr
        assert line_of(byurl.stdout)[1] == hash_
        missing = run_hdenv("reproduce", "a" * 32, "--from", url,
                            env={"HDENV_STORE": str(tmp_path / "c")})
        assert missing.returncode == 2 and "HTTP 404" in missing.stderr
    finally:
        server.shutdown()
        server.server_close()
    check_profile(tmp_path / "b" / "profiles" / hash_)

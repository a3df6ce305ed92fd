"""Explaining differences between specs, artifacts and profiles; DOT graphs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hdenv.errors import UserError
from hdenv.profile.profiles import create_profile, profile_spec, set_current
from hdenv.profile.specdiff import diff, graph_dot, spec_diff
from hdenv.store.artifacts import install_artifact
from hdenv.store.layout import Store

KEY_A = "sha256:" + "a" * 64
KEY_B = "sha256:" + "b" * 64


def install(store: Store, spec: dict, runtime_deps: list[str] | None = None) -> str:
    name = spec["name"]

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        (prefix / "share" / name).mkdir(parents=True)
        (prefix / "share" / name / "marker").write_text(str(spec))

    return install_artifact(store, spec, populate, runtime_deps=runtime_deps or [])[0]


def build(name: str, *, key: str = KEY_A, deps: list[str] | None = None,
          build_deps: list[str] | None = None, cflags: str = "-O2",
          script: str = "make\nmake install\n") -> dict:
    return {"kind": "build", "name": name, "version": "1.0",
            "sources": [{"key": key, "strip": 1, "target": ""}],
            "deps": sorted(deps or []), "build_deps": sorted(build_deps or []),
            "env": {"CFLAGS": cflags}, "script": script}


def host_gcc(sha: str) -> dict:
    return {"kind": "host", "name": "gcc", "version": "12.2.0", "family": "compiler",
            "programs": {"gcc": {"path": "/usr/bin/gcc-12", "sha256": sha, "version": "gcc 12"}}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").ensure()


def stack(store: Store, *, zkey: str, cflags: str, gsha: str,
          extra: bool = False) -> dict[str, str]:
    gcc = install(store, host_gcc(gsha))
    zlib = install(store, build("zlib", key=zkey, build_deps=[gcc]))
    app = install(store, build("app", deps=[zlib], build_deps=[gcc], cflags=cflags), [zlib])
    ids = {"gcc": gcc, "zlib": zlib, "app": app}
    if extra:
        ids["tool"] = install(store, build("tool"))
    return ids


def test_spec_diff_names_fields() -> None:
    a = build("app", cflags="-O2")
    b = build("app", cflags="-O3", key=KEY_B, script="make -j4\nmake install\n")
    lines = spec_diff(a, b)
    assert "env.CFLAGS '-O2' -> '-O3'" in lines
    assert "sources[0].key sha256:aaaaaaaaaaaa.. -> sha256:bbbbbbbbbbbb.." in lines
    assert "script line 1: 'make' -> 'make -j4'" in lines
    assert spec_diff(a, a) == []


def test_an_inserted_script_line_is_one_change_not_every_later_line() -> None:
    script = "".join(f"step {i}\n" for i in range(1, 9))
    a = build("app", script=script)
    b = build("app", script="set -e\n" + script)
    assert spec_diff(a, b) == ["script line 1 added: 'set -e'"]
    c = build("app", script=script.replace("step 4\n", "").replace("step 7", "step seven"))
    assert spec_diff(a, c) == ["script line 4 removed: 'step 4' (+1 more changed lines)"]


def test_an_inserted_source_is_one_addition() -> None:
    a = build("app", key=KEY_A)
    b = build("app", key=KEY_A)
    extra = {"key": KEY_B, "strip": 0, "target": "vendor"}
    b["sources"] = [extra, *b["sources"]]
    assert spec_diff(a, b) == [
        'sources[0] added {"key": "' + KEY_B + '", "strip": 0, "target": "vendor"}']


def test_spec_diff_pairs_dependencies_by_name() -> None:
    z1, z2 = "zlib/1.2.13/" + "c" * 32, "zlib/1.2.13/" + "d" * 32
    ssl = "openssl/3.0/" + "e" * 32
    lines = spec_diff(build("app", deps=[z1]), build("app", deps=[z2, ssl]))
    assert lines == [f"dep added {ssl[:-24]}..",
                     f"dep zlib/1.2.13/{'c' * 8}.. -> zlib/1.2.13/{'d' * 8}.."]


def test_artifact_diff_follows_changed_dependencies(store: Store) -> None:
    old = stack(store, zkey=KEY_A, cflags="-O2", gsha="1" * 64)
    new = stack(store, zkey=KEY_B, cflags="-O3", gsha="1" * 64)
    lines = diff(store, old["app"], new["app"])
    assert "app: env.CFLAGS '-O2' -> '-O3'" in lines
    (dep_line,) = [x for x in lines if " dep " in x]
    assert dep_line == (f"app: dep zlib/1.0/{old['zlib'].split('/')[2][:8]}.. -> "
                        f"zlib/1.0/{new['zlib'].split('/')[2][:8]}.. "
                        "(zlib: sources[0].key sha256:aaaaaaaaaaaa.. -> sha256:bbbbbbbbbbbb..)")
    assert diff(store, old["app"], old["app"]) == []


def test_host_upgrade_is_explained_two_levels_down(store: Store) -> None:
    old = stack(store, zkey=KEY_A, cflags="-O2", gsha="1" * 64)
    new = stack(store, zkey=KEY_A, cflags="-O2", gsha="2" * 64)
    lines = diff(store, old["app"], new["app"])
    text = "\n".join(lines)
    assert "app: build dep gcc/12.2.0/" in text
    assert "(gcc: programs.gcc.sha256 '" + "1" * 64 + "' -> '" + "2" * 64 + "')" in text
    # zlib changed only because gcc did; that too is explained, inside app's dep line
    assert re.search(r"app: dep zlib/1\.0/\w{8}\.\. -> zlib/1\.0/\w{8}\.\. "
                     r"\(zlib: build dep gcc/12\.2\.0/", text)


def test_profile_diff(store: Store) -> None:
    old = stack(store, zkey=KEY_A, cflags="-O2", gsha="1" * 64)
    new = stack(store, zkey=KEY_A, cflags="-O3", gsha="1" * 64, extra=True)
    pa = create_profile(store, profile_spec([old["app"], old["zlib"], old["gcc"]], {}, None))
    pb = create_profile(store, profile_spec([new["app"], new["zlib"], new["tool"]],
                                            {"X": "@@HDENV_PROFILE@@/x"}, "compiler"))
    set_current(store, "demo", pa.name)
    lines = diff(store, "demo", pb.name[:10])
    assert lines[0].startswith(f"profile {pa.name[:8]}.. -> {pb.name[:8]}..: 1 changed, 1 added, "
                               "1 removed")
    assert any(x.startswith("changed app/1.0/") for x in lines)
    assert "  app: env.CFLAGS '-O2' -> '-O3'" in lines
    assert f"added {new['tool']}" in lines
    assert f"removed {old['gcc']}" in lines
    assert "profile env.X added '@@HDENV_PROFILE@@/x'" in lines
    assert "profile family null -> 'compiler'" in lines
    with pytest.raises(UserError, match="cannot compare"):
        diff(store, "demo", old["app"])


def test_graph_dot(store: Store) -> None:
    ids = stack(store, zkey=KEY_A, cflags="-O2", gsha="1" * 64)
    prof = create_profile(store, profile_spec([ids["app"], ids["zlib"]], {}, None))
    set_current(store, "demo", prof.name)
    dot = graph_dot(store, "demo")
    assert dot.startswith("digraph hdenv {") and dot.rstrip().endswith("}")
    q = '"{}"'.format
    assert f"{q(ids['app'])} -> {q(ids['zlib'])};" in dot
    assert f"{q(ids['app'])} -> {q(ids['gcc'])} [style=dashed];" in dot
    assert f"{q(ids['zlib'])} -> {q(ids['gcc'])} [style=dashed];" in dot
    root = q("profile:" + prof.name)
    assert f"{root} -> {q(ids['app'])};" in dot
    assert f"{root} -> {q(ids['zlib'])};" not in dot  # reached through app
    assert "label=\"app/1.0\\n" in dot
    assert dot.count("fillcolor=lightgrey") == 1  # the host gcc
    single = graph_dot(store, ids["zlib"])
    assert "profile:" not in single and q(ids["app"]) not in single
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=dot, text=True, check=True, capture_output=True)


def test_cli_diff_and_graph(store: Store) -> None:
    old = stack(store, zkey=KEY_A, cflags="-O2", gsha="1" * 64)
    new = stack(store, zkey=KEY_A, cflags="-O3", gsha="1" * 64)
    exe = Path(sys.executable).with_name("hdenv")
    env = {**os.environ, "HDENV_STORE": str(store.root)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env)

    out = run("diff", old["app"], new["app"])
    assert out.returncode == 0 and out.stdout == "app: env.CFLAGS '-O2' -> '-O3'\n"
    same = run("diff", old["app"], old["app"])
    assert same.returncode == 0 and same.stdout == "" and "identical" in same.stderr
    assert run("diff", "--exit-code", old["app"], new["app"]).returncode == 1
    assert run("diff", "--exit-code", old["app"], old["app"]).returncode == 0
    graph = run("graph", new["app"])
    assert graph.returncode == 0 and graph.stdout.startswith("digraph hdenv {")
    unknown = run("graph", "nosuchname")
    assert unknown.returncode == 2 and unknown.stderr.startswith("hdenv: error: unknown REF")

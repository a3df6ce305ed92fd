"""Bundles: what export writes, and everything a hostile or damaged bundle may try.

A small real stack (two script-only packages, one with a local source) is
built with `hdenv build`; the bundles are then edited byte by byte.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Runner

from hdenv.errors import UserError
from hdenv.exchange.bundle import TarBundle
from hdenv.store.hashing import canonical_json, spec_hash

STACK = """
[packages.base]
version = "1"
sources = [{ path = "src" }]
script = 'mkdir -p "$PREFIX/share" && cp data.txt "$PREFIX/share/"'

[packages.app]
version = "2"
deps = ["base"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\ncat %s/share/data.txt\\n' "$HDENV_DEP_BASE" > "$PREFIX/bin/app"
chmod +x "$PREFIX/bin/app"
'''
"""


@pytest.fixture
def built(run_hdenv: Runner, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.txt").write_text("from the source\n")
    stack = tmp_path / "small.toml"
    stack.write_text(STACK)
    name, hash_ = run_hdenv("build", str(stack), check=True).stdout.split()
    bundle = tmp_path / "small.tar"
    run_hdenv("export", name, "-o", str(bundle), "--with-sources", check=True)
    return {"name": name, "hash": hash_, "bundle": bundle}


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def write_tar(path: Path, files: list[tuple[str, bytes]],
              extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return path


def test_manifest_names_roots_nodes_hints_and_host(built: dict[str, Any]) -> None:
    files = members(built["bundle"])
    manifest = json.loads(files["hdenv-bundle.json"])
    assert manifest["format"] == 1
    assert manifest["roots"] == [{"kind": "profile", "hash": built["hash"], "name": "small",
                                  "generation": 1}]
    nodes = manifest["nodes"]
    app = next(n for n in nodes.values() if n.get("id", "").startswith("app/2/"))
    assert any(r.startswith("base/1/") for r in app["references"])
    base = next(n for n in nodes.values() if n.get("id", "").startswith("base/1/"))
    (source,) = base["sources"]
    assert source["file"] == "sources/sha256/" + source["key"].split(":")[1]
    assert source["file"] in files
    assert {"os", "kernel", "cpu", "libc", "compilers"} <= set(manifest["host"])
    for h in nodes:  # every spec byte for byte, and each hashes to its name
        assert spec_hash(json.loads(files[f"specs/{h}.json"])) == h


def test_reproduce_in_another_store_and_sources_come_from_the_bundle(
        built: dict[str, Any], run_hdenv: Runner, tmp_path: Path) -> None:
    store = tmp_path / "second"
    proc = run_hdenv("reproduce", str(built["bundle"]), "--name", "again",
                     env={"HDENV_STORE": str(store)}, check=True)
    assert proc.stdout.split() == ["again", built["hash"]]
    out = os.popen(f"{store}/profiles/{built['hash']}/bin/app").read()
    assert out == "from the source\n"
    # reproducing again is a no-op that keeps the generation
    again = run_hdenv("reproduce", str(built["bundle"]), "--name", "again",
                      env={"HDENV_STORE": str(store)}, check=True)
    assert "0 built" in again.stderr and "generation" not in again.stderr
    # and the store now has the specs: its own hash reproduces without a bundle
    own = run_hdenv("reproduce", built["hash"], "--name", "third",
                    env={"HDENV_STORE": str(store)}, check=True)
    assert own.stdout.split() == ["third", built["hash"]]


def test_a_source_whose_bytes_do_not_match_is_refused(built: dict[str, Any],
                                                      run_hdenv: Runner, tmp_path: Path) -> None:
    files = members(built["bundle"])
    src = next(n for n in files if n.startswith("sources/"))
    files[src] = files[src].replace(b"from the source", b"from a stranger")
    bad = write_tar(tmp_path / "bad.tar", list(files.items()))
    proc = run_hdenv("reproduce", str(bad), env={"HDENV_STORE": str(tmp_path / "s")})
    assert proc.returncode == 2
    assert "hash mismatch" in proc.stderr and src.split("/")[-1] in proc.stderr
    assert not (tmp_path / "s" / "src" / "sha256").exists() or \
        not os.listdir(tmp_path / "s" / "src" / "sha256")


def test_hostile_and_damaged_bundles_are_one_line_errors(built: dict[str, Any],
                                                         run_hdenv: Runner,
                                                         tmp_path: Path) -> None:
    files = members(built["bundle"])
    manifest = json.loads(files["hdenv-bundle.json"])
    spec_name = next(n for n in files if n.startswith("specs/") and n != f"specs/{built['hash']}.json")
    cases: dict[str, Path] = {}
    cases["not a readable bundle"] = tmp_path / "junk.tar"
    cases["not a readable bundle"].write_bytes(b"this is not a tar file at all" * 30)
    cases["appears twice"] = write_tar(tmp_path / "dup.tar", [*files.items(),
                                                              (spec_name, files[spec_name])])
    link = tarfile.TarInfo(f"specs/{built['hash']}.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    without_root = [(n, d) for n, d in files.items() if n != f"specs/{built['hash']}.json"]
    cases["has no spec for its root"] = write_tar(tmp_path / "link.tar", without_root, [link])
    cases["needs"] = write_tar(tmp_path / "hole.tar",
                               [(n, d) for n, d in files.items() if n != spec_name])
    future = {**manifest, "format": 99}
    cases["format 99 is not supported"] = write_tar(
        tmp_path / "future.tar", [("hdenv-bundle.json", json.dumps(future).encode()),
                                  *((n, d) for n, d in files.items() if n.startswith("specs/"))])
    cases["not valid JSON"] = write_tar(
        tmp_path / "badjson.tar", [("hdenv-bundle.json", b"{" * 100000),
                                   *((n, d) for n, d in files.items() if n != "hdenv-bundle.json")])
    whole = built["bundle"].read_bytes()
    cases["truncated"] = tmp_path / "cut.tar"
    cases["truncated"].write_bytes(whole[:len(whole) // 2 + 100])
    cases["no hdenv-bundle.json"] = write_tar(tmp_path / "escape.tar", [("../../x", b"x")])
    for expected, path in cases.items():
        proc = run_hdenv("reproduce", str(path), env={"HDENV_STORE": str(tmp_path / "s")})
        assert proc.returncode == 2, (expected, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("hdenv: error:"), proc.stderr
        assert expected in lines[0], (expected, lines[0])
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "x").exists()
    assert not (tmp_path / "s" / "artifacts").exists() or \
        not os.listdir(tmp_path / "s" / "artifacts")


def test_a_spec_renamed_under_another_id_is_refused(tmp_path: Path) -> None:
    """A reference must name the spec it points at: hashes alone are not enough."""
    base = {"kind": "build", "name": "base", "version": "1", "sources": [], "deps": [],
            "build_deps": [], "env": {}, "script": ""}
    bh = spec_hash(base)
    app = {**base, "name": "app", "deps": [f"evil/1/{bh}"]}
    ah = spec_hash(app)
    manifest = {"format": 1, "roots": [{"kind": "artifact", "hash": ah}], "nodes": {}}
    path = write_tar(tmp_path / "b.tar", [
        ("hdenv-bundle.json", json.dumps(manifest).encode()),
        (f"specs/{bh}.json", canonical_json(base)), (f"specs/{ah}.json", canonical_json(app))])
    with pytest.raises(UserError, match=f"names evil/1/{bh}, but spec {bh} is base/1/{bh}"):
        TarBundle(path)


def test_export_to_a_directory_and_errors(built: dict[str, Any], run_hdenv: Runner,
                                          tmp_path: Path, store_dir: Path) -> None:
    out = tmp_path / "dir"
    out.mkdir()
    proc = run_hdenv("export", "small", "-o", str(out), check=True)
    assert proc.stdout.strip() == str(out / f"{built['hash']}.tar")
    assert "0 source(s)" in proc.stderr
    bad = run_hdenv("export", "nosuch", "-o", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("hdenv: error: unknown REF")
    os.unlink(next(p for p in (store_dir / "specs").glob("*.json")
                   if p.stem != built["hash"] and "hints" not in p.name
                   and b'"name":"base"' in p.read_bytes()))
    broken = run_hdenv("export", "small", "-o", str(tmp_path / "x.tar"))
    assert broken.returncode == 2 and "cannot export" in broken.stderr
    assert not (tmp_path / "x.tar").exists()

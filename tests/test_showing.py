"""`hdenv show` (shell/showing.py, showtext.py): the shell function answers it on its fast
path exactly as the full program does, for profiles and for packages by name (the build
`load NAME` would take), in bash, zsh, fish and tcsh (issues 22 and 25)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from test_finding import _setup
from test_shell_function import HDENV

from hdenv.shell import showing
from hdenv.store.layout import Store

STATUS = {"bash": "$?", "zsh": "$?", "fish": "$status", "tcsh": "$status"}
SOURCE = {"bash": ". {}", "zsh": "source {}", "fish": "source {}", "tcsh": "source {}"}
FLAGS = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"],
         "tcsh": ["-f"]}


@pytest.mark.parametrize("shell", sorted(STATUS))
def test_the_function_answers_show_as_the_full_program(shell: str, tmp_path: Path) -> None:
    """Profiles (name, NAME/N, hash, prefix), a package by name, NAME/VERSION, an artifact
    id, --json, and errors: the same words, errors and exit codes both ways."""
    exe = require_tool(shell)
    store, env, _bash_init = _setup(tmp_path)
    init = Path(subprocess.run([HDENV, "init", shell, "--write"], env=env, capture_output=True,
                               text=True, check=True).stdout.strip())
    profile = Store(store).resolve("science").ident
    (zlibby,) = [a for a in Store(store).list_artifacts() if a.startswith("zlibby/")]
    for words in (["science"], ["science/1"], [profile], [profile[:8]], ["zlibby"],
                  ["zlibby/1.3"], [zlibby], ["tool"], ["science", "--json"], ["nosuch"],
                  ["science/7"], ["science", "extra"], ["--json"]):
        script = tmp_path / f"show.{shell}"
        script.write_text(f"{SOURCE[shell].format(init)}\nhdenv show {' '.join(words)}\n"
                          f"echo rc={STATUS[shell]}\n")
        via_function = subprocess.run([exe, *FLAGS[shell], str(script)], env=env,
                                      capture_output=True, text=True, timeout=120, cwd=tmp_path)
        full = subprocess.run([HDENV, "show", *words], env=env, capture_output=True, text=True)
        assert (via_function.stdout, via_function.stderr) == (
            f"{full.stdout}rc={full.returncode}\n", full.stderr), words
        if words == ["zlibby"]:  # the build `load zlibby` takes, not a profile
            assert full.returncode == 0 and full.stdout.startswith(f"{zlibby}: A tiny")


def fast_show(store: Path, ref: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The shell function's program for `show REF`, and what it imported."""
    from hdenv.shell import shellcmd

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-I", "-S", "-c", shellcmd.FAST_CODE,
         shellcmd.libdir(), "bash", "/nonexistent/config.toml", str(store), "show", ref],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    return proc, imported


def test_show_takes_the_fast_path_without_the_heavy_modules(tmp_path: Path) -> None:
    """`show` on the function's path prints itself (no exec of the full program) and
    imports none of the load path's heavy modules but `os` (store.index, as whatis)."""
    from test_fastload import HEAVY

    store, env, _init = _setup(tmp_path)
    for ref in ("science", "zlibby"):
        proc, imported = fast_show(store, ref)
        full = subprocess.run([HDENV, "show", ref], env=env, capture_output=True, text=True)
        assert (proc.returncode, proc.stdout) == (0, full.stdout), proc.stderr
        assert "hdenv.sanitize" in imported, "formatted by the full program, not here"
        for heavy in (*HEAVY, "json", "pathlib", "hdenv.cli", "hdenv.profile"):
            if heavy not in ("os", "hdenv.store"):
                assert heavy not in imported, (ref, heavy)


def test_profile_facts(tmp_path: Path) -> None:
    """A profile's facts by name and by hash prefix: generations only by name, its names."""
    store, _env, _init = _setup(tmp_path)
    roots = [str(store)]
    named = showing.find(roots, "science", os.environ)
    assert named is not None and named.name == "science"
    info: dict[str, Any] = showing.info(roots, named)
    assert info["name"] == "science" and info["size"] > 0 and info["upstream"] is None
    assert [(g["number"], g["current"]) for g in info["generations"]] == [(1, True)]
    by_hash = showing.find(roots, named.ident[:8], os.environ)
    assert by_hash is not None and by_hash.name is None
    facts = showing.info(roots, by_hash)
    assert "generations" not in facts
    assert facts["names"] == [{"name": "science", "generation": 1, "current": True}]
    package = showing.find(roots, "zlibby", os.environ)
    assert package is not None and package.kind == "artifact"
    assert showing.find(roots, "nosuch", os.environ) is None  # the full program words it
    assert json.loads(json.dumps(showing.info(roots, package)))["id"] == package.ident


def test_upstream_profiles_and_packages_as_the_full_program(tmp_path: Path) -> None:
    """A profile and a package of an upstream store (`upstreams` in config.toml): the
    `upstream:` line and the paths there, the same both ways."""
    from test_finding import THEIRS, _build
    from test_shell_function import bash

    store, env, init = _setup(tmp_path)
    theirs = tmp_path / "theirs"
    _build(theirs, tmp_path, THEIRS, "theirs.toml")
    (tmp_path / "none.toml").write_text(f"upstreams = ['{theirs}']\n")
    for words in (["theirs"], ["theirs/1"], ["theirpkg"], ["science"], ["zlibby"]):
        via_function = bash(f". {init}\nhdenv show {' '.join(words)}", env, tmp_path)
        full = subprocess.run([HDENV, "show", *words], env=env, capture_output=True, text=True)
        assert (via_function.returncode, via_function.stdout, via_function.stderr) == (
            full.returncode, full.stdout, full.stderr), words
        assert full.returncode == 0, full.stderr
        if words == ["theirs"]:
            assert f"upstream: {theirs} (read-only)\n" in full.stdout, full.stdout

"""Host drift: a bundle made where gcc reported another version stops `reproduce`.

A fake gcc (a script reporting version 99.x that hands everything else to the
real one) plays the exporting machine's compiler; changing or removing it
plays the maintainer's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Runner, require_tool

STACK = """
[host.gcc]
programs = ["gcc"]
family = "compiler"

[packages.tool]
version = "1"
build-deps = ["gcc"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho tool ok\\n' > "$PREFIX/bin/tool"
chmod +x "$PREFIX/bin/tool"
'''
"""


def fake_gcc(directory: Path, version: str) -> None:
    real = require_tool("gcc")
    directory.mkdir(exist_ok=True)
    gcc = directory / "gcc"
    gcc.write_text(f'#!/bin/sh\ncase "$1" in --version) echo "gcc (Fake) {version}";'
                   f' exit 0;; esac\nexec {real} "$@"\n')
    gcc.chmod(0o755)


@pytest.fixture
def bundle(run_hdenv: Runner, tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fakebin"
    fake_gcc(fake, "99.1.0")
    path = f"{fake}:{os.environ['PATH']}"
    stack = tmp_path / "drift.toml"
    stack.write_text(STACK)
    name, hash_ = run_hdenv("build", str(stack), env={"PATH": path}, check=True).stdout.split()
    out = tmp_path / "drift.tar"
    run_hdenv("export", name, "-o", str(out), env={"PATH": path}, check=True)
    return {"name": name, "hash": hash_, "bundle": str(out), "fake": str(fake), "path": path}


def test_other_gcc_version_stops_reproduce_with_both_versions(
        bundle: dict[str, str], run_hdenv: Runner, tmp_path: Path) -> None:
    fake_gcc(Path(bundle["fake"]), "99.2.0")  # the same path reports another version here
    store = tmp_path / "other"
    proc = run_hdenv("reproduce", bundle["bundle"], env={"HDENV_STORE": str(store),
                                                         "PATH": bundle["path"]})
    assert proc.returncode == 1, proc.stderr
    assert "gcc (Fake) 99.1.0" in proc.stderr and "gcc (Fake) 99.2.0" in proc.stderr
    assert "--allow-host-drift" in proc.stderr
    assert not (store / "artifacts").exists() or not os.listdir(store / "artifacts")


def test_missing_gcc_path_shows_what_gcc_is_here_and_drift_can_be_allowed(
        bundle: dict[str, str], run_hdenv: Runner, tmp_path: Path) -> None:
    os.rename(bundle["fake"], bundle["fake"] + ".gone")  # the other machine has no such gcc
    store = tmp_path / "other"
    proc = run_hdenv("reproduce", bundle["bundle"], env={"HDENV_STORE": str(store)})
    assert proc.returncode == 1
    here = run_hdenv("host", "capture", "probe", "gcc", env={"HDENV_STORE": str(tmp_path / "p")},
                     check=True).stdout.split("/")[1]
    assert "gcc (Fake) 99.1.0" in proc.stderr and "is missing" in proc.stderr
    assert here in proc.stderr  # the real gcc's version, e.g. 12.2.0
    allowed = run_hdenv("reproduce", bundle["bundle"], "--allow-host-drift",
                        env={"HDENV_STORE": str(store)})
    assert allowed.returncode == 0, allowed.stderr
    name, hash_ = allowed.stdout.split()
    assert name == bundle["name"] and hash_ != bundle["hash"]
    assert f"not the reported {bundle['hash']}" in allowed.stderr
    assert (store / "profiles" / hash_ / "bin" / "tool").is_file()


def test_verify_reports_host_drift(bundle: dict[str, str], run_hdenv: Runner) -> None:
    assert run_hdenv("verify").returncode == 0
    fake_gcc(Path(bundle["fake"]), "99.3.0")
    proc = run_hdenv("verify")
    assert proc.returncode == 1
    (line,) = [x for x in proc.stdout.splitlines() if "host drift" in x]
    assert line.startswith("gcc/99.1.0/") and "99.1.0" in line and "99.3.0" in line
    report = run_hdenv("report", bundle["name"], check=True).stdout
    assert "DRIFT" in report and "99.3.0" in report


def test_host_drift_compares_what_the_spec_holds(tmp_path: Path) -> None:
    """Versions always; bytes only where the id covers them (host-identity = "content")."""
    from hdenv.build import host
    from hdenv.provenance.drift import host_drift
    from hdenv.store.layout import Store

    store = Store(tmp_path / "store")
    prog = tmp_path / "bin" / "tool"
    prog.parent.mkdir()
    prog.write_text('#!/bin/sh\necho "tool 1.0"\n')
    prog.chmod(0o755)
    spec = host.host_spec(store, "tool", [str(prog)])
    assert host_drift(store, spec) == []
    prog.write_text('#!/bin/sh\necho "tool 1.0" # same version, other bytes\n')
    assert host_drift(store, spec) == []
    strict = host.host_spec(store, "tool", [str(prog)], identity="content")
    prog.write_text('#!/bin/sh\necho "tool 1.0"\n')
    (bytes_,) = host_drift(store, strict)
    assert "sha256" in bytes_.line() and "same version output" in bytes_.line()
    prog.write_text('#!/bin/sh\necho "tool 2.0"\n')
    (version,) = host_drift(store, spec)
    assert "tool 1.0" in version.line() and "tool 2.0" in version.line()
    prog.unlink()
    assert "is missing" in host_drift(store, spec)[0].line()


def test_a_malformed_host_spec_is_one_drift_line_not_an_internal_error(tmp_path: Path) -> None:
    """A bundle's spec is checked against its hash, which says nothing of its shape."""
    from hdenv.provenance.drift import host_drift
    from hdenv.store.layout import Store

    store = Store(tmp_path / "store")
    for bad in ({"name": "cc", "programs": ["gcc"]},
                {"name": "cc", "programs": {"gcc": "/usr/bin/gcc"}, "libraries": 7}):
        lines = [d.line() for d in host_drift(store, bad)]
        assert lines and all("the host spec is malformed" in line for line in lines), lines

"""Collections (issue 22 item 2): save, restore, savelist, describe, disable, pinned by hash.

Through the real shell function: a restore gives back the identical `env`,
still the old profiles after a rebuild, and today's with `--latest` (saying
what changed). Collections live under XDG_DATA_HOME, which the tests set.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from shellfixtures import build_profiles
from test_shell_function import HDENV, base_env, bash, write_init

PROFILES: dict[str, dict[str, object]] = {"demo": {"env": {"DEMO": "one"}},
                                          "other": {"env": {"OTHER": "1"}}}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "none.toml").write_text("")
    return tmp_path


@pytest.fixture
def store(home: Path) -> Path:
    root = home / "store"
    _build(root, home / "work1", PROFILES)
    _build(root, home / "work2", {**PROFILES, "demo": {"env": {"DEMO": "two"}}})
    return root


def _build(store: Path, work: Path, profiles: dict[str, dict[str, object]]) -> None:
    work.mkdir()
    build_profiles(store, work, profiles)


def _hash(store: Path, ref: str) -> str:
    return os.path.basename(os.path.realpath(store / "names" / ref))


def test_2_save_purge_restore_gives_the_identical_env(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    script = f""". {init}
dump() {{ env | grep -v '^_=' | sort > "$1"; }}
hdenv load demo/1 other
export MINE=kept
dump before.txt
hdenv save && hdenv save work
hdenv purge
dump purged.txt
hdenv restore
dump restored.txt
hdenv purge; hdenv restore work
dump work.txt
hdenv savelist; hdenv savelist -t; hdenv describe work
hdenv disable work; hdenv savelist -t
"""
    proc = bash(script, env, home)
    assert proc.returncode == 0, proc.stderr
    before = (home / "before.txt").read_text()
    assert "DEMO=one\n" in before and "OTHER=1\n" in before
    assert "DEMO=" not in (home / "purged.txt").read_text()
    assert (home / "restored.txt").read_text() == before
    assert (home / "work.txt").read_text() == before
    assert "Named collection list:\n  1) default\n  2) work\n" in proc.stdout
    assert "default\nwork\n" in proc.stdout and proc.stdout.endswith("default\n")
    assert f"  1) demo/1  {_hash(store, 'demo/1')}\n  2) other/1  {_hash(store, 'other/1')}\n" \
        in proc.stdout
    saved = home / "data" / "hdenv" / "collections" / "default.json"
    assert saved.is_file() and _hash(store, "demo/1") in saved.read_text()


def test_2_restore_after_a_rebuild_is_pinned_and_latest_moves(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    first = bash(f". {init}\nhdenv load demo other && hdenv save pinned", env, home)
    assert first.returncode == 0, first.stderr
    old = _hash(store, "demo/2")
    _build(store, home / "work3", {**PROFILES, "demo": {"env": {"DEMO": "three"}}})
    new = _hash(store, "demo/current")
    assert new != old
    script = f""". {init}
hdenv restore pinned; echo "pinned DEMO=$DEMO $HDENV_LOADED"
hdenv restore pinned --latest; echo "latest DEMO=$DEMO $HDENV_LOADED"
"""
    proc = bash(script, env, home)
    assert proc.returncode == 0, proc.stderr
    assert f"pinned DEMO=two demo/2:{old} other/1:" in proc.stdout
    assert f"latest DEMO=three demo/3:{new} other/1:" in proc.stdout
    assert f"demo: demo/2 -> demo/3 ({old[:8]} -> {new[:8]})" in proc.stderr


def test_2_restore_errors_are_one_line(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    proc = bash(f". {init}\nhdenv load demo; hdenv restore nosuch; echo rc=$? DEMO=$DEMO\n"
                "hdenv restore ../x; echo rc=$?\n", env, home)
    assert "rc=2 DEMO=two\n" in proc.stdout  # nothing changed
    assert "hdenv: error: no collection 'nosuch' (none saved yet (`hdenv save`))" in proc.stderr
    assert "rc=2\n" in proc.stdout.split("DEMO=two\n")[1]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


SHELLS = {  # shell: (startup file under HOME, script)
    "zsh": (".zshenv", "hdenv load demo/1\nhdenv save\nhdenv purge\nhdenv restore\n"
                       'echo "DEMO=$DEMO"\n'),
    "fish": ("config/fish/config.fish", "hdenv load demo/1\nhdenv save\nhdenv purge\n"
                                        'hdenv restore\necho "DEMO=$DEMO"\n'),
    "tcsh": (".tcshrc", "hdenv load demo/1\nhdenv save\nhdenv purge\nhdenv restore\n"
                        'echo "DEMO=$DEMO"\n'),
}


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_2_restore_in_other_shells(shell: str, store: Path, home: Path) -> None:
    exe = require_tool(shell)
    env = base_env(home, store)
    rc_name, script = SHELLS[shell]
    rc = home / rc_name
    rc.parent.mkdir(parents=True, exist_ok=True)
    rc.write_text(f"source {write_init(shell, env)}\n")
    if shell == "zsh":
        env["ZDOTDIR"] = str(home)
    (home / "job").write_text(script)
    proc = subprocess.run([exe, "job"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("DEMO=one\n"), (proc.stdout, proc.stderr)
    assert HDENV  # the program the function falls back to is this venv's


def test_2_restore_an_artifact_loaded_by_id(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    aid = next(line.split()[0] for line in subprocess.run(
        [HDENV, "list", "artifacts"], env=env, capture_output=True, text=True,
        check=True).stdout.splitlines() if line.startswith("pkg-other/"))
    script = f""". {init}
hdenv load {aid} demo/1 && hdenv save mixed && hdenv purge && hdenv restore mixed &&
hello-other && echo "LOADED=$HDENV_LOADED"
"""
    proc = bash(script, env, home)
    assert proc.returncode == 0, proc.stderr
    # an artifact loads as a package (its on-demand profile), and comes back as that build
    ref = aid.rpartition("/")[0]
    assert "hello from other\n" in proc.stdout and f"LOADED={ref}:" in proc.stdout, proc.stdout
    assert " demo/1:" in proc.stdout, proc.stdout

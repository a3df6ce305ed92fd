"""Drive each real shell step by step through the `hdenv` function.

Like virtualenv's activation tests: one script per shell dumps the
environment (as JSON, from a Python child) before, after load, after the user
edits PATH, after unload, and after load + purge; the test compares the dumps.
The store path contains spaces, quotes and `$`, and a profile variable holds a
hostile value, so quoting mistakes in any shell show up as a wrong dump.

The profiles are built for real by `hdenv build` from a generated stack file
(tests/shellfixtures.py), in a store whose path needs quoting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from shellfixtures import AWKWARD_DIR, HOSTILE, build_profiles

VENV_BIN = str(Path(sys.executable).parent)
SHELLS = ["bash", "zsh", "fish", "tcsh"]
# Variables a shell maintains itself; they differ between dumps for reasons
# that have nothing to do with hdenv.
VOLATILE = {"_", "SHLVL", "PWD", "OLDPWD", "COLUMNS", "LINES", "fish_pid"}
USER_DIR = "/user/added dir"

DUMP = "import json,os,sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


need = require_tool


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Real profiles, built by `hdenv build` into a store whose path needs quoting."""
    root = tmp_path / AWKWARD_DIR
    profiles: dict[str, dict[str, object]] = {
        "demo": {"env": {"DEMO_HOME": "{{ profile }}/share/demo", "HOSTILE": HOSTILE,
                         "EDITOR": "demo-editor"}},
        "other": {"env": {"OTHER": "1"}},
        "gcc": {"family": "compiler", "env": {"CC": "gcc"}},
        "clang": {"family": "compiler", "env": {"CC": "clang"}},
    }
    for i in range(5):
        profiles[f"many{i}"] = {"env": {f"MANY{i}": HOSTILE}}
    build_profiles(root, tmp_path, profiles)
    return root


def base_env(tmp_path: Path, store: Path) -> dict[str, str]:
    """A small, known environment: no MANPATH, a user-set EDITOR."""
    return {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "HDENV_STORE": str(store),
        "EDITOR": "vi",
    }


class Syntax:
    """The few lines the driver script needs, per shell."""

    def __init__(self, name: str):
        self.name = name

    def q(self, value: str) -> str:
        from hdenv.shell.quoting import get_shell

        return get_shell(self.name).quote(value)

    def init(self) -> str:
        return {
            "bash": 'eval "$(hdenv init bash)"',
            "zsh": 'eval "$(hdenv init zsh)"',
            "fish": "hdenv init fish | source",
            "tcsh": 'eval "`hdenv init tcsh`"',
        }[self.name]

    def status(self, label: str) -> str:
        var = "$status" if self.name in ("fish", "tcsh") else "$?"
        return f"echo {label}={var}"

    def prepend_path(self, entry: str) -> str:
        if self.name == "fish":
            return f"set -gx PATH {self.q(entry)} $PATH"
        if self.name == "tcsh":
            return f'setenv PATH {self.q(entry)}:"$PATH"'
        return f'export PATH={self.q(entry)}:"$PATH"'

    def dump(self, path: Path) -> str:
        return f"{self.q(sys.executable)} -c {self.q(DUMP)} {self.q(str(path))}"

    def command(self, shell_path: str, script: Path) -> list[str]:
        flags = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"],
                 "tcsh": ["-f"]}[self.name]
        return [shell_path, *flags, str(script)]


def run_script(shell: str, lines: list[str], tmp_path: Path, store: Path
               ) -> subprocess.CompletedProcess[str]:
    shell_path = need(shell)
    syn = Syntax(shell)
    script = tmp_path / f"drive.{shell}"
    script.write_text("\n".join([syn.init(), *lines]) + "\n", encoding="utf-8")
    return subprocess.run(syn.command(shell_path, script), env=base_env(tmp_path, store),
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def load_dump(path: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in VOLATILE}


@pytest.mark.parametrize("shell", SHELLS)
def test_load_edit_unload_purge_round_trip(shell: str, tmp_path: Path, store: Path) -> None:
    syn = Syntax(shell)
    d = {step: tmp_path / f"{step}.json" for step in
         ("before", "loaded", "edited", "unloaded", "purged", "many")}
    lines = [
        syn.dump(d["before"]),
        "hdenv load demo", syn.status("load"),
        syn.dump(d["loaded"]),
        syn.prepend_path(USER_DIR),
        syn.dump(d["edited"]),
        "hdenv unload demo", syn.status("unload"),
        syn.dump(d["unloaded"]),
        "hdenv load demo", "hdenv load other", "hdenv purge", syn.status("purge"),
        syn.dump(d["purged"]),
        "hdenv load many0 many1 many2 many3 many4", syn.status("many"),
        syn.dump(d["many"]),
        "hdenv purge",
    ]
    proc = run_script(shell, lines, tmp_path, store)
    assert proc.returncode == 0, proc.stderr
    for step in ("load", "unload", "purge", "many"):
        assert f"{step}=0" in proc.stdout, (proc.stdout, proc.stderr)

    before, loaded = load_dump(d["before"]), load_dump(d["loaded"])
    edited, unloaded = load_dump(d["edited"]), load_dump(d["unloaded"])
    purged, many = load_dump(d["purged"]), load_dump(d["many"])
    hash_ = os.path.basename(os.path.realpath(store / "names" / "demo" / "current"))
    prefix = str(store / "profiles" / hash_)

    assert loaded["HOSTILE"] == HOSTILE
    assert loaded["DEMO_HOME"] == f"{prefix}/share/demo"
    assert loaded["EDITOR"] == "demo-editor"
    assert loaded["PATH"] == f"{prefix}/bin:{before['PATH']}"
    assert loaded["MANPATH"] == f"{prefix}/share/man:"  # keeps man's default path
    assert loaded["PKG_CONFIG_PATH"] == f"{prefix}/lib/pkgconfig"
    assert loaded["CMAKE_PREFIX_PATH"] == prefix
    assert loaded["HDENV_LOADED"] == f"demo/1:{hash_}"
    assert edited["PATH"] == f"{USER_DIR}:{loaded['PATH']}"

    # Exactly the environment from before, plus the user's own edit.
    assert unloaded == {**before, "PATH": f"{USER_DIR}:{before['PATH']}"}
    assert purged == unloaded
    for i in range(5):
        assert many[f"MANY{i}"] == HOSTILE
    assert len(many["HDENV_LOADED"].split()) == 5


@pytest.mark.parametrize("shell", SHELLS)
def test_status_and_errors(shell: str, tmp_path: Path, store: Path) -> None:
    """Failures give back the program's status and evaluate nothing."""
    syn = Syntax(shell)
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    hash_ = os.path.basename(os.path.realpath(store / "names" / "other" / "current"))
    lines = [
        syn.dump(before),
        "hdenv load nosuch", syn.status("nosuch"),
        "hdenv unload demo", syn.status("notloaded"),
        "hdenv load demo nosuch", syn.status("partial"),
        syn.dump(after),
        f"hdenv load {hash_[:8]}", syn.status("prefix"),
        f"hdenv load {hash_[:8]}", syn.status("double"),
        "hdenv load gcc", "hdenv load clang", syn.status("family"),
        "hdenv loaded",
        "hdenv swap clang demo", syn.status("swap"),
        "hdenv loaded",
    ]
    proc = run_script(shell, lines, tmp_path, store)
    out, err = proc.stdout, proc.stderr
    for label, code in (("nosuch", 2), ("notloaded", 2), ("partial", 2), ("prefix", 0),
                        ("double", 0), ("family", 0), ("swap", 0)):
        assert f"{label}={code}" in out, (out, err)
    assert load_dump(after) == load_dump(before)  # nothing of `load demo nosuch` stayed
    assert "unknown REF 'nosuch'" in err
    assert "'demo' is not loaded" in err
    assert "already loaded" in err
    assert "family 'compiler': unloading gcc" in err
    gcc = os.path.basename(os.path.realpath(store / "names" / "gcc" / "current"))
    clang = os.path.basename(os.path.realpath(store / "names" / "clang" / "current"))
    demo = os.path.basename(os.path.realpath(store / "names" / "demo" / "current"))
    # by hash (no name), then clang replaced gcc
    assert f"Currently loaded profiles:\n  1) {hash_}\n  2) clang/1 [compiler]\n" in out
    assert "gcc" not in out and gcc not in out and clang not in out
    assert f"Currently loaded profiles:\n  1) {hash_}\n  2) demo/1\n" in out  # swap clang -> demo
    assert demo not in out


def test_plain_program_explains_setup(tmp_path: Path, store: Path) -> None:
    """Without the function, `hdenv load` exits 2 and says how to set it up."""
    hdenv = shutil.which("hdenv", path=VENV_BIN)
    assert hdenv is not None
    proc = subprocess.run([hdenv, "load", "demo"], env=base_env(tmp_path, store),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert 'eval "$(hdenv init bash)"' in proc.stderr
    assert "hdenv init fish | source" in proc.stderr
    assert "hdenv init tcsh" in proc.stderr


def test_subshell_inherits_and_unloads(tmp_path: Path, store: Path) -> None:
    """The record is exported: a child bash can unload what its parent loaded."""
    after = tmp_path / "after.json"
    before = tmp_path / "before.json"
    syn = Syntax("bash")
    inner = f"{syn.init()}; hdenv unload demo; {syn.dump(after)}"
    lines = [syn.dump(before), "hdenv load demo",
             f"bash --norc --noprofile -c {syn.q(inner)}"]
    proc = run_script("bash", lines, tmp_path, store)
    assert proc.returncode == 0, proc.stderr
    assert load_dump(after) == load_dump(before)


def test_unload_after_profile_deleted(tmp_path: Path, store: Path) -> None:
    """Unload works from the record alone."""
    syn = Syntax("bash")
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    prof = os.path.realpath(store / "names" / "demo" / "current")
    lines = [syn.dump(before), "hdenv load demo", f"rm -rf {syn.q(prof)}",
             "hdenv unload demo", syn.status("unload"), syn.dump(after)]
    proc = run_script("bash", lines, tmp_path, store)
    assert "unload=0" in proc.stdout, proc.stderr
    assert load_dump(after) == load_dump(before)


@pytest.mark.parametrize("shell", SHELLS)
def test_function_works_without_hdenv_on_path(shell: str, tmp_path: Path, store: Path) -> None:
    """After init the function needs nothing from PATH: it runs the recorded interpreter.

    Also runs a program from the loaded profile, and a pass-through subcommand.
    """
    syn = Syntax(shell)
    set_path = {"fish": "set -gx PATH /usr/bin /bin",
                "tcsh": "setenv PATH /usr/bin:/bin"}.get(shell, "export PATH=/usr/bin:/bin")
    lines = [set_path, "hdenv load demo", syn.status("load"), "hello-demo",
             "hdenv list names", syn.status("list")]
    proc = run_script(shell, lines, tmp_path, store)
    assert "load=0" in proc.stdout and "list=0" in proc.stdout, (proc.stdout, proc.stderr)
    assert "hello from demo\n" in proc.stdout
    names = [line for line in proc.stdout.splitlines() if "=" not in line and "hello" not in line]
    assert names == ["clang", "demo", "gcc", "many0", "many1", "many2", "many3", "many4", "other"]


def test_loaded_json_and_avail(tmp_path: Path, store: Path) -> None:
    """`loaded --json` reports what the environment records; `avail` marks it."""
    lines = ["hdenv load demo other", "hdenv loaded --json > loaded.json", "hdenv avail"]
    proc = run_script("bash", lines, tmp_path, store)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "loaded.json").read_text())
    demo = os.path.basename(os.path.realpath(store / "names" / "demo" / "current"))
    assert [(r["name"], r["hash"]) for r in records][0] == ("demo", demo)
    assert [r["name"] for r in records] == ["demo", "other"]
    assert "   demo/1 (D,L)\n" in proc.stdout
    assert "   many0/1 (D)\n" in proc.stdout

"""Hardening, round two (issue 21): one test per attack that got through before.

Each test names its item (`test_21_3_...` is item 3). Where the attack needs
another user (a group store, a shared log directory) it runs as a real one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import require_tool
from shellfixtures import build_profiles

VENV_BIN = str(Path(sys.executable).parent)


# -- 3: names read from a store never reach a shell unchecked ------------------

def test_21_3_completion_never_expands_a_planted_profile_name(tmp_path: Path) -> None:
    """A group member plants names/x$(touch PWNED): bash TAB completion must not run it."""
    bash = require_tool("bash")
    store = tmp_path / "store"
    build_profiles(store, tmp_path, {"demo": {"env": {}}})
    hash_ = Path(os.path.realpath(store / "names" / "demo" / "current")).name
    for planted in ("x$(touch PWNED)", "y`touch PWNED2`", "*"):
        ndir = store / "names" / planted
        ndir.mkdir()
        os.symlink(f"../../profiles/{hash_}", ndir / "1")
        os.symlink("1", ndir / "current")
    bad_gen = store / "names" / "evil"
    bad_gen.mkdir()
    os.symlink("../../profiles/$(touch PWNED3)", bad_gen / "1")
    os.symlink("1", bad_gen / "current")
    script = r'''eval "$(hdenv init bash)"
t() {
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
    __hdenv_complete
    printf '%s\n' "${COMPREPLY[@]}"
}
t hdenv load ""
t hdenv load x
t hdenv load e
'''
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(store), "HDENV_CONFIG": str(tmp_path / "none.toml")}
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["demo", "demo/1"]
    assert not list(tmp_path.glob("PWNED*"))
    # and the listings that scripts read skip them too
    listed = subprocess.run([f"{VENV_BIN}/hdenv", "list", "profiles"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ["demo"]


# -- 19: text from stack files and other stores reaches the terminal defanged ---

ESCAPES = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]2;owned\x07\x1b[2J"
HOSTILE_TEXT_STACK = """
[stack]
name = "esc"
description = "{esc}stack"

[packages.tool]
version = "1"
description = "{esc}package"
env = {{ NOTE = "{esc}env" }}
script = 'mkdir -p "$PREFIX/bin"'

[profiles.esc]
packages = ["tool"]
description = "{esc}profile"
env = {{ NOTE = "{esc}value" }}
"""


def test_21_19_escape_sequences_from_a_stack_never_reach_the_terminal(
        tmp_path: Path) -> None:
    bash = require_tool("bash")
    toml_escaped = ESCAPES.replace("\x1b", "\\u001b").replace("\x07", "\\u0007")
    (tmp_path / "esc.toml").write_text(HOSTILE_TEXT_STACK.format(esc=toml_escaped))
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(tmp_path / "store"), "HDENV_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    subprocess.run([f"{VENV_BIN}/hdenv", "build", str(tmp_path / "esc.toml")], env=env,
                   check=True, capture_output=True)
    script = ('eval "$(hdenv init bash)"\nhdenv avail\nhdenv spider tool\n'
              'hdenv show esc\nhdenv show tool/1\nhdenv report esc\n'
              'command hdenv avail\ncommand hdenv spider tool\n')
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c", script], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b" not in out and "\x07" not in out
    assert out.count("\\x1b]52;c;") >= 5  # shown, visibly, in each listing
    assert "\\x1b]2;owned\\x07\\x1b[2Jprofile" in out

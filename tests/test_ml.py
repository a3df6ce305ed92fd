"""Lmod's `ml` (issue 22 item 5), defined by `hdenv init` in bash, zsh, fish and tcsh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from test_shell_function import HDENV, base_env, write_init
from test_shell_function import store as store  # noqa: F401  (the fixture)

# the same steps in each shell's syntax: `echo` of HDENV_LOADED's refs after each
STEPS = ["ml", "ml demo/1 other", "ml -other demo/2", "ml av", "ml spider pkg", "ml save mine",
         "ml purge", "ml restore mine", "ml list", "ml savelist"]
SHOW = {"bash": 'echo "[${HDENV_LOADED-}]"', "zsh": 'echo "[${HDENV_LOADED-}]"',
        "fish": 'echo "[$HDENV_LOADED]"',
        "tcsh": 'if ( $?HDENV_LOADED ) then\necho "[$HDENV_LOADED]"\nelse\necho "[]"\nendif'}
RC = {"bash": None, "zsh": ".zshenv", "fish": "config/fish/config.fish", "tcsh": ".tcshrc"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "none.toml").write_text("")
    return tmp_path


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "tcsh"])
def test_5_ml_forms(shell: str, store: Path, home: Path) -> None:  # noqa: F811
    exe = require_tool(shell)
    env = base_env(home, store)
    init = write_init(shell, env)
    script = "".join(f"echo '# {step}'\n{step}\n{SHOW[shell]}\n" for step in STEPS)
    rc_name = RC[shell]
    if rc_name is None:
        script = f". {init}\n{script}"
        argv = [exe, "--norc", "--noprofile", "job"]
    else:
        rc = home / rc_name
        rc.parent.mkdir(parents=True, exist_ok=True)
        rc.write_text(f"source {init}\n")
        argv = [exe, "job"]
    if shell == "zsh":
        env["ZDOTDIR"] = str(home)
    (home / "job").write_text(script)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=home)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    blocks = {b.split("\n", 1)[0]: b.split("\n", 1)[1] for b in out.split("# ")[1:]}
    refs = {step: [w.split(":")[0] for w in block.rstrip("\n").splitlines()[-1].strip("[]").split()]
            for step, block in blocks.items()}
    assert blocks["ml"].startswith("No profiles loaded.\n"), out
    assert refs["ml demo/1 other"] == ["demo/1", "other/1"], out
    assert refs["ml -other demo/2"] == ["demo/2"], out
    assert "demo/1   demo/2 (D,L)" in blocks["ml av"], out
    assert "load it with: hdenv load demo" in blocks["ml spider pkg"], out
    assert refs["ml purge"] == [] and refs["ml restore mine"] == ["demo/2"], out
    assert "Currently loaded profiles:\n  1) demo/2\n" in blocks["ml list"], out
    assert "1) mine" in blocks["ml savelist"], out


def test_5_ml_init_is_shellcheck_clean(home: Path, store: Path) -> None:  # noqa: F811
    shellcheck = require_tool("shellcheck")
    env = base_env(home, store)
    for code in (subprocess.run([HDENV, "init", "bash"], env=env, capture_output=True,
                                text=True, check=True).stdout,
                 write_init("bash", env).read_text()):
        assert "\nml() {" in code and "export -f ml" in code
        proc = subprocess.run([shellcheck, "-s", "bash", "-"], input=code, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout

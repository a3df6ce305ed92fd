"""`hdenv init SHELL --write`: the file, its self-check at shell start, and what it costs.

Each shell sources the written file as its startup file would; when hdenv was
installed anew since (a stamp newer than the file) the file writes itself
again before defining the function; when the interpreter it names is gone it
says so in one line and the shell goes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool

HDENV = str(Path(sys.executable).parent / "hdenv")
SOURCE = {"bash": ". {}", "zsh": "source {}", "fish": "source {}", "tcsh": "source {}"}
FLAGS = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"],
         "tcsh": ["-f"]}


def env_for(home: Path) -> dict[str, str]:
    (home / "none.toml").write_text("")
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home),
            "LANG": "C.UTF-8", "XDG_DATA_HOME": str(home / "data"),
            "HDENV_CONFIG": str(home / "none.toml"), "HDENV_STORE": str(home / "store")}


def write(shell: str, env: dict[str, str], *extra: str) -> Path:
    proc = subprocess.run([HDENV, "init", shell, "--write", *extra], env=env,
                          capture_output=True, text=True, check=True)
    path = Path(proc.stdout.strip())
    assert path == Path(env["XDG_DATA_HOME"]) / "hdenv" / "init" / f"hdenv.{shell}"
    return path


def run(shell: str, lines: list[str], env: dict[str, str], home: Path
        ) -> subprocess.CompletedProcess[str]:
    script = home / f"start.{shell}"
    script.write_text("\n".join(lines) + "\n")
    return subprocess.run([require_tool(shell), *FLAGS[shell], str(script)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=home)


@pytest.mark.parametrize("shell", sorted(SOURCE))
def test_written_file_defines_the_function_without_python(shell: str, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    path = write(shell, env)
    # No Python at start: with the interpreter's directory off PATH and a fresh
    # file, sourcing starts no process; `hdenv loaded` then runs it.
    proc = run(shell, [SOURCE[shell].format(path), "hdenv loaded"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "No profiles loaded.\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("shell", sorted(SOURCE))
def test_stale_file_writes_itself_again(shell: str, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    path = write(shell, env)
    good = path.read_text()
    path.write_text(good.replace("No profiles", "XX"))  # not used: regenerated first
    os.utime(path, (0, 0))  # older than every stamp: as after `pip install -U hdenv`
    proc = run(shell, [SOURCE[shell].format(path), "hdenv loaded"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert path.stat().st_mtime > 1e9
    assert path.read_text() == good
    assert proc.stdout == "No profiles loaded.\n", proc.stderr


@pytest.mark.parametrize("shell", sorted(SOURCE))
def test_gone_interpreter_is_one_line_and_the_shell_goes_on(shell: str, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    path = write(shell, env)
    bin_dir = str(Path(sys.executable).parent) + "/"
    text = path.read_text().replace(bin_dir, str(tmp_path / "gone") + "/")
    path.write_text(text)
    env["PATH"] = "/usr/bin:/bin"  # no other hdenv to write it again with
    proc = run(shell, [SOURCE[shell].format(path), "echo still here"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "still here\n"
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"hdenv: {tmp_path / 'gone' / 'python'}")
    assert " is gone; reinstall hdenv, or drop the line sourcing " in line


def test_written_bash_passes_shellcheck(tmp_path: Path) -> None:
    path = write("bash", env_for(tmp_path))
    proc = subprocess.run([require_tool("shellcheck"), "-s", "bash", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_no_completion_is_kept_when_regenerating(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    path = write("bash", env, "--no-completion")
    text = path.read_text()
    assert "completions/hdenv.bash" not in text and "__hdenv_commands" not in text
    assert "'init' 'bash' '--write' '--no-completion'" in text


def test_unknown_shell_writes_nothing(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    proc = subprocess.run([HDENV, "init", "nu", "--write"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("hdenv: error: unsupported shell 'nu'")
    assert not (tmp_path / "data").exists()

"""Output as module users expect it (issue 22 item 7), through the real shell function.

`hdenv list` is `module list`; `-t` gives one entry per line; `--redirect` is
accepted; a closed pipe ends quietly; colour, header width and the pager
follow the terminal, driven through tmux where a terminal is the point.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import require_tool
from test_shell_function import HDENV, base_env, bash, write_init
from test_shell_function import store as store  # noqa: F401  (the fixture)

ESC = "\033["


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "none.toml").write_text("")
    return tmp_path


def closed_pipe_run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone: every write fails (EPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(argv, env=env, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, cwd=cwd)
    finally:
        os.close(write_end)


def test_7_list_shows_what_is_loaded(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    proc = bash(f". {init}\nhdenv list\nhdenv load demo/1 other\nhdenv list\n"
                "hdenv list --json > list.json\nhdenv list artifacts | wc -l\n"
                f"{HDENV} list\n", env, home)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("No profiles loaded.\n"), out
    listed = "Currently loaded profiles:\n  1) demo/1\n  2) other/1\n"
    assert out.count(listed) == 2, out  # the function's fast path and the program agree
    assert int(out.split(listed)[1].strip()) > 0  # `list artifacts` still lists the store
    assert '"ref": "demo/1"' in (home / "list.json").read_text()


@pytest.mark.parametrize("words", [["config"], ["list"], ["avail"], ["list", "artifacts"],
                                   ["--help"]])
def test_7_closed_pipe_exits_quietly(store: Path, home: Path, words: list[str]) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    line = " ".join(shlex.quote(w) for w in words)
    for argv in ([HDENV, *words], ["bash", "--norc", "--noprofile", "-c", f". {init}; hdenv {line}"]):
        proc = closed_pipe_run(argv, env, home)
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
    proc = bash(f"set -o pipefail; . {init}; hdenv {line} | head -1; echo rc=$?", env, home)
    assert proc.stdout.endswith("rc=0\n") and proc.stderr == "", proc.stderr


def test_7_terse_and_redirect(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    script = f""". {init}
hdenv load demo
echo AVAIL; hdenv avail -t --redirect
echo LOADED; hdenv loaded --terse --redirect
echo SPIDER; hdenv spider -t --redirect pkg
echo LIST; hdenv list -t
echo PROGRAM; {HDENV} avail --terse --redirect; {HDENV} loaded -t
"""
    proc = bash(script, env, home)
    assert proc.returncode == 0, proc.stderr
    parts = dict(re.findall(r"^([A-Z]+)\n((?:[^A-Z\n].*\n)*)", proc.stdout, re.M))
    avail = parts["AVAIL"].splitlines()
    assert "demo/1" in avail and "demo/2" in avail and "other/1" in avail, avail
    assert all(re.fullmatch(r"[a-z]+/\d+", line) for line in avail), avail
    assert parts["LOADED"] == "demo/2\n" and parts["LIST"] == "demo/2\n"
    assert parts["SPIDER"] == "pkg-demo/1\npkg-other/1\n", parts["SPIDER"]
    assert parts["PROGRAM"] == parts["AVAIL"] + "demo/2\n"


def test_7_color_only_when_asked_or_on_a_terminal(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    proc = bash(f". {init}\nhdenv load demo\nhdenv avail\necho ALWAYS\nhdenv avail --color=always"
                f"\necho NEVER\nhdenv avail --color never\n", env, home)
    assert proc.returncode == 0, proc.stderr
    piped, rest = proc.stdout.split("ALWAYS\n")
    always, never = rest.split("NEVER\n")
    assert ESC not in piped and ESC not in never
    assert f"{ESC}1;32m(D,L){ESC}0m" in always
    assert always.replace(f"{ESC}1;32m", "").replace(f"{ESC}1m", "").replace(
        f"{ESC}0m", "") == piped


class Tmux:
    """An interactive bash in a tmux window of a set size (its own server socket)."""

    def __init__(self, home: Path, env: dict[str, str], cols: int, rows: int):
        self.exe = require_tool("tmux")
        self.sock = str(home / f"tmux-{uuid.uuid4().hex[:8]}")
        self.env = {**env, "TERM": "xterm-256color"}
        rc = home / "rc.bash"
        self.run("new-session", "-d", "-x", str(cols), "-y", str(rows),
                 f"env -u TMUX bash --rcfile {shlex.quote(str(rc))} -i")

    def run(self, *args: str) -> str:
        return subprocess.run([self.exe, "-S", self.sock, "-f", "/dev/null", *args],
                              env=self.env, capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def type_and_wait(self, line: str, marker: Path, timeout: float = 60) -> None:
        self.run("send-keys", "-l", line)
        self.run("send-keys", "Enter")
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert time.monotonic() < deadline, self.run("capture-pane", "-p")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([self.exe, "-S", self.sock, "kill-server"], capture_output=True,
                       timeout=60)


def _tmux_session(store: Path, home: Path, extra: str, cols: int = 200,
                  rows: int = 50) -> Tmux:
    env = base_env(home, store)
    init = write_init("bash", env)
    (home / "rc.bash").write_text(f"PS1='$ '\n. {init}\n{extra}\n")
    return Tmux(home, env, cols, rows)


def test_7_terminal_colour_width_and_no_color(store: Path, home: Path) -> None:
    term = _tmux_session(store, home, "hdenv load demo", cols=40)
    try:
        term.type_and_wait(f"hdenv avail > {home}/tty.txt 2>&1 < /dev/null; "
                           f"script -qc 'hdenv avail' /dev/null > {home}/pty.txt; "
                           f"NO_COLOR=1 script -qc 'hdenv avail' /dev/null > {home}/nocolor.txt;"
                           f" touch {home}/done", home / "done")
    finally:
        term.close()
    pty = (home / "pty.txt").read_text()
    assert f"{ESC}1;32m(D,L)" in pty, pty  # a terminal (40 columns): coloured markers
    headers = [x for x in pty.splitlines() if x.startswith("--")]
    assert headers and all(len(x.rstrip("\r")) <= 39 for x in headers), headers
    assert ESC not in (home / "nocolor.txt").read_text()
    assert ESC not in (home / "tty.txt").read_text()  # a file is not a terminal


def test_7_pager_only_on_a_terminal(store: Path, home: Path) -> None:
    paged = home / "paged.txt"
    term = _tmux_session(store, home, f"export HDENV_PAGER='tee {paged}'", rows=8)
    try:
        term.type_and_wait(f"hdenv avail | cat > {home}/piped.txt; "
                           f"test -e {paged} && touch {home}/paged-when-piped; "
                           f"hdenv avail; touch {home}/done", home / "done")
    finally:
        term.close()
    assert not (home / "paged-when-piped").exists()
    assert "demo/1" in (home / "piped.txt").read_text()
    assert "demo/1" in paged.read_text()  # 8 lines: longer than the window, so paged

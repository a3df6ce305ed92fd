"""Hardening, round two (issue 21), usage logs and terminals: what items 17-19 left open.

Items 17 and 18 (a FIFO or a planted file in the shared log directory) and 19
(escape sequences in `avail` and `show`) are tested in test_attacks2.py. These
are the same attacks by other ways: on the admins' `hdenv usage report`
instead of a load, with a hard link instead of a planted file, through
`whatis`, `help` and `keyword` instead of `avail`. Each runs the attacker as a
real second user where the attack needs one.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner, require_tool
from shellfixtures import build_profiles
from unixusers import UnixUsers

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    made = UnixUsers("hdenv21u", "hdenv21ug")
    try:
        made.add("a")  # the attacker
        made.add("b")  # the victim, in the same group (a shared project group)
        yield made
    finally:
        made.close()


@pytest.fixture
def shared_logs(users: UnixUsers) -> Iterator[tuple[Path, Path, Path]]:
    """A store everyone may read (root's), a sticky world-writable log dir, a site config."""
    store = users.base / "site-store"
    if not store.exists():
        build_profiles(store, users.base, {"demo": {"env": {"DEMO": "1"}}})
        subprocess.run(["chmod", "-R", "a+rX", str(store)], check=True)
    logs = users.base / "logs"
    logs.mkdir()
    os.chmod(logs, 0o1777)  # as /tmp: everyone creates their own file, nobody removes another's
    config = users.base / "site-config.toml"
    config.write_text(f'usage-log = "file:{logs}"\n')
    os.chmod(config, 0o644)
    try:
        yield store, logs, config
    finally:
        subprocess.run(["rm", "-rf", str(logs)], check=True)


def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def _as(users: UnixUsers, who: str, script: str) -> None:
    proc = users.run(who, ["sh", "-c", script], users.env(who), timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_17_a_fifo_in_the_log_directory_cannot_hang_the_usage_report(
        users: UnixUsers, shared_logs: tuple[Path, Path, Path], run_hdenv: Runner) -> None:
    """The admins' report opens every *.jsonl: a FIFO there blocked it forever."""
    store, logs, _ = shared_logs
    attacker, victim = f"{users.prefix}a", f"{users.prefix}b"
    host = os.uname().nodename
    _as(users, victim, f"umask 022; printf '%s\\n' '{_line(_uid(victim))}'"
                       f" > {logs}/{_uid(victim)}@{host}.jsonl")
    _as(users, attacker, f"mkfifo -m 666 {logs}/{_uid(attacker)}@{host}.jsonl"
                         f" && ln -s /etc/passwd {logs}/zz.jsonl")
    started = time.monotonic()
    proc = run_hdenv("usage", "report", "--from", str(logs), "--by", "user", "--json",
                     timeout=30)
    assert time.monotonic() - started < 20
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(r["key"], r["count"]) for r in report["rows"]] == [(victim, 1)]
    assert report["not_regular_files"] == [f"{_uid(attacker)}@{host}.jsonl", "zz.jsonl"]
    assert "log file(s) skipped: not regular files" in proc.stderr  # said, not silent


def _line(uid: int) -> str:
    return json.dumps({"time": "2030-01-01T00:00:00.000Z", "user": "x", "uid": uid,
                       "action": "load", "explicit": True, "name": "demo", "generation": 1,
                       "hash": "d" * 32})


def test_18_a_hard_link_to_a_victims_file_gets_no_usage_records(
        users: UnixUsers, shared_logs: tuple[Path, Path, Path], run_hdenv: Runner) -> None:
    """A group member links the victim's group-writable file in under the victim's log
    name (fs.protected_hardlinks allows it: they may write the file): the victim's
    load must not append its records to that file, and the report says so."""
    store, logs, config = shared_logs
    attacker, victim = f"{users.prefix}a", f"{users.prefix}b"
    host = os.uname().nodename
    notes = users.home(victim) / "project-notes.sh"
    _as(users, victim, f"chmod 711 {users.home(victim)} && umask 007 && echo 'echo hi' > {notes}"
                       f" && chgrp {users.group} {notes}")
    planted = logs / f"{_uid(victim)}@{host}.jsonl"
    _as(users, attacker, f"ln {notes} {planted}")
    assert os.stat(planted).st_ino == os.stat(notes).st_ino
    env = users.env(victim, HDENV_STORE=str(store), HDENV_SITE_CONFIG=str(config),
                    HDENV_CONFIG="/dev/null")
    script = 'eval "$(hdenv init bash)"\nhdenv load demo && echo "DEMO=$DEMO"\n'
    proc = users.run(victim, ["bash", "--norc", "--noprofile", "-c", script], env, timeout=30)
    assert proc.returncode == 0 and proc.stdout == "DEMO=1\n", proc.stderr
    assert notes.read_text() == "echo hi\n"  # nothing appended to the victim's file
    mine = logs / f"{_uid(victim)}@{host}.2.jsonl"  # the record went to a file of its own
    (line,) = [json.loads(x) for x in mine.read_text().splitlines()]
    assert (line["uid"], line["action"]) == (_uid(victim), "load")
    assert os.stat(mine).st_nlink == 1 and os.stat(mine).st_uid == _uid(victim)
    report = run_hdenv("usage", "report", "--from", str(logs), "--json", check=True)
    assert json.loads(report.stdout)["suspect_files"] == [planted.name]
    assert "hard-linked (planted by another user?)" in report.stderr


HOSTILE = """
[packages.tool]
version = "1"
description = "{esc}package"
help = "{esc}package help"
script = 'mkdir -p "$PREFIX/bin"'

[profiles.esc]
packages = ["tool"]
description = "{esc}profile"
help = "{esc}profile help"
homepage = "https://example.org/{esc}"
"""
ESCAPES = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]2;owned\x07\x1b[2J\x9b2J"


def test_19_whatis_help_and_keyword_never_print_escape_sequences(tmp_path: Path) -> None:
    """Descriptions and help texts from a stack file, through the commands that show them."""
    bash = require_tool("bash")
    toml_escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in ESCAPES)
    (tmp_path / "esc.toml").write_text(HOSTILE.format(esc=toml_escaped))
    (tmp_path / "none.toml").write_text("")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(tmp_path / "store"), "HDENV_CONFIG": str(tmp_path / "none.toml"),
           "PAGER": "cat"}
    subprocess.run([f"{VENV_BIN}/hdenv", "build", str(tmp_path / "esc.toml")], env=env,
                   check=True, capture_output=True)
    script = ('eval "$(hdenv init bash)"\nhdenv whatis esc\nhdenv whatis tool\n'
              'hdenv help esc\nhdenv help tool\nhdenv keyword help\n'
              'command hdenv help esc\n')
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c", script], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for raw in ("\x1b", "\x07", "\x9b"):
        assert raw not in out
    assert out.count("\\x1b]52;c;") >= 9  # each text, shown visibly
    assert "\\x1b]2;owned\\x07\\x1b[2J\\x9b2Jprofile help" in out

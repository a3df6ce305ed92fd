"""Hardening, the residuals (issue 21): what a build wrote or patched by path in a group store.

Each attack runs as a real second user (tests/unixusers.py) against a real victim who
builds into a store of their group:

- cache/jail.json: a link planted at `cache/` or a FIFO at the file, or a file of
  the attacker's with forged answers (a sandboxed build's jail);
- the link audit's patchelf and the unsandboxed build's `$PREFIX`: a directory above
  the artifact (artifacts/NAME/VERSION) exchanged for a link to the victim's own while
  the build runs;
- a host artifact's files, made by path in a directory the group could reach.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner
from unixusers import UnixUsers

from hdenv.build import bwrap, jail

ATTACKER, VICTIM = "hdresa", "hdresb"


@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    made = UnixUsers("hdres", "hdresg")
    try:
        made.add("a")  # the attacker, a member of the group
        made.add("b")  # the victim
        yield made
    finally:
        made.close()


def _group_store(users: UnixUsers, run_hdenv: Runner, name: str) -> Path:
    """A store root made shared by the group, as a site sets one up."""
    store = users.base / name
    proc = run_hdenv("--store", str(store), "store", "fix-permissions", "--group", users.group)
    assert proc.returncode == 0, proc.stderr
    return store


def _env(users: UnixUsers, who: str, store: Path, **extra: str) -> dict[str, str]:
    settings = {"HDENV_STORE": str(store), "HDENV_CONFIG": "/dev/null",
                "HDENV_SITE_CONFIG": "", "HDENV_SANDBOX": "none", "HDENV_JOBS": "1", **extra}
    return users.env(who, **settings)


def _file(users: UnixUsers, name: str, text: str) -> Path:
    path = users.base / name
    path.write_text(textwrap.dedent(text))
    os.chmod(path, 0o644)
    return path


def _as_attacker(users: UnixUsers, script: str) -> None:
    proc = users.run(ATTACKER, ["sh", "-c", script], users.env(ATTACKER))
    assert proc.returncode == 0, proc.stderr


def _precious(users: UnixUsers, what: str) -> Path:
    """An empty directory of the victim's own (0755), which the attacker points a link at."""
    target = users.home(VICTIM) / what
    proc = users.run(VICTIM, ["sh", "-c", f"mkdir -p {target} && chmod 755 {target}"
                              f" {target.parent}"], users.env(VICTIM))
    assert proc.returncode == 0, proc.stderr
    return target


def _sandboxed() -> None:
    if bwrap.unavailable_reason() is not None or not jail.available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the jail cannot run here: {bwrap.unavailable_reason()}")
        pytest.skip(f"the jail cannot run here: {bwrap.unavailable_reason()}")


TINY = """
[stack]
name = "{name}"

[packages.{name}]
version = "1"
script = '''
{check}
mkdir -p "$PREFIX/bin" && printf '#!/bin/sh\\necho {name}\\n' > "$PREFIX/bin/{name}"
chmod 755 "$PREFIX/bin/{name}"
'''
"""


def _build(users: UnixUsers, store: Path, name: str, check: str = "", timeout: float = 120,
           **extra: str) -> subprocess.CompletedProcess[str]:
    stack = _file(users, f"{name}.toml", TINY.format(name=name, check=check))
    return users.run(VICTIM, ["hdenv", "build", str(stack)], _env(users, VICTIM, store, **extra),
                     timeout=timeout)


# -- 1: cache/jail.json --------------------------------------------------------------------

def test_1_a_link_planted_at_cache_gets_no_jail_json(users: UnixUsers, run_hdenv: Runner
                                                     ) -> None:
    """A member plants `cache` -> a directory of the victim's before the victim's first
    sandboxed build. Before, the jail's cache was written by path: jail.json landed in
    the victim's own directory. Now cache/ is opened without following a link: the build
    works, the cache is not kept, nothing is written through the link."""
    _sandboxed()
    store = _group_store(users, run_hdenv, "jail-link")
    precious = _precious(users, "precious-jail")
    _as_attacker(users, f"ln -s {precious} {store}/cache")
    proc = _build(users, store, "jl", HDENV_SANDBOX="bwrap")
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(precious) == []
    assert os.path.islink(store / "cache")


def test_1_a_fifo_at_jail_json_hangs_nothing(users: UnixUsers, run_hdenv: Runner) -> None:
    """A member makes cache/ (the group's, as any member's first build would) and a FIFO
    at cache/jail.json. Before, the victim's build opened it by path and waited for a
    writer for ever. Now it is opened without blocking, not believed (not a regular
    file), and replaced by the victim's own cache."""
    _sandboxed()
    store = _group_store(users, run_hdenv, "jail-fifo")
    _as_attacker(users, f"mkdir -m 2775 {store}/cache && mkfifo -m 666 {store}/cache/jail.json")
    fifo = store / "cache" / "jail.json"
    try:
        proc = _build(users, store, "jf", timeout=60, HDENV_SANDBOX="bwrap")
    except subprocess.TimeoutExpired:  # let the reader go, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("the build hung on a FIFO at cache/jail.json")
    assert proc.returncode == 0, proc.stderr
    st = os.lstat(fifo)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == pwd.getpwnam(VICTIM).pw_uid, oct(st.st_mode)
    assert "/usr/include/stdio.h" in json.loads(fifo.read_text())["base"]


def test_1_a_members_forged_jail_json_is_not_believed(users: UnixUsers, run_hdenv: Runner,
                                                      tmp_path: Path) -> None:
    """A member writes cache/jail.json with the right key and forged answers: every
    header allowed. Before, the victim's jail believed it and showed the build headers
    it never declared (zlib.h). Now only the victim's own file is believed: the
    member's is replaced by the victim's answers."""
    _sandboxed()
    hidden = "/usr/include/zlib.h"
    if not os.path.exists(hidden):
        pytest.skip(f"{hidden} is not installed here")
    store = _group_store(users, run_hdenv, "jail-forged")
    jail.forget()
    jail.bwrap_args()
    honest = tmp_path / "jail.json"
    jail.save_cache(honest)
    jail.forget()
    if not honest.exists():
        pytest.skip("the package database or /usr/include changed in the last 2 s")
    data = json.loads(honest.read_text())
    assert hidden not in data["base"]
    data["base"].append(hidden)
    forged = _file(users, "forged.json", json.dumps(data))
    _as_attacker(users, f"mkdir -m 2775 {store}/cache && cp {forged} {store}/cache/jail.json"
                 f" && chmod 664 {store}/cache/jail.json")
    proc = _build(users, store, "jg", check=f'[ ! -e {hidden} ] || {{ echo "sees {hidden}";'
                  ' exit 1; }', HDENV_SANDBOX="bwrap")
    assert proc.returncode == 0, proc.stderr
    mine = store / "cache" / "jail.json"
    assert os.lstat(mine).st_uid == pwd.getpwnam(VICTIM).pw_uid
    assert hidden not in json.loads(mine.read_text())["base"]

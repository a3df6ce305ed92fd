"""A site store, user stores on top of it and a group-shared store, with real Unix users.

Root builds the site store (readable by all, writable by root only). User
hdenv15a builds on it through `upstreams`; hdenv15c, in no group, may only
read it; hdenv15a and hdenv15b, both in group hdenv15g, build one stack into
a shared store at the same time (one with umask 077). Root-only: CI runs as
root, and a developer who is not root sees these skipped with the reason.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SHARED_SOURCES, Runner, require
from test_upstreams import SITE_STACK, USER_STACK, own_artifacts, snapshot
from unixusers import UnixUsers

GROUP = "hdenv15g"


@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    made = UnixUsers("hdenv15", GROUP)
    try:
        made.add("a")
        made.add("b")
        made.add("c", in_group=False)
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def site(users: UnixUsers) -> Path:
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    """Root builds the site's stack into a store everyone may read."""
    root = users.base / "site"
    stack = users.base / "site.toml"
    stack.write_text(SITE_STACK)
    (users.base / "mine.toml").write_text(USER_STACK)
    os.chmod(users.base / "mine.toml", 0o644)
    os.chmod(stack, 0o644)
    proc = subprocess.run([str(users.bin / "hdenv"), "build", str(stack)],
                          env=users.env("root", HDENV_STORE=str(root), HDENV_SITE_CONFIG="",
                                        HDENV_MIRRORS=str(SHARED_SOURCES)),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    config = users.base / "site-config.toml"
    config.write_text(f'upstreams = ["{root}"]\n')
    os.chmod(config, 0o644)
    return root


def user_env(users: UnixUsers, name: str, store: Path, **extra: str) -> dict[str, str]:
    return users.env(name, **{"HDENV_STORE": str(store), "HDENV_CONFIG": "/dev/null",
                              "HDENV_SITE_CONFIG": str(users.base / "site-config.toml"),
                              "PYTHONPATH": str(users.base / "pylib"), **extra})


def test_user_builds_only_what_the_site_lacks_and_loads_both(users: UnixUsers,
                                                              site: Path) -> None:
    before = snapshot(site)
    a = "hdenv15a"
    store = users.home(a) / "store"
    env = user_env(users, a, store)
    proc = users.run(a, ["hdenv", "build", str(users.base / "mine.toml")], env)
    assert proc.returncode == 0, proc.stderr
    assert "2 built, 3 already present" in proc.stderr
    assert own_artifacts(store) == ["hello-readme/2.10", "mytool/1"]
    assert os.stat(store / "artifacts" / "mytool").st_uid == pwd.getpwnam(a).pw_uid
    proc = users.run(a, ["hdenv", "build", str(users.base / "site.toml")], env)
    assert proc.returncode == 0, proc.stderr
    assert "0 built, 5 already present" in proc.stderr
    assert snapshot(site) == before, "the user's builds wrote into the site store"

    script = users.home(a) / "load.sh"
    script.write_text('eval "$(hdenv init bash)"\n'
                      "hdenv load site-tools && hdenv load mine || exit 9\n"
                      "site-tool && my-tool | head -1\n"
                      "hdenv loaded\n")
    proc = users.run(a, ["bash", "--norc", "--noprofile", str(script)], env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["site tool", "my tool"]
    assert lines[2:] == ["Currently loaded profiles:", "  1) site-tools/1", "  2) mine/1"]
    assert snapshot(site) == before


def test_reader_gets_one_line_errors_and_can_still_read_and_load(users: UnixUsers,
                                                                 site: Path) -> None:
    c = "hdenv15c"
    before = snapshot(site)
    env = user_env(users, c, site, HDENV_SITE_CONFIG="")
    for argv in (["build", str(users.base / "site.toml")],
                 ["host", "capture", "sh", "/bin/sh"],
                 ["fetch", str(users.base / "site.toml")],
                 ["profile", "rollback", "site-tools", "--to", "1"]):
        proc = users.run(c, ["hdenv", *argv], env)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("hdenv: error: cannot"), (
            argv, proc.stderr)
        assert "internal error" not in proc.stderr
        assert str(site) in proc.stderr
    build = users.run(c, ["hdenv", "build", str(users.base / "site.toml")], env)
    assert "is read-only for you" in build.stderr and "upstreams" in build.stderr
    for argv in (["list"], ["list", "profiles"], ["avail"], ["show", "site-tools"],
                 ["path", "site-tools"], ["verify"], ["config"],
                 ["build", "--dry-run", str(users.base / "site.toml")],
                 ["profile", "generations", "site-tools"], ["env", "site-tools",
                                                            "--shell", "bash"]):
        proc = users.run(c, ["hdenv", *argv], env)
        assert proc.returncode == 0, (argv, proc.stderr)
    script = users.home(c) / "load.sh"
    script.write_text('eval "$(hdenv init bash)"\nhdenv load site-tools && site-tool\n')
    proc = users.run(c, ["bash", "--norc", "--noprofile", str(script)], env)
    assert (proc.returncode, proc.stdout) == (0, "site tool\n"), proc.stderr
    assert snapshot(site) == before


CONCURRENT = "\n".join(
    f"""
[packages.p{i}]
version = "1"
{f'deps = ["p{i - 1}"]' if i % 3 else ""}
script = '''
sleep 1
mkdir -p "$PREFIX/share/p{i}/sub"
echo p{i} > "$PREFIX/share/p{i}/sub/data"
'''
""" for i in range(6))


def test_two_group_members_build_one_shared_store_at_once(users: UnixUsers,
                                                         run_hdenv: Runner) -> None:
    shared = users.base / "shared"
    fix = run_hdenv("--store", str(shared), "store", "fix-permissions", "--group", GROUP)
    assert fix.returncode == 0, fix.stderr
    gid = grp.getgrnam(GROUP).gr_gid
    assert os.stat(shared).st_gid == gid and os.stat(shared).st_mode & stat.S_ISGID
    stack = users.base / "concurrent.toml"
    stack.write_text("[stack]\nname = \"together\"\n" + CONCURRENT)
    os.chmod(stack, 0o644)

    def start(name: str, umask: str) -> subprocess.Popen[str]:
        env = users.env(name, HDENV_STORE=str(shared), HDENV_CONFIG="/dev/null",
                        HDENV_SITE_CONFIG="", PYTHONPATH=str(users.base / "pylib"))
        argv = ["sh", "-c", f'umask {umask} && exec hdenv build -j 2 "$0"', str(stack)]
        return subprocess.Popen(users.command(name, argv, env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=users.base)

    procs = [start("hdenv15a", "077"), start("hdenv15b", "022")]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "ermission denied" not in err and "internal error" not in err, err
        assert out.split()[0] == "together"
    built = [line.split()[1] for _, err in outs for line in err.splitlines()
             if line.startswith("built ")]
    assert sorted(built) == sorted(set(built)), f"built twice: {built}"
    assert sorted(b.split("/")[0] for b in built) == [f"p{i}" for i in range(6)]

    env_b = users.env("hdenv15b", HDENV_STORE=str(shared), HDENV_CONFIG="/dev/null",
                      HDENV_SITE_CONFIG="", PYTHONPATH=str(users.base / "pylib"))
    verify = users.run("hdenv15b", ["hdenv", "verify"], env_b)
    assert verify.returncode == 0 and " 0 problem(s)" in verify.stderr, verify.stderr
    for dirpath, _dirnames, filenames in os.walk(shared / "locks"):
        for name in filenames:
            mode = os.stat(os.path.join(dirpath, name)).st_mode
            assert mode & 0o060 == 0o060, (name, oct(mode))
    for top in ("specs", "names", "profiles", "artifacts", "locks"):
        st = os.stat(shared / top)
        assert st.st_gid == gid and st.st_mode & stat.S_ISGID and st.st_mode & stat.S_IWGRP

    # An artifact one member built is read-only, and the other member can remove it
    # (as gc does: the store's own remove_tree).
    victim = sorted((shared / "artifacts").glob("p[0-9]/1/*"))[0]
    builder = pwd.getpwuid(os.stat(victim).st_uid).pw_name
    other = {"hdenv15a": "hdenv15b", "hdenv15b": "hdenv15a"}[builder]
    env_other = {**env_b, "HOME": str(users.home(other)), "USER": other, "LOGNAME": other}
    data = next(victim.rglob("data"))
    assert not os.stat(data).st_mode & 0o222
    write = users.run(other, ["sh", "-c", f'echo x >> "{data}"'], env_other)
    assert write.returncode != 0
    remove = users.run(other, [users.python, "-c",
                               "import sys; from pathlib import Path;"
                               " from hdenv.store.fsutil import remove_tree;"
                               " remove_tree(Path(sys.argv[1]))", str(victim)], env_other)
    assert remove.returncode == 0, remove.stderr
    assert not victim.exists()

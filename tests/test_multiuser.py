"""A site store, user stores on top of it and a group-shared store, with real Unix users.

Root builds the site store (readable by all, writable by root only). User
hdenv15a builds on it through `upstreams`; hdenv15c, in no group, may only
read it; hdenv15a and hdenv15b, both in group hdenv15g, build one stack into
a shared store at the same time (one with umask 077). Root-only: CI runs as
root, and a developer who is not root sees these skipped with the reason.
"""

from __future__ import annotations

import grp
import json
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

from hdenv.exchange.substitute import IN_PIPE, mostly_bytes
from hdenv.store.layout import Store
from hdenv.store.tmpdirs import leftovers

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


PARAMETERISED = """
[stack]
name = "{name}"
[parameters]
v = "1"
[packages.{pkg}0]
version = "1"
env = {{ V = "{{{{ v }}}}" }}
script = '''
mkdir -p "$PREFIX/share/deep/sub" "$PREFIX/bin"
echo "$V" > "$PREFIX/share/deep/sub/data"
'''
[packages.{pkg}1]
version = "1"
deps = ["{pkg}0"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\ncat %s/share/deep/sub/data\\n' "$HDENV_DEP_{PKG}0" > "$PREFIX/bin/{pkg}tool"
chmod +x "$PREFIX/bin/{pkg}tool"
'''
"""


class Member:
    """One group member working in one shared store through the real `hdenv` (as that user)."""

    def __init__(self, users: UnixUsers, name: str, store: Path, umask: str) -> None:
        self.users, self.name, self.store, self.umask = users, name, store, umask
        self.env = users.env(name, HDENV_STORE=str(store), HDENV_CONFIG="/dev/null",
                             HDENV_SITE_CONFIG="", PYTHONPATH=str(users.base / "pylib"))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["sh", "-c", f'umask {self.umask} && exec hdenv "$@"', "hdenv", *args]
        return self.users.run(self.name, argv, self.env)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args)
        assert proc.returncode == 0, (self.name, args, proc.stdout, proc.stderr)
        assert "ermission denied" not in proc.stderr and "internal error" not in proc.stderr, (
            self.name, args, proc.stderr)
        return proc

    def artifacts(self) -> set[str]:
        return {line.split()[0] for line in self.ok("list", "artifacts").stdout.splitlines()}

    def tool(self, profile: str, program: str) -> str:
        prefix = self.ok("path", profile).stdout.strip()
        return self.users.run(self.name, [f"{prefix}/bin/{program}"], self.env).stdout


def shared_store(users: UnixUsers, run_hdenv: Runner, name: str) -> Path:
    store = users.base / name
    fix = run_hdenv("--store", str(store), "store", "fix-permissions", "--group", GROUP)
    assert fix.returncode == 0, fix.stderr
    for stack, pkg in ((f"{name}-a.toml", "qa"), (f"{name}-b.toml", "qb")):
        (users.base / stack).write_text(PARAMETERISED.format(name=pkg, pkg=pkg, PKG=pkg.upper()))
        os.chmod(users.base / stack, 0o644)
    return store


def a_leaves_garbage(users: UnixUsers, store: Path) -> tuple[Member, Member, set[str]]:
    """Member A (umask 077) builds twice and prunes, leaving A's first build to gc."""
    a = Member(users, "hdenv15a", store, "077")
    b = Member(users, "hdenv15b", store, "022")
    stack = str(users.base / f"{store.name}-a.toml")
    a.ok("build", stack)
    first = a.artifacts()
    a.ok("build", stack, "--set", "v=2")
    old = {x for x in first if x.startswith("qa")}
    assert len(old) == 2 and not old & {x for x in a.artifacts() - first}
    a.ok("profile", "prune", "qa", "--keep", "1")
    a_uid = pwd.getpwnam("hdenv15a").pw_uid
    assert all(os.stat(store / "artifacts" / x).st_uid == a_uid for x in old)
    return a, b, old


def test_a_member_gcs_what_another_member_built(users: UnixUsers, run_hdenv: Runner) -> None:
    store = shared_store(users, run_hdenv, "shared-gc")
    a, b, old = a_leaves_garbage(users, store)
    b.ok("build", str(users.base / "shared-gc-b.toml"))
    b_live = {x for x in b.artifacts() if x.startswith("qb")}
    old_profile = next(p for p in os.listdir(store / "profiles")
                       if p != a.ok("path", "qa").stdout.strip().rsplit("/", 1)[1]
                       and p != b.ok("path", "qb").stdout.strip().rsplit("/", 1)[1])

    dry = b.ok("gc", "--dry-run")
    listed = {line.split()[1] for line in dry.stdout.splitlines()}
    assert old | {old_profile} <= listed and not listed & b_live
    done = b.ok("gc")
    assert old | {old_profile} <= {line.split()[1] for line in done.stdout.splitlines()}
    for x in old:
        assert not (store / "artifacts" / x).exists()
    assert not (store / "profiles" / old_profile).exists()
    assert leftovers(Store(store)) == []
    assert a.tool("qa", "qatool") == "2\n"  # A's live generation is whole
    assert b.tool("qb", "qbtool") == "1\n"
    for member in (a, b):
        verify = member.ok("verify")
        assert " 0 problem(s)" in verify.stderr, verify.stdout + verify.stderr
    assert b.ok("gc", "--dry-run").stdout == ""


def test_fix_permissions_repairs_modes_so_members_can_gc_and_build(
        users: UnixUsers, run_hdenv: Runner) -> None:
    store = shared_store(users, run_hdenv, "shared-fix")
    a, b, old = a_leaves_garbage(users, store)
    live = next(x for x in a.artifacts() if x.startswith("qa0/") and x not in old)
    dead = next(x for x in old if x.startswith("qa0/"))
    # Modes as a careless chmod (or a copy without -p) leaves them, on A's paths:
    broken = {
        "artifacts/qa0": 0o755,  # no set-gid, no group write on a name directory
        f"artifacts/{dead}/share/deep": 0o555,  # B could not remove what is inside
        f"artifacts/{live}/share/deep/sub/data": 0o400,  # B could not read A's file
        f"specs/{live.rsplit('/', 1)[1]}.json": 0o600,
    }
    a_uid = pwd.getpwnam("hdenv15a").pw_uid
    lock = next(p for p in (store / "locks").rglob("*") if p.is_file()
                and p.stat().st_uid == a_uid)
    broken[str(lock.relative_to(store))] = 0o600  # B could not take that lock
    for rel, mode in broken.items():
        assert os.stat(store / rel).st_uid == a_uid, rel
        os.chmod(store / rel, mode)
    os.chmod(store / "profiles", 0o755)  # and on root's: B could not add a profile
    # B meets the damage: the file B may not read makes verify fail.
    assert b.run("verify").returncode != 0

    # B may not chmod A's paths: B's repair says whose they are, and fails.
    refused = b.run("store", "fix-permissions")
    assert refused.returncode == 1, refused.stderr
    assert "owned by other users" in refused.stderr and "run as root or as their owner" in \
        refused.stderr
    # A repairs every path of A's own, and names root's as one it may not change.
    by_a = a.run("store", "fix-permissions")
    assert by_a.returncode == 1, by_a.stderr
    assert f"could not change 1 path(s) owned by other users: {store}/profiles " in by_a.stderr
    assert int(by_a.stderr.split(": ")[1].split()[0]) >= len(broken), by_a.stderr
    gid = grp.getgrnam(GROUP).gr_gid
    # repaired as it was built: the same mode as the same path of the untouched twin
    # (what others may do is left as it was: A's umask 077 gave them nothing)
    twin = {f"artifacts/{dead}/share/deep": f"artifacts/{live}/share/deep",
            f"artifacts/{live}/share/deep/sub/data": f"artifacts/{dead}/share/deep/sub/data"}
    for rel, other in twin.items():
        assert os.stat(store / rel).st_mode & ~0o007 == os.stat(store / other).st_mode, rel
    for rel in broken:
        st = os.stat(store / rel)
        assert st.st_gid == gid, rel
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            assert mode & (stat.S_ISGID | 0o070) == stat.S_ISGID | 0o070, (rel, oct(mode))
        elif rel.startswith("locks/"):
            assert mode & 0o060 == 0o060, (rel, oct(mode))
        else:
            assert mode & 0o040, (rel, oct(mode))
        if rel.startswith("artifacts/") and rel.count("/") >= 4:
            assert not mode & 0o222 & ~0o020, (rel, oct(mode))  # still read-only for its owner
    # root refuses to walk a store the group can write to (a member could swap what root
    # is about to chmod); the admin mends root's one directory by hand
    fixed = run_hdenv("--store", str(store), "store", "fix-permissions")
    assert fixed.returncode == 1, fixed.stderr
    assert f"refusing to write to the store {store} as root" in fixed.stderr
    os.chmod(store / "profiles", 0o2775)
    assert a.ok("store", "fix-permissions").stderr == f"{store}: 0 change(s)\n"

    # And the store works for B again: verify, gc of A's garbage, a build of B's own.
    for member in (a, b):
        verify = member.ok("verify")
        assert " 0 problem(s)" in verify.stderr, verify.stdout + verify.stderr
    done = b.ok("gc")
    assert old <= {line.split()[1] for line in done.stdout.splitlines()}
    assert not any((store / "artifacts" / x).exists() for x in old)
    b.ok("build", str(users.base / "shared-fix-b.toml"))
    assert b.tool("qb", "qbtool") == "1\n" and a.tool("qa", "qatool") == "2\n"
    assert os.stat(store / "profiles").st_mode & stat.S_ISGID


PLANTER = """
# as a member of the group, while the pulls run (the flag file is there): try to put a file
# into each directory of an artifact another member is installing (their names guessed, as
# an attacker would: such an artifact's top directory is only searchable; a finished one
# is readable, and the group's to write in by the store's design, so members can gc it)
flag=$1 store=$2; shift 2
while [ -e "$flag" ]; do
    for top in "$store"/artifacts/*/*/*/; do
        [ -O "$top" ] || [ -r "$top" ] && continue
        for rel in "" "$@"; do
            d="$top$rel"
            [ -d "$d" ] && [ ! -O "$d" ] || continue
            # named for its artifact: two artifacts planted alike would stop their profile
            # (one path from two artifacts), which is not what this test is about
            h=${top%/}; f="$d/planted-${h##*/}"
            # not `:`: a failed redirection on a special builtin ends the shell
            if true > "$f" 2>/dev/null; then echo "PLANTED $f"; fi
        done
    done
done
"""


WIDE = """
[packages.qpwide{i}]
version = "1"
script = '''
mkdir -p "$PREFIX/share/w{i}/sub"
echo {i} > "$PREFIX/share/w{i}/sub/small"
head -c 100000000 /dev/zero > "$PREFIX/share/w{i}/big"
head -c {noise} /dev/urandom > "$PREFIX/share/w{i}/noise"
'''
"""  # installs that take a while: 100 MB to write and hash, in a small archive (but for
# the noise: MBs of it make the archive as big, and the install mostly bytes)


@pytest.mark.parametrize(("noise", "in_threads"), [
    ([1_500_000, 0, 0], False),  # installs in worker processes, an archive as a file
    ([2_000_000] * 3, True),  # mostly bytes: installs in the pullers' threads
], ids=["processes", "threads"])
def test_two_members_pull_into_one_shared_store_while_one_tries_to_write_in(
        users: UnixUsers, run_hdenv: Runner, noise: list[int], in_threads: bool) -> None:
    """Installs from a cache write files read-only from the start, make directories
    read-only at the end and record the manifest of what they wrote (exchange/pack.py):
    two group members pulling one profile into one shared store at once get each artifact
    installed once, whole and group-readable. A member writing into what the other is
    installing meanwhile gets nothing into it: the directories are closed to the group
    until their files are written, and then take a finished artifact's modes (the group's
    to write in, so members can gc each other's), but what a member put there is never in
    the manifest, and `verify` names it."""
    tag = "threads" if in_threads else "processes"
    src, cache = users.base / f"pull-src-{tag}", users.base / f"pull-cache-{tag}"
    xdg = {"XDG_CONFIG_HOME": str(users.base / f"pull-xdg-{tag}")}
    key = run_hdenv("cache", "keygen", "k1", env=xdg, check=True).stdout.strip()
    stack = users.base / f"pull-{tag}.toml"
    stack.write_text(PARAMETERISED.format(name="qp", pkg="qp", PKG="QP")
                     + "".join(WIDE.format(i=i, noise=noise[i]) for i in range(3)))
    built = run_hdenv("--store", str(src), "build", str(stack), check=True)
    phash = built.stdout.split()[-1]
    run_hdenv("--store", str(src), "push", "qp", "--to", str(cache), env=xdg, check=True)
    descriptions = [json.loads(p.read_text()) for p in (cache / "artifacts").glob("*.json")]
    assert mostly_bytes(descriptions) is in_threads
    assert max(d["archive_size"] for d in descriptions) > IN_PIPE  # a file, not the pipe
    config = users.base / f"pull-config-{tag}.toml"
    config.write_text(f'trusted-keys = ["{key}"]\n')
    for dirpath, dirnames, filenames in os.walk(cache):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    os.chmod(config, 0o644)
    store = users.base / f"shared-pull-{tag}"
    fix = run_hdenv("--store", str(store), "store", "fix-permissions", "--group", GROUP)
    assert fix.returncode == 0, fix.stderr

    def env(name: str) -> dict[str, str]:
        return users.env(name, HDENV_STORE=str(store), HDENV_CONFIG=str(config),
                         HDENV_SITE_CONFIG="", PYTHONPATH=str(users.base / "pylib"))

    def start(name: str, argv: list[str], nice: int = 0) -> subprocess.Popen[str]:
        return subprocess.Popen(["nice", "-n", str(nice), *users.command(name, argv, env(name))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=users.base)

    flag = users.base / f"pulling-{tag}"
    flag.write_text("")
    inside = ["share", "share/deep", "share/deep/sub", "bin",
              *(f"share/w{i}{sub}" for i in range(3) for sub in ("", "/sub"))]
    # ahead of the pulls for the cores (root may raise a priority): on two cores the pulls
    # would otherwise leave the planters too few turns while an install is under way
    planters = [start(name, ["sh", "-c", PLANTER, "planter", str(flag), str(store), *inside],
                      nice=-15) for name in ("hdenv15a", "hdenv15b")]
    pulls = {name: start(name, ["sh", "-c", f'umask {umask} && exec hdenv reproduce "$0"'
                                f' --from "$1" --name copy-{name[-1]} -j 2', phash, str(cache)])
             for name, umask in (("hdenv15a", "077"), ("hdenv15b", "022"))}
    try:
        for name, proc in pulls.items():
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, (name, err)
            assert "ermission denied" not in err and "internal error" not in err, (name, err)
            assert f"copy-{name[-1]}" in out, out
    finally:
        flag.unlink()
    planted = sorted({line.split()[1].replace("//", "/") for p in planters
                      for line in p.communicate(timeout=60)[0].splitlines()})
    assert sorted(str(p) for p in store.glob("artifacts/**/planted-*")) == planted

    aids = sorted(str(p.relative_to(store / "artifacts"))
                  for p in store.glob("artifacts/qp*/1/*"))
    assert len(aids) == 5, aids  # once each, whoever installed it
    for aid in aids:  # what the archive held, and nothing a member put there
        recorded = json.loads((store / "artifacts" / aid / ".hdenv" / "manifest.json")
                              .read_text())
        source = json.loads((src / "artifacts" / aid / ".hdenv" / "manifest.json").read_text())
        assert recorded.keys() == source.keys(), aid
    verify = users.run("hdenv15b", ["hdenv", "verify"], env("hdenv15b"))
    named = sorted(f"{store}/artifacts/{line.split(': unexpected ')[0]}/"
                   f"{line.split(': unexpected ')[1]}"
                   for line in verify.stdout.splitlines() + verify.stderr.splitlines()
                   if ": unexpected " in line)
    assert named == planted, (verify.stdout, verify.stderr)
    assert f" {len(planted)} problem(s)" in verify.stderr, verify.stderr
    for path in planted:
        os.unlink(path)  # as root: the store as the archives made it, for what follows
    for dirpath, dirnames, filenames in os.walk(store / "artifacts"):
        for entry in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, entry))
            if stat.S_ISLNK(st.st_mode) or entry.startswith("planted-"):
                continue
            mode = stat.S_IMODE(st.st_mode)
            assert mode & 0o040, (dirpath, entry, oct(mode))  # the group reads it
            if stat.S_ISREG(st.st_mode):
                assert not mode & 0o222, (dirpath, entry, oct(mode))  # nobody writes it
    for name in pulls:
        tool = users.run(name, ["sh", "-c", 'exec "$(hdenv path "$0")/bin/qptool"',
                                f"copy-{name[-1]}"], env(name))
        assert tool.stdout == "1\n", (name, tool.stdout, tool.stderr)


PLANTED = """
[stack]
name = "planted"

[packages.q0]
version = "1"
script = 'mkdir -p "$PREFIX/share" && echo q0 > "$PREFIX/share/q0"'

[packages.q1]
version = "1"
script = 'mkdir -p "$PREFIX/share" && echo q1 > "$PREFIX/share/q1"'
"""


def test_a_spec_a_member_planted_is_replaced_by_the_next_install(
        users: UnixUsers, run_hdenv: Runner, store_dir: Path) -> None:
    """specs/ of a group store is the group's to write: a member can leave a symlink to a
    file of theirs (the spec's size, another package's script), or a short file, where a
    spec is about to go. The installer looks at what is there without following it, and
    renames the real spec over it: nothing is written through the link, what it names is
    left as it was, and `verify` is clean."""
    shared = users.base / "shared-specs"
    fix = run_hdenv("--store", str(shared), "store", "fix-permissions", "--group", GROUP)
    assert fix.returncode == 0, fix.stderr
    stack = users.base / "planted.toml"
    stack.write_text(PLANTED)
    os.chmod(stack, 0o644)
    env = {name: users.env(name, HDENV_STORE=str(shared), HDENV_CONFIG="/dev/null",
                           HDENV_SITE_CONFIG="", PYTHONPATH=str(users.base / "pylib"))
           for name in ("hdenv15a", "hdenv15b")}
    dry = users.run("hdenv15a", ["hdenv", "build", "--dry-run", str(stack)], env["hdenv15a"])
    assert dry.returncode == 0, dry.stderr
    ids = {line.split()[2].split("/")[0]: line.split()[2].rsplit("/", 1)[1]
           for line in (dry.stdout + dry.stderr).splitlines()
           if line.startswith("would build q")}
    assert sorted(ids) == ["q0", "q1"], dry.stdout + dry.stderr

    # the real spec, from a build of the same stack in a store of root's own: ids do not
    # depend on the store, so its spec is the one the shared store will get
    assert run_hdenv("build", str(stack)).returncode == 0
    real = (store_dir / "specs" / f"{ids['q0']}.json").read_text()
    forged = real.replace("echo q0", "echo x0")  # as long, and a different build
    assert forged != real and len(forged) == len(real)
    theirs = users.home("hdenv15b") / "theirs.json"
    plant = users.run("hdenv15b", [users.python, "-c",
                                   "import os, sys; specs, theirs, forged, link, short ="
                                   " sys.argv[1:]; open(theirs, 'w').write(forged);"
                                   " os.symlink(theirs, f'{specs}/{link}.json');"
                                   " open(f'{specs}/{short}.json', 'w').write('{')",
                                   str(shared / "specs"), str(theirs), forged, ids["q0"],
                                   ids["q1"]], env["hdenv15b"])
    assert plant.returncode == 0, plant.stderr
    assert (shared / "specs" / f"{ids['q0']}.json").is_symlink()

    build = users.run("hdenv15a", ["hdenv", "build", str(stack)], env["hdenv15a"])
    assert build.returncode == 0, build.stderr
    a_uid = pwd.getpwnam("hdenv15a").pw_uid
    for hash_ in ids.values():
        spec = shared / "specs" / f"{hash_}.json"
        st = os.lstat(spec)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == a_uid, (spec, oct(st.st_mode))
        assert json.loads(spec.read_text())["kind"] == "build"
    assert (shared / "specs" / f"{ids['q0']}.json").read_text() == real
    assert theirs.read_text() == forged
    verify = users.run("hdenv15b", ["hdenv", "verify"], env["hdenv15b"])
    assert verify.returncode == 0 and " 0 problem(s)" in verify.stderr, verify.stderr

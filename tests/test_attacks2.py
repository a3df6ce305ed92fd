"""Hardening, round two (issue 21): one test per attack that got through before.

Each test names its item (`test_21_3_...` is item 3). Where the attack needs
another user (a group store, a shared log directory) it runs as a real one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import pwd
import resource
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Runner, require_tool
from packaging.requirements import Requirement
from packaging.version import Version
from shellfixtures import build_profiles
from test_attacks import small_tmpfs
from unixusers import UnixUsers

from hdenv.store import fdtree

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
    # a profile whose package (what `load` completes by name too) is named to run code
    fake = "b" * 32
    (store / "profiles" / fake / ".hdenv").mkdir(parents=True)
    (store / "profiles" / fake / ".hdenv" / "profile.json").write_text(json.dumps(
        {"hash": fake, "artifacts": ["z$(touch PWNED4)/1/" + "c" * 32], "env": {},
         "family": None}))
    (store / "names" / "evilpkg").mkdir()
    os.symlink(f"../../profiles/{fake}", store / "names" / "evilpkg" / "1")
    os.symlink("1", store / "names" / "evilpkg" / "current")
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
    assert set(proc.stdout.split()) == {"demo", "demo/1", "evilpkg", "evilpkg/1",
                                        "pkg-demo", "pkg-demo/1"}  # never the z$(...) one
    assert not list(tmp_path.glob("PWNED*"))
    # and the listings that scripts read skip them too
    listed = subprocess.run([f"{VENV_BIN}/hdenv", "list", "profiles"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ["demo", "evilpkg"]


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


# -- 17, 18: a shared usage-log directory -----------------------------------------

@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    made = UnixUsers("hdenv21", "hdenv21g")
    try:
        made.add("a")  # the attacker
        made.add("b")  # the victim
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def shared_logs(users: UnixUsers) -> tuple[Path, Path, Path]:
    """A store everyone may read (root's), a sticky world-writable log dir, a site config."""
    store = users.base / "site-store"
    build_profiles(store, users.base, {"demo": {"env": {"DEMO": "1"}}})
    subprocess.run(["chmod", "-R", "a+rX", str(store)], check=True)
    logs = users.base / "logs"
    logs.mkdir()
    os.chmod(logs, 0o1777)
    config = users.base / "site-config.toml"
    config.write_text(f'usage-log = "file:{logs}"\n')
    os.chmod(config, 0o644)
    return store, logs, config


def _victim_loads(users: UnixUsers, store: Path, config: Path,
                  **extra: str) -> subprocess.CompletedProcess[str]:
    victim = f"{users.prefix}b"
    env = users.env(victim, HDENV_STORE=str(store), HDENV_SITE_CONFIG=str(config),
                    HDENV_CONFIG="/dev/null", **extra)
    script = 'eval "$(hdenv init bash)"\nhdenv load demo && echo "DEMO=$DEMO"\n'
    return users.run(victim, ["bash", "--norc", "--noprofile", "-c", script], env, timeout=30)


def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def test_21_17_a_fifo_in_the_log_directory_cannot_hang_a_load(
        users: UnixUsers, shared_logs: tuple[Path, Path, Path]) -> None:
    store, logs, config = shared_logs
    attacker, victim = f"{users.prefix}a", f"{users.prefix}b"
    host = os.uname().nodename
    for name in (f"{_uid(victim)}@{host}.jsonl", f"{victim}@{host}.jsonl"):  # by uid or name
        assert users.run(attacker, ["mkfifo", "-m", "666", str(logs / name)],
                         users.env(attacker)).returncode == 0
    try:
        started = time.monotonic()
        proc = _victim_loads(users, store, config)
        assert proc.returncode == 0 and proc.stdout == "DEMO=1\n", proc.stderr
        assert time.monotonic() - started < 20
        second = logs / f"{_uid(victim)}@{host}.2.jsonl"  # the record is not lost either
        (line,) = [json.loads(x) for x in second.read_text().splitlines()]
        assert line["action"] == "load" and line["uid"] == _uid(victim)
        assert os.stat(second).st_uid == _uid(victim)
    finally:
        for leftover in logs.iterdir():
            leftover.unlink()


def test_21_18_usage_records_can_be_neither_forged_nor_swallowed(
        users: UnixUsers, shared_logs: tuple[Path, Path, Path], run_hdenv: Runner) -> None:
    store, logs, config = shared_logs
    attacker, victim = f"{users.prefix}a", f"{users.prefix}b"
    host = os.uname().nodename
    planted = logs / f"{_uid(victim)}@{host}.jsonl"
    forged = json.dumps({"time": "2030-01-01T00:00:00.000Z", "user": victim, "action": "load",
                         "uid": _uid(victim), "explicit": True, "name": "forged",
                         "generation": 1, "hash": "f" * 32})
    for name in (planted, logs / f"{victim}@{host}.jsonl", logs / f"{attacker}@{host}.jsonl"):
        make = f"umask 0; printf '%s\\n' '{forged}' > {name}"
        assert users.run(attacker, ["sh", "-c", make], users.env(attacker)).returncode == 0
    try:
        proc = _victim_loads(users, store, config, USER=attacker, LOGNAME=attacker)
        assert proc.returncode == 0, proc.stderr
        assert planted.read_text() == forged + "\n"  # nothing of the victim's went there
        mine = logs / f"{_uid(victim)}@{host}.2.jsonl"
        (line,) = [json.loads(x) for x in mine.read_text().splitlines()]
        assert (line["user"], line["uid"]) == (victim, _uid(victim))  # not $USER's attacker
        report = json.loads(run_hdenv("usage", "report", "--from", str(logs), "--by", "user",
                                      "--json", check=True).stdout)
        assert [(r["key"], r["count"]) for r in report["rows"]] == [(victim, 1)]
    finally:
        for leftover in logs.iterdir():
            leftover.unlink()


# -- 13, 16, 7 (load time): every source of profile env, and family, checked ------

HOST_ENV = """
[host.evil]
programs = ["sh"]
env = {{ {var} = "x" }}

[packages.tool]
version = "1"
deps = ["evil"]
script = 'mkdir -p "$PREFIX"'
"""


@pytest.mark.parametrize("var", ["PATH", "BASH_ENV", "status", "HDENV_RECORD"])
def test_21_13_host_env_obeys_the_profile_env_rule(run_hdenv: Runner, tmp_path: Path,
                                                   store_dir: Path, var: str) -> None:
    stack = tmp_path / "h.toml"
    stack.write_text(HOST_ENV.format(var=var))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:4: host.evil.env: cannot set"
                                  f" {var!r}: "), proc.stderr
    assert not store_dir.exists() or not list((store_dir / "artifacts").glob("*"))


@pytest.mark.parametrize("where", ["host", "profile"])
def test_21_16_a_family_that_cannot_be_a_module_family_is_refused_at_build(
        run_hdenv: Runner, tmp_path: Path, where: str) -> None:
    text = ('[host.cc]\nprograms = ["sh"]\nfamily = "a b"\n' if where == "host" else
            '[packages.t]\nversion = "1"\nscript = "true"\n'
            '[profiles.p]\npackages = ["t"]\nfamily = "a b"\n')
    stack = tmp_path / "f.toml"
    stack.write_text(text)
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert "family 'a b': use letters, digits and _" in proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:")


def test_21_7_load_refuses_a_profile_whose_recorded_env_sets_a_reserved_variable(
        tmp_path: Path) -> None:
    """profile.json from another store or a cache is checked again at load time."""
    bash = require_tool("bash")
    store = tmp_path / "store"
    build_profiles(store, tmp_path, {"demo": {"env": {"DEMO": "1"}}})
    meta = Path(os.path.realpath(store / "names" / "demo" / "current")) / ".hdenv"
    data = json.loads((meta / "profile.json").read_text())
    data["env"]["BASH_ENV"] = str(tmp_path / "evil.sh")
    os.chmod(meta, 0o755)
    os.chmod(meta / "profile.json", 0o644)
    (meta / "profile.json").write_text(json.dumps(data))
    (tmp_path / "evil.sh").write_text("touch PWNED\n")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(store), "HDENV_CONFIG": str(tmp_path / "none.toml")}
    script = ('eval "$(hdenv init bash)"\nhdenv load demo; echo "rc=$?"\n'
              'echo "BASH_ENV=${BASH_ENV-unset}"\nbash -c true\n')
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c", script], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "rc=2\nBASH_ENV=unset\n", proc.stderr
    assert "sets BASH_ENV, which a profile may not set" in proc.stderr
    assert not (tmp_path / "PWNED").exists()


# -- 20: the smaller ones ---------------------------------------------------------

def test_21_20_a_full_disk_names_the_path_it_filled(run_hdenv: Runner, tmp_path: Path) -> None:
    big = tmp_path / "src" / "big.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    stack = tmp_path / "big.toml"
    stack.write_text('[packages.p]\nversion = "1"\nsources = [{ path = "src" }]\n'
                     'script = "true"\n')
    with small_tmpfs(tmp_path / "small", "8m") as small:
        for argv in (["fetch", str(big)], ["build", str(stack)]):
            proc = run_hdenv(*argv, env={"HDENV_STORE": str(small / "store")})
            assert proc.returncode == 1, proc.stderr
            assert f"no space left on the device ({small}/store/tmp/" in proc.stderr, proc.stderr
            assert "internal error" not in proc.stderr


def test_21_20_jinja2_is_required_at_a_version_without_known_sandbox_escapes() -> None:
    """CVE-2024-56201, CVE-2024-56326 (fixed in 3.1.5) and CVE-2025-27516 (3.1.6)."""
    requires = importlib.metadata.requires("hdenv") or []
    (jinja,) = [Requirement(r) for r in requires if r.lower().startswith("jinja2")]
    assert not jinja.specifier.contains("3.1.5") and jinja.specifier.contains("3.1.6")
    assert Version(importlib.metadata.version("jinja2")) >= Version("3.1.6")


# -- 14: a template's size and work are bounded --------------------------------------

BIG = 100_000_000
TEMPLATES = {
    "ljust": f"{{{{ 'x'.ljust({BIG}) }}}}",
    "printf": f"{{{{ '%0{BIG}d' % 1 }}}}",
    "format": f"{{{{ '{{:>{BIG}}}'.format(1) }}}}",
    "center": f"{{{{ 'x' | center({BIG}) }}}}",
    "replace": "{{ 'xx'" + " | replace('x', 'xxxxxxxxxx')" * 9 + " }}",
    "nested-range": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                    "{% endfor %}",
    "nested-lists": "{% for i in [1] * 1000000 %}{% for j in [1] * 1000000 %}{% endfor %}"
                    "{% endfor %}",
    "big-join": "{{ ([('x' * 1000000)] * 1000) | join }}",
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_21_14_a_template_cannot_eat_memory_or_time(hdenv_exe: str, hdenv_env: dict[str, str],
                                                    tmp_path: Path, name: str) -> None:
    def one_gib_of_address_space() -> None:  # a big value would be a MemoryError instead
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    stack = tmp_path / "t.toml"
    stack.write_text('[packages.t]\nversion = "1"\n'
                     f'env = {{ X = "{TEMPLATES[name]}" }}\nscript = "true"\n')
    started = time.monotonic()
    proc = subprocess.run([hdenv_exe, "build", "--dry-run", str(stack)], env=hdenv_env,
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=one_gib_of_address_space)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:3: unsafe template in packages.t.env"),\
        proc.stderr
    assert time.monotonic() - started < 20


# -- 15: no recursion over a depth someone else chose --------------------------------

def _deep_archive(path: Path, depth: int) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        name = "d"
        for _ in range(depth):
            name += "/a"
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        info = tarfile.TarInfo(name + "/f")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def deep_cleanup(tmp_path: Path) -> Iterator[None]:
    """pytest removes old temp dirs with shutil.rmtree, which recurses: a 1000-deep tree
    left behind (by a failing run) would break its clean-up, so remove it iteratively."""
    yield
    fdtree.remove_tree(tmp_path)


@pytest.mark.usefixtures("deep_cleanup")
def test_21_15_a_1000_deep_archive_builds_verifies_and_is_collected(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    sha = _deep_archive(tmp_path / "deep.tgz", 1000)
    stack = tmp_path / "deep.toml"
    stack.write_text(f'[packages.deep]\nversion = "1"\nsources = [{{ url = '
                     f'"file://{tmp_path}/deep.tgz", sha256 = "{sha}" }}]\n'
                     'script = \'mkdir -p "$PREFIX" && cp -r d "$PREFIX/"\'\n')
    for step in (["build", str(stack)], ["verify"], ["du"]):
        proc = run_hdenv(*step)
        assert proc.returncode == 0, (step, proc.stderr)
    (aid,) = [x.split()[0] for x in run_hdenv("list", "artifacts").stdout.splitlines()
              if x.startswith("deep/")]
    assert run_hdenv("show", aid).returncode == 0
    (store_dir / "names").rename(store_dir / "names.gone")  # nothing roots it any more
    (store_dir / "names").mkdir()
    proc = run_hdenv("gc")
    assert proc.returncode == 0, proc.stderr
    assert not (store_dir / "artifacts" / aid).exists()
    assert [p.name for p in (store_dir / "tmp").rglob("*") if "build" in p.name] == []


def test_21_15_a_deep_dependency_chain_plans(run_hdenv: Runner, tmp_path: Path) -> None:
    """1,200 packages, each depending on the next one defined (the worst order)."""
    stack = tmp_path / "chain.toml"
    stack.write_text("\n".join(
        f'[packages.p{i}]\nversion = "1"\n' + (f'deps = ["p{i - 1}"]\n' if i else "")
        + 'script = "true"\n' for i in reversed(range(1200))))
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 0, proc.stderr[-500:]
    assert len([x for x in proc.stdout.splitlines()
                if x.startswith("would build p") and not x.startswith("would build posix")]
               ) == 1200
    stack.write_text(stack.read_text().replace('[packages.p0]\nversion = "1"\n',
                                               '[packages.p0]\nversion = "1"\ndeps = ["p1199"]\n'))
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 2 and "dependency cycle: p" in proc.stderr, proc.stderr[-500:]


# -- 1, 4: a directory swapped for a symlink while a tree is chmod-ed ---------------

def test_21_1_root_refuses_fix_permissions_on_a_store_others_can_write(
        users: UnixUsers, run_hdenv: Runner) -> None:
    store = users.base / "group-store"
    first = run_hdenv("--store", str(store), "store", "fix-permissions", "--group",
                      "hdenv21g")
    assert first.returncode == 0, first.stderr  # a new store: root sets it up
    secret = users.base / "root-secret"
    secret.write_text("x")
    os.chmod(secret, 0o600)
    attacker = f"{users.prefix}a"
    assert users.run(attacker, ["ln", "-s", str(secret), str(store / "specs" / "bait")],
                     users.env(attacker)).returncode == 0
    again = run_hdenv("--store", str(store), "store", "fix-permissions")
    assert again.returncode == 1
    assert again.stderr.startswith(f"hdenv: error: refusing to write to the store {store} as"
                                   " root:"), again.stderr
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


# -- 2: a store someone else made is not trusted ----------------------------------

def test_21_2_a_store_another_user_created_is_refused(users: UnixUsers) -> None:
    """Another user pre-creates a victim's predictable store path, mode 0777, with a
    trojaned `demo`: the victim's build refuses it in one line and runs nothing."""
    attacker, victim = f"{users.prefix}a", f"{users.prefix}b"
    base = users.base / "world"
    base.mkdir()
    os.chmod(base, 0o1777)  # like /tmp
    demo = users.base / "demo"
    shutil.copytree(REPO / "examples" / "demo", demo)
    subprocess.run(["chmod", "-R", "a+rX", str(demo)], check=True)
    trap = base / f"hdenv-demo-{_uid(victim)}"
    bait = (f"umask 0; mkdir -p {trap}/names/demo && printf '#!/bin/sh\\ntouch {trap}/PWNED\\n'"
            f" > {trap}/greet && chmod 755 {trap}/greet")
    assert users.run(attacker, ["sh", "-c", bait], users.env(attacker)).returncode == 0
    env = users.env(victim, HDENV_CONFIG="/dev/null", HDENV_SITE_CONFIG="")
    proc = users.run(victim, ["hdenv", "--store", str(trap), "build",
                              str(demo / "stack.toml")], env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"hdenv: error: {trap} belongs to {attacker} (uid {_uid(attacker)}),"
                           " not to you, and is not a store of a group you are in: another"
                           " user could have put anything in it; use a store of your own"
                           " (--store, HDENV_STORE)\n")
    assert not (trap / "PWNED").exists() and not (trap / "artifacts").exists()
    # the victim's own store works, and one left writable by everyone is refused too
    own = users.home(victim) / "store"
    assert users.run(victim, ["hdenv", "--store", str(own), "build", "--dry-run",
                              str(demo / "stack.toml")], env).returncode == 0
    wide_open = users.home(victim) / "open-store"
    assert users.run(victim, ["mkdir", "-m", "777", str(wide_open)], env).returncode == 0
    open_store = users.run(victim, ["hdenv", "--store", str(wide_open), "build",
                                    str(demo / "stack.toml")], env)
    assert open_store.returncode == 2
    assert "is writable by every user" in open_store.stderr


# -- 5: a half-built artifact swapped for a link ------------------------------------

SWAP = """
[packages.swapped]
version = "1"
script = '''
mkdir -p "$PREFIX/bin" && echo built > "$PREFIX/bin/tool"
# what a member of a shared store does at this moment: the artifact's directory in the
# store (PREFIX is the build's own in its private root alias, tmp/<uid>/...) becomes a link
store=$(cd "$PREFIX/../../../../../../.." && pwd -P)
at="$store/artifacts/swapped/1/$(basename "$PREFIX")"
mv "$at" "$at.taken" && ln -s "{target}" "$at"
echo late > "$PREFIX/late"  # make install goes on: by the store's path it would land in the link
'''
"""


def test_21_5_a_half_built_artifact_swapped_for_a_link_is_not_registered(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    target = tmp_path / "victims-own-dir"
    target.mkdir()
    (target / "notes").write_text("mine\n")
    before = os.stat(target).st_mode
    stack = tmp_path / "swap.toml"
    stack.write_text(SWAP.format(target=target))
    proc = run_hdenv("build", str(stack), env={"HDENV_SANDBOX": "none"})
    assert proc.returncode == 1, proc.stderr
    # what the build wrote went in through the directory's descriptor (into the one taken
    # away), and the artifact is not registered: its path no longer leads there
    assert "was replaced while it was being built" in proc.stderr, proc.stderr
    assert os.stat(target).st_mode == before  # not made read-only
    assert sorted(os.listdir(target)) == ["notes"]  # no .hdenv written into it
    assert (target / "notes").read_text() == "mine\n"
    assert not [x for x in run_hdenv("list", "artifacts").stdout.splitlines()
                if x.startswith("swapped/")]


def test_21_5_a_build_that_replaces_its_own_prefix_with_a_link_fails_in_one_line(
        run_hdenv: Runner, tmp_path: Path) -> None:
    target = tmp_path / "victims-own-dir"
    target.mkdir()
    stack = tmp_path / "self.toml"
    stack.write_text('[packages.selfswap]\nversion = "1"\nscript = \'\'\'\n'
                     f'mkdir -p "$PREFIX/bin" && mv "$PREFIX" "$PREFIX.x" && ln -s {target}'
                     ' "$PREFIX"\n\'\'\'\n')
    proc = run_hdenv("build", str(stack), env={"HDENV_SANDBOX": "none"})
    assert proc.returncode == 1, proc.stderr
    assert "its script replaced $PREFIX" in proc.stderr and "internal error" not in proc.stderr
    assert os.listdir(target) == []


# -- 6: symlinks planted in a group store --------------------------------------------

PLANTED = """
[stack]
name = "planted"

[packages.hello]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && echo hi > "$PREFIX/bin/hello"'
"""


@pytest.mark.parametrize("where", ["names/planted", "artifacts/hello", "artifacts/hello/1"])
def test_21_6_a_planted_symlink_in_a_group_store_is_refused(
        users: UnixUsers, run_hdenv: Runner, where: str) -> None:
    attacker, victim = f"{users.prefix}a", f"{users.prefix}b"
    store = users.base / f"planted-{where.replace('/', '-')}"
    assert run_hdenv("--store", str(store), "store", "fix-permissions", "--group",
                     "hdenv21g").returncode == 0
    target = users.home(victim) / "precious"
    assert users.run(victim, ["mkdir", "-p", str(target)], users.env(victim)).returncode == 0
    link = store / where
    plant = f"mkdir -p {link.parent} && ln -s {target} {link}"
    assert users.run(attacker, ["sh", "-c", plant], users.env(attacker)).returncode == 0
    stack = users.base / f"{store.name}.toml"
    stack.write_text(PLANTED)
    os.chmod(stack, 0o644)
    env = users.env(victim, HDENV_STORE=str(store), HDENV_CONFIG="/dev/null",
                    HDENV_SITE_CONFIG="", HDENV_SANDBOX="none")
    proc = users.run(victim, ["hdenv", "build", str(stack)], env)
    assert proc.returncode == 1, proc.stderr
    assert f"{link} is not a directory but a symlink; hdenv never made it" in \
        proc.stderr, proc.stderr
    assert os.listdir(target) == []  # nothing written through the link


# -- 12: what a dry run and a stranger's stack file may store ------------------------

def test_21_12_a_dry_run_stores_nothing_and_outside_paths_need_an_opt_in(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    work = tmp_path / "stack"
    work.mkdir()
    secret = tmp_path / "secret.txt"  # outside the stack file's directory
    secret.write_text("not for the store\n")
    outside = work / "outside.toml"
    outside.write_text('[packages.p]\nversion = "1"\n'
                       f'sources = [{{ path = "{secret}", unpack = false }}]\nscript = "true"\n')
    for flags in ([], ["--dry-run"]):
        proc = run_hdenv("build", *flags, str(outside))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"hdenv: error: {outside}:3: packages.p.sources: "
                                      f"{str(secret)!r} is outside the stack file's directory")
    patched = work / "patched.toml"
    patched.write_text('[packages.p]\nversion = "1"\npatches = ["../../../../etc/passwd"]\n'
                       'script = "true"\n')
    proc = run_hdenv("build", "--dry-run", str(patched))
    assert proc.returncode == 2 and "is outside the stack file's directory" in proc.stderr
    assert not store_dir.exists()  # refused before anything, and a dry run made no store
    # inside the directory: a dry run hashes the source but stores it nowhere
    (work / "src").mkdir()
    (work / "src" / "a.txt").write_text("private\n")
    inside = work / "inside.toml"
    inside.write_text('[packages.p]\nversion = "1"\nsources = [{ path = "src" }]\n'
                      'script = "mkdir -p \\"$PREFIX\\""\n')
    assert run_hdenv("build", "--dry-run", str(inside)).returncode == 0
    assert not store_dir.exists()
    # the real build stores it, readable by its owner only
    run_hdenv("build", str(inside), check=True)
    (stored,) = (store_dir / "src" / "sha256").iterdir()
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o400
    # and with the opt-in, an outside file is used
    allowed = work / "allowed.toml"
    allowed.write_text("[stack]\nallow-outside = true\n" + outside.read_text())
    assert run_hdenv("build", str(allowed)).returncode == 0


# -- 11: a dry run runs nothing a stack file chose --------------------------------------

def test_21_11_a_dry_run_runs_no_program_the_stack_names(run_hdenv: Runner,
                                                          tmp_path: Path) -> None:
    helper = tmp_path / "helper"
    helper.write_text(f"#!/bin/sh\ntouch {tmp_path}/RAN\necho 'helper 1.0'\n")
    helper.chmod(0o755)
    if os.geteuid() == 0:  # a stranger's file, not root's own
        os.chown(helper, 65534, 65534)
        os.chmod(tmp_path, 0o777)  # where the stranger's helper would write
    for program, why in ((str(helper), "a dry run does not run it"),
                         ("/proc/self/cwd/helper", "a program name or a plain absolute path"),
                         ("./helper", "a program name or a plain absolute path"),
                         (f"{tmp_path}/../{tmp_path.name}/helper",
                          "a program name or a plain absolute path")):
        stack = tmp_path / "h.toml"
        stack.write_text(f'[host.tool]\nprograms = ["{program}"]\n\n'
                         '[packages.p]\nversion = "1"\nbuild-deps = ["tool"]\nscript = "true"\n')
        proc = run_hdenv("build", "--dry-run", str(stack), cwd=tmp_path)
        assert proc.returncode == 2, (program, proc.stderr)
        assert why in proc.stderr and proc.stderr.startswith(f"hdenv: error: {stack}:"), \
            proc.stderr
        assert not (tmp_path / "RAN").exists(), program


# -- 20: a symlinked locks/ gets nothing created in its target -----------------------

def test_21_20_a_symlinked_locks_dir_gets_no_roots_dir_in_its_target(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    (store_dir).mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, store_dir / "locks")
    stack = tmp_path / "s.toml"
    stack.write_text('[packages.p]\nversion = "1"\nscript = "mkdir -p \\"$PREFIX\\""\n')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 1, proc.stderr
    assert f"{store_dir}/locks" in proc.stderr and "symlink" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert os.listdir(elsewhere) == []  # no roots/ (nor anything) made there first

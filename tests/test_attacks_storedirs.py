"""Hardening, round two (issue 21), the store's own directories: items 2, 6 and part of 20.

Each attack runs as a real second user against a real victim (tests/unixusers.py):
another user choosing where the victim's store is (2); a member of a group store
swapping a store directory for a symlink to a directory of the victim's while the
victim's hdenv works in it (6), or swapping `locks/` (20). After each attack
`hdenv verify` names exactly what the attacker planted, and once that is removed
the victim's next build and load work.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Runner
from unixusers import UnixUsers, attacker_and_victim, group_store


@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    yield from attacker_and_victim("hdst", "hdstg")


def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def _names(users: UnixUsers) -> tuple[str, str]:
    return f"{users.prefix}a", f"{users.prefix}b"


def _victim_env(users: UnixUsers, store: Path | None = None, **extra: str) -> dict[str, str]:
    victim = f"{users.prefix}b"
    more = {"HDENV_STORE": str(store)} if store is not None else {}
    settings = {"HDENV_CONFIG": "/dev/null", "HDENV_SITE_CONFIG": "", "HDENV_SANDBOX": "none",
                **more, **extra}
    return users.env(victim, **settings)


def _as_attacker(users: UnixUsers, script: str) -> None:
    attacker = f"{users.prefix}a"
    proc = users.run(attacker, ["sh", "-c", script], users.env(attacker))
    assert proc.returncode == 0, proc.stderr


def _loads(users: UnixUsers, store: Path, name: str, program: str) -> str:
    """The victim loads `name` from `store` and runs `program` from it."""
    script = f'eval "$(hdenv init bash)"\nhdenv load {name} && {program}\n'
    proc = users.run(f"{users.prefix}b", ["bash", "--norc", "--noprofile", "-c", script],
                     _victim_env(users, store), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _precious(users: UnixUsers, what: str) -> Path:
    """An empty directory of the victim's own, which the attacker points a link at."""
    victim = f"{users.prefix}b"
    target = users.home(victim) / what
    assert users.run(victim, ["mkdir", "-p", str(target)], users.env(victim)).returncode == 0
    return target



def _verify_names_only(users: UnixUsers, store: Path, planted: str) -> None:
    proc = users.run(f"{users.prefix}b", ["hdenv", "verify"], _victim_env(users, store))
    assert proc.stdout.splitlines() == [
        f"{store}/{planted}: not a directory but a symlink, which hdenv never made (another"
        " user of the store may be trying to redirect its writes): remove it"], proc.stdout


def _undo(store: Path, where: str) -> None:
    """What the store's users do once verify named the link: remove it, and put the
    directory the attacker renamed back."""
    os.unlink(store / where)
    if (store / f"{where}.away").exists():
        os.rename(store / f"{where}.away", store / where)


# -- 2: the store's path chosen by another user ------------------------------------

def test_2_a_store_inside_another_users_directory_is_refused(users: UnixUsers) -> None:
    """Pre-creating the victim's store directory is refused since round one, so the
    attacker offers the directory *around* it: a store path inside a directory of
    theirs (one everybody may write to, as a shared scratch directory is), or their
    symlink at the predictable path pointing there. The store the victim's build made
    there was the victim's own, so nothing looked wrong, but the attacker can rename it
    away and put a trojaned one in its place whenever they like: the README's next
    command (`"$store/names/demo/current/bin/greet"`) then runs theirs. Refused before
    anything is made there, in one line naming the directory and its owner."""
    attacker, victim = _names(users)
    world = users.base / "world"
    world.mkdir()
    os.chmod(world, 0o1777)  # like /tmp
    demo = users.base / "demo"
    shutil.copytree(REPO / "examples" / "demo", demo)
    subprocess.run(["chmod", "-R", "a+rX", str(demo)], check=True)
    den = world / "scratch"
    trap = world / f"hdenv-demo-{_uid(victim)}"
    _as_attacker(users, f"mkdir -m 1777 {den} && ln -s {den}/store {trap}")
    env = _victim_env(users)
    inside = users.run(victim, ["hdenv", "--store", str(den / "mine"), "build",
                                str(demo / "stack.toml")], env, timeout=300)
    assert inside.returncode == 2, inside.stderr
    assert inside.stderr == (f"hdenv: error: {den} belongs to {attacker} (uid {_uid(attacker)}),"
                             f" not to you, and the store {den / 'mine'} is inside it: they"
                             " could swap the store for their own; use a store of your own"
                             " (--store, HDENV_STORE)\n")
    linked = users.run(victim, ["hdenv", "--store", str(trap), "build",
                                str(demo / "stack.toml")], env, timeout=300)
    assert linked.returncode == 2, linked.stderr
    assert linked.stderr == (f"hdenv: error: {trap} is a symlink that {attacker} (uid"
                             f" {_uid(attacker)}) made, not you: they chose where your store is"
                             " and could swap it for their own; use a store of your own"
                             " (--store, HDENV_STORE)\n")
    assert os.listdir(den) == []  # nothing made in the attacker's directory
    # the victim's own store: the build works, and so does loading what it made
    own = users.home(victim) / "store"
    built = users.run(victim, ["hdenv", "--store", str(own), "build", str(demo / "stack.toml")],
                      env, timeout=300)
    assert built.returncode == 0, built.stderr
    assert "Hello" in _loads(users, own, "demo", "greet")
    verified = users.run(victim, ["hdenv", "--store", str(own), "verify"], env)
    assert verified.returncode == 0 and verified.stdout == "", verified.stdout


# -- 6: store directories swapped for symlinks in a group store --------------------

PYSTACK = """
[stack]
name = "py"
description = "a profile with an interpreter"

[packages.interp]
version = "1"
script = '''
mkdir -p "$PREFIX/bin" "$PREFIX/lib/python3.99/site-packages"
cat > "$PREFIX/bin/python3.99" <<EOF
#!/bin/sh
# hdenv asks a profile's interpreter its version while it makes the profile: this
# one waits there, the moment a slow disk or a big farm gives an attacker anyway
touch "{sync}/READY"
while [ ! -e "{sync}/GO" ]; do sleep 0.05; done
echo 3.99.0
EOF
chmod 755 "$PREFIX/bin/python3.99"
'''
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the victim's hdenv ended first: {err}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _pystack(users: UnixUsers, tag: str) -> tuple[Path, Path]:
    """The stack file and the victim's directory its interpreter waits in."""
    victim = f"{users.prefix}b"
    sync = users.home(victim) / f"sync-{tag}"
    assert users.run(victim, ["mkdir", "-p", str(sync)], users.env(victim)).returncode == 0
    stack = users.base / f"py-{tag}.toml"
    stack.write_text(PYSTACK.replace("{sync}", str(sync)))
    os.chmod(stack, 0o644)
    return stack, sync


@pytest.mark.parametrize("where", ["specs", "profiles", "pins"])
def test_6_a_store_directory_swapped_for_a_symlink_is_never_written_through(
        users: UnixUsers, run_hdenv: Runner, where: str) -> None:
    """A member renames a store directory away and puts a symlink to a directory of the
    victim's in its place while the victim's hdenv works: `specs/` and `profiles/`
    while a build makes its profile (checked once, at the start, they used to be
    written by path: the profile and its description landed in the victim's
    directory), `pins/` before `hdenv pin` (never checked at all)."""
    victim = f"{users.prefix}b"
    store = group_store(users, run_hdenv, f"swap-{where}")
    precious = _precious(users, f"precious-{where}")
    stack, sync = _pystack(users, where)
    env = _victim_env(users, store)
    swap = (f"{{ mv {store}/{where} {store}/{where}.away 2>/dev/null || true; }}"
            f" && ln -s {precious} {store}/{where}")
    if where == "pins":
        (sync / "GO").touch()
        built = users.run(victim, ["hdenv", "build", str(stack)], env, timeout=300)
        assert built.returncode == 0, built.stderr
        _as_attacker(users, swap)
        proc = users.run(victim, ["hdenv", "pin", "py"], env)
    else:
        running = subprocess.Popen(users.command(victim, ["hdenv", "build", str(stack)], env),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(sync / "READY", running)
            _as_attacker(users, swap)
            (sync / "GO").touch()
            out, err = running.communicate(timeout=300)
        finally:
            if running.poll() is None:
                running.kill()
        proc = subprocess.CompletedProcess(running.args, running.returncode, out, err)
    assert os.listdir(precious) == []  # nothing written through the link
    assert proc.returncode == 1, proc.stderr
    assert (f"hdenv: error: {store}/{where} is not a directory but a symlink; hdenv never made"
            " it") in proc.stderr, proc.stderr
    _verify_names_only(users, store, where)
    _undo(store, where)
    again = users.run(victim, ["hdenv", "build", str(stack)], env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _loads(users, store, "py", "python3.99 -c pass") == "3.99.0\n"
    if where == "pins":
        assert users.run(victim, ["hdenv", "pin", "py"], env).returncode == 0


def _entries(path: Path) -> int:
    try:
        return len(os.listdir(path))
    except FileNotFoundError:
        return 0


# -- 20 (part): locks/ swapped for a symlink gets nothing made in its target --------

def test_20_a_locks_dir_swapped_for_a_symlink_gets_no_roots_dir_in_its_target(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """`locks/` is checked when a build starts; the build then removes what a killed run
    of the victim's left in tmp/ (a big tree takes a while) and registers its GC roots in
    locks/roots/. A member who swaps locks/ for a symlink meanwhile used to get roots/
    made in its target (and the victim's root file in it)."""
    victim = f"{users.prefix}b"
    store = group_store(users, run_hdenv, "swap-locks")
    precious = _precious(users, "precious-locks")
    stack, sync = _pystack(users, "locks")
    (sync / "GO").touch()
    env = _victim_env(users, store)
    first = users.run(victim, ["hdenv", "build", str(stack)], env, timeout=300)
    assert first.returncode == 0, first.stderr
    # what a killed run of the victim's left: a run lock nobody holds and a big build tree
    private = store / "tmp" / str(_uid(victim))
    leftover = private / "deadbeef0000.build-x"
    make = (f"import os\nos.mkdir({str(leftover)!r})\n"
            f"open({str(private / 'run-deadbeef0000.lock')!r}, 'w').close()\n"
            f"for i in range(40000):\n"
            f"    open(os.path.join({str(leftover)!r}, f'f{{i}}'), 'w').close()\n")
    assert users.run(victim, [users.python, "-c", make], users.env(victim),
                     timeout=300).returncode == 0
    (stack.parent / "py-locks-2.toml").write_text(stack.read_text().replace('"1"', '"2"'))
    os.chmod(stack.parent / "py-locks-2.toml", 0o644)
    running = subprocess.Popen(
        users.command(victim, ["hdenv", "build", str(stack.parent / "py-locks-2.toml")], env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _entries(leftover) >= 40000:  # the clean-up has begun: ensure() is past
            assert running.poll() is None, running.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        _as_attacker(users, f"mv {store}/locks {store}/locks.away && ln -s {precious}"
                            f" {store}/locks")
        out, err = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
    assert os.listdir(precious) == []  # no roots/ (nor anything) made there
    assert running.returncode == 1, err
    assert (f"hdenv: error: {store}/locks is not a directory but a symlink; hdenv never made"
            " it") in err, err
    _verify_names_only(users, store, "locks")
    _undo(store, "locks")
    again = users.run(victim, ["hdenv", "build", str(stack.parent / "py-locks-2.toml")], env,
                      timeout=300)
    assert again.returncode == 0, again.stderr
    assert _loads(users, store, "py", "python3.99 -c pass") == "3.99.0\n"


# -- 6 (logs/): a failed build's log and kept directory -----------------------------

FAILSTACK = """
[packages.fails]
version = "1"
script = '''
touch "{sync}/READY"
while [ ! -e "{sync}/GO" ]; do sleep 0.05; done
echo "this build fails on purpose"
exit 3
'''
"""


def test_6_a_failed_build_never_writes_its_log_through_a_planted_logs_link(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """`logs/` swapped for a link to the victim's directory while the victim's build runs:
    the failed log (and, with --keep-failed, the build directory) used to be written by
    path, into the victim's directory; now logs/ is opened without following links."""
    victim = f"{users.prefix}b"
    store = group_store(users, run_hdenv, "swap-logs")
    precious = _precious(users, "precious-logs")
    sync = users.home(victim) / "sync-logs"
    assert users.run(victim, ["mkdir", "-p", str(sync)], users.env(victim)).returncode == 0
    stack = users.base / "fails.toml"
    stack.write_text(FAILSTACK.replace("{sync}", str(sync)))
    os.chmod(stack, 0o644)
    env = _victim_env(users, store)
    (sync / "GO").touch()
    first = users.run(victim, ["hdenv", "build", str(stack)], env)  # makes logs/ (and fails)
    assert first.returncode == 1, first.stderr
    os.unlink(sync / "READY")
    os.unlink(sync / "GO")
    running = subprocess.Popen(
        users.command(victim, ["hdenv", "build", "--keep-failed", str(stack)], env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(sync / "READY", running)
        _as_attacker(users, f"mv {store}/logs {store}/logs.away && ln -s {precious} {store}/logs")
        (sync / "GO").touch()
        out, err = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
    assert os.listdir(precious) == []  # neither the log nor the build directory
    assert running.returncode == 1, err
    assert "this build fails on purpose" in err  # the log's tail is still shown
    assert f"the log was not kept: {store}/logs is not a directory but a symlink" in err
    _verify_names_only(users, store, "logs")
    _undo(store, "logs")


# -- 6 (tmp/, logs/): a member's private entries cannot be renamed away ------------

def test_6_a_member_cannot_rename_away_anothers_tmp_or_log(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """A running build works in `tmp/<uid>/...` by path. Were tmp/ a plain group-writable
    directory, a member could rename the victim's `tmp/<uid>` away mid-build and put a
    directory of theirs there, with a link where the victim's build directory was. The
    administrator's `fix-permissions` makes tmp/ and logs/ sticky (and theirs), as /tmp."""
    attacker, victim = _names(users)
    store = group_store(users, run_hdenv, "sticky")
    for sub in ("tmp", "logs"):
        st = os.stat(store / sub)
        assert st.st_mode & 0o1000 and st.st_uid == os.getuid(), sub  # sticky, root's
    sync = users.home(victim) / "sync-sticky"
    assert users.run(victim, ["mkdir", "-p", str(sync)], users.env(victim)).returncode == 0
    stack = users.base / "sticky.toml"
    stack.write_text(FAILSTACK.replace("{sync}", str(sync)))
    os.chmod(stack, 0o644)
    env = _victim_env(users, store)
    running = subprocess.Popen(users.command(victim, ["hdenv", "build", str(stack)], env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(sync / "READY", running)
        mine = store / "tmp" / str(_uid(victim))
        assert mine.is_dir()
        moved = users.run(attacker, ["mv", str(mine), str(store / "tmp" / "away")],
                          users.env(attacker))
        assert moved.returncode != 0 and "Operation not permitted" in moved.stderr
        (sync / "GO").touch()
        out, err = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 1 and "this build fails on purpose" in err, err
    (log,) = (store / "logs").iterdir()  # the victim's failed log, kept
    assert log.stat().st_uid == _uid(victim)
    gone = users.run(attacker, ["rm", "-f", str(log)], users.env(attacker))
    assert gone.returncode != 0 and log.exists()
    # the attacker's own entries are theirs to make and remove
    own = users.run(attacker, ["sh", "-c", f"mkdir {store}/tmp/mine && rmdir {store}/tmp/mine"],
                    users.env(attacker))
    assert own.returncode == 0, own.stderr
    verify = users.run(victim, ["hdenv", "verify"], env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# -- 5 (the sandbox's mount): a half-built artifact swapped before bwrap binds it ----

BIGSTACK = """
[packages.slow]
version = "1"
sources = [{{ path = "{archive}" }}]
script = 'mkdir -p "$PREFIX/bin" && echo planted > "$PREFIX/bin/planted"'
"""

SWAPPER = """
v={version_dir}
while [ ! -d "$v" ] || [ -z "$(ls "$v")" ]; do :; done
h=$(ls "$v" | head -n 1)
mv "$v/$h" "$v/$h.away" && ln -s {precious} "$v/$h" && echo swapped
"""


def test_5_a_sandboxed_build_binds_its_artifact_directory_not_the_path(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """The artifact directory is made, then the sources are unpacked, then bwrap starts:
    a member who swaps the directory for a link meanwhile used to get the build's
    `make install` bound onto the link's target (bwrap resolved the path). Now the
    directory is opened without following links and bound by descriptor."""
    attacker, victim = _names(users)
    store = group_store(users, run_hdenv, "bindfd")
    precious = _precious(users, "precious-bindfd")
    tree = users.base / "bigsrc"
    tree.mkdir()
    for i in range(400):  # unpacking takes a while: the window the attacker uses
        (tree / f"f{i}.dat").write_bytes(os.urandom(50_000))
    stack = users.base / "big.toml"
    stack.write_text(BIGSTACK.format(archive=tree))
    os.chmod(stack, 0o644)
    for p in [tree, *tree.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    env = _victim_env(users, store, HDENV_SANDBOX="bwrap")
    version_dir = store / "artifacts" / "slow" / "1"
    swapper = subprocess.Popen(
        users.command(attacker, ["sh", "-c", SWAPPER.format(version_dir=version_dir,
                                                             precious=precious)],
                      users.env(attacker)), stdout=subprocess.PIPE, text=True)
    try:
        proc = users.run(victim, ["hdenv", "build", str(stack)], env, timeout=300)
        swapped = swapper.communicate(timeout=60)[0]
    finally:
        if swapper.poll() is None:
            swapper.kill()
    assert swapped == "swapped\n"
    assert os.listdir(precious) == []  # nothing written through the link
    assert proc.returncode == 1, proc.stderr
    assert "is no longer the directory being built" in proc.stderr, proc.stderr

"""Hardening, round two (issue 21), items 1, 4, 5 and 15: trees walked, chmod-ed, sized
and removed through directory descriptors, and nothing recursing over a depth someone
else chose.

Each test names its item. The attacks need a second user: a member of a group store
(`hdtreea`) against another member (`hdtreeb`) or against root. Where the attack is a
race, the attacker is a real process of that user running while the victim's hdenv
does, written so that it wins against the code before the fix every time (it waits
for the moment that matters instead of hoping to hit it).
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner
from unixusers import UnixUsers, attacker_and_victim, group_store

from hdenv.store import fdtree

ATTACKER, VICTIM = "hdtreea", "hdtreeb"


@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    yield from attacker_and_victim("hdtree", "hdtreeg")



def _env(users: UnixUsers, who: str, store: Path, **extra: str) -> dict[str, str]:
    return users.env(who, HDENV_STORE=str(store), HDENV_CONFIG="/dev/null",
                     HDENV_SITE_CONFIG="", HDENV_SANDBOX="none", HDENV_JOBS="1", **extra)


def _script(users: UnixUsers, name: str, text: str) -> Path:
    path = users.base / name
    path.write_text(textwrap.dedent(text))
    os.chmod(path, 0o644)
    return path


def _attacker(users: UnixUsers, script: Path, *args: str) -> subprocess.Popen[str]:
    """The attacker's program, running as the attacker beside the victim."""
    argv = users.command(ATTACKER, [users.python, str(script), *args], users.env(ATTACKER))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=users.base)


def _finish(attack: subprocess.Popen[str]) -> str:
    try:
        out, err = attack.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        attack.kill()
        out, err = attack.communicate()
    return out + err


VICTIM_STACK = """
[stack]
name = "mine"

[packages.mine]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho mine\\n" > "$PREFIX/bin/mine" && chmod 755 "$PREFIX/bin/mine"'
"""


def _victim_builds_and_loads(users: UnixUsers, store: Path, tag: str) -> None:
    """What the victim does next in the store: build a stack, load it, run its program."""
    stack = _script(users, f"{tag}-mine.toml", VICTIM_STACK.replace('"1"', f'"{tag}"'))
    env = _env(users, VICTIM, store)
    built = users.run(VICTIM, ["hdenv", "build", str(stack)], env)
    assert built.returncode == 0, built.stderr
    load = users.run(VICTIM, ["bash", "--norc", "--noprofile", "-c",
                              'eval "$(hdenv init bash)" && hdenv load mine && mine'], env)
    assert load.returncode == 0 and load.stdout == "mine\n", load.stderr


def _verify(users: UnixUsers, store: Path) -> subprocess.CompletedProcess[str]:
    return users.run(VICTIM, ["hdenv", "verify"], _env(users, VICTIM, store))


# -- 1: root making a store shared never changes what a member swaps in ------------

FLIP = """
import ctypes, os, stat, sys, time

libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD = 2, -100
directory, stop, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
deadline = time.monotonic() + 120
while not os.stat(directory).st_mode & stat.S_IWGRP:  # not open to the group yet
    if os.path.exists(stop) or time.monotonic() > deadline:
        sys.exit("never opened to the group")
names = [(os.path.join(directory, a).encode(), os.path.join(directory, b).encode())
         for a, b in zip(pairs[::2], pairs[1::2])]
flips = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    for a, b in names:  # each name is a directory one moment, the bait the next
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
            flips += 1
print("flips", flips)
"""


def test_1_root_making_a_store_shared_never_changes_what_a_member_swaps_in(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """Root runs `store fix-permissions --group` on its own store. As soon as the walk
    has opened src/many to the group, a member keeps exchanging directories there with
    root's 0600 files and with links to root's 0600 files elsewhere (renameat2
    RENAME_EXCHANGE, in a tight loop). Before, root gave a file the directory's mode
    (02775: group-writable) or ended in `internal error: ValueError` with the store
    half done; now a directory is opened to the group only once everything in it is
    done, and every change goes to the inode that was listed."""
    store = users.base / "root-store"
    for sub in ("", "src", "specs", "artifacts", "profiles", "names", "tmp", "locks"):
        (store / sub).mkdir(mode=0o755)
    many = store / "src" / "many"
    many.mkdir(mode=0o755)
    for i in range(2000):  # the rest of a walk that takes a while
        (many / f"f{i}").write_text("x")
    secrets, outside, pairs = [], [], []
    for i in range(8):
        (many / f"dir{i}").mkdir(mode=0o755)
        (many / f"root-only{i}").write_text("root's\n")
        os.chmod(many / f"root-only{i}", 0o600)
        secrets.append(many / f"root-only{i}")
        pairs += [f"dir{i}", f"root-only{i}"]
        (many / f"way{i}").mkdir(mode=0o755)
        outside.append(users.base / f"root-outside{i}")
        outside[-1].write_text("root's too\n")
        os.chmod(outside[-1], 0o600)
        os.symlink(outside[-1], many / f"link{i}")
        pairs += [f"way{i}", f"link{i}"]
    stop = users.base / "stop-flipping"
    attack = _attacker(users, _script(users, "flip.py", FLIP), str(many), str(stop), *pairs)
    time.sleep(0.3)  # the attacker is waiting before root starts
    try:
        proc = run_hdenv("--store", str(store), "store", "fix-permissions", "--group",
                         users.group)
    finally:
        stop.write_text("")
    said = _finish(attack)
    assert proc.returncode == 0 and "internal error" not in proc.stderr, (proc.stderr, said)
    for secret in secrets:  # wherever the member left it: group-readable at most
        (st,) = [st for p in (secret, many / secret.name.replace("root-only", "dir"))
                 if stat.S_ISREG((st := os.lstat(p)).st_mode)]
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o7022 == 0, \
            (secret.name, oct(st.st_mode), said)
    for path in outside:
        st = os.stat(path)
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o600), (path.name, said)
    # the store is a group store now: the same against a member who runs fix-permissions
    # in it, in a directory that is the group's to change all along
    home = users.home(VICTIM)
    make = ["umask 002", f"mkdir {store}/src/mine", f"cd {store}/src/mine",
            "for i in $(seq 2000); do echo x > f$i; done"]
    pairs = []
    for i in range(8):
        make += [f"mkdir -m 700 dir{i} way{i}", f"echo mine > mine{i} && chmod 600 mine{i}",
                 f"echo private > {home}/private{i} && chmod 600 {home}/private{i}",
                 f"ln -s {home}/private{i} link{i}"]
        pairs += [f"dir{i}", f"mine{i}", f"way{i}", f"link{i}"]
    assert users.run(VICTIM, ["sh", "-c", " && ".join(make)], users.env(VICTIM)).returncode == 0
    stop.unlink()
    attack = _attacker(users, _script(users, "flip.py", FLIP), str(store / "src" / "mine"),
                       str(stop), *pairs)
    time.sleep(0.3)
    try:
        runs = [users.run(VICTIM, ["hdenv", "store", "fix-permissions"],
                          _env(users, VICTIM, store)) for _ in range(3)]
    finally:
        stop.write_text("")
    said = _finish(attack)
    for run in runs:
        assert run.returncode == 0 and "internal error" not in run.stderr, (run.stderr, said)
    mine = store / "src" / "mine"
    for i in range(8):
        (st,) = [st for name in (f"dir{i}", f"mine{i}")
                 if stat.S_ISREG((st := os.lstat(mine / name)).st_mode)]
        assert stat.S_IMODE(st.st_mode) & 0o7022 == 0, (i, oct(st.st_mode), said)
        private = os.stat(home / f"private{i}")
        assert stat.S_IMODE(private.st_mode) == 0o600, (i, oct(private.st_mode), said)
    verify = _verify(users, store)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _victim_builds_and_loads(users, store, "1")


# -- 4: gc never follows a link a member planted on the way ---------------------------

def test_4_gc_never_removes_or_chmods_through_a_planted_link(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """A member plants artifacts/junk/1 -> the victim's ~/work and artifacts/junk2 -> the
    victim's ~/more. Before, the victim's `gc` listed ~/work's directories as leftovers of
    interrupted builds and deleted them (or chmod-ed them u+w and then failed with
    `internal error: NotADirectoryError`), `gc --dry-run` and `du` measured them, and
    verify said 0 problems. Then the member races the victim's gc, exchanging garbage
    artifacts with links to a read-only directory of the victim's: before, `internal
    error: ValueError` (or the link's target made writable). Now no link is followed
    below artifacts/ and each change goes to the inode that was looked at."""
    store = group_store(users, run_hdenv, "gc-store")
    _victim_builds_and_loads(users, store, "4a")
    home = users.home(VICTIM)
    make = (f"mkdir -p {home}/work/keepme {home}/work/readonly {home}/more/1/keepme2"
            f" && echo mine > {home}/work/keepme/file && echo mine > {home}/more/1/keepme2/f"
            f" && chmod 555 {home}/work/readonly && chmod 711 {home} {home}/work {home}/more")
    assert users.run(VICTIM, ["sh", "-c", make], users.env(VICTIM)).returncode == 0
    before = _snapshot(home)
    plant = (f"mkdir -p {store}/artifacts/junk && ln -s {home}/work {store}/artifacts/junk/1"
             f" && ln -s {home}/more {store}/artifacts/junk2")
    assert users.run(ATTACKER, ["sh", "-c", plant], users.env(ATTACKER)).returncode == 0
    env = _env(users, VICTIM, store)
    dry = users.run(VICTIM, ["hdenv", "gc", "--dry-run"], env)
    assert dry.returncode == 0 and "keepme" not in dry.stdout + dry.stderr, dry
    du = users.run(VICTIM, ["hdenv", "du"], env)
    assert du.returncode == 0, du.stderr
    gc = users.run(VICTIM, ["hdenv", "gc"], env)
    assert gc.returncode == 0, gc.stderr
    assert "keepme" not in gc.stdout + gc.stderr and "internal error" not in gc.stderr
    assert _snapshot(home) == before  # nothing removed, nothing chmod-ed
    assert os.path.islink(store / "artifacts" / "junk" / "1")  # left for verify to name
    verify = _verify(users, store)
    assert "keepme" not in verify.stdout + verify.stderr, verify
    assert verify.returncode == 0 or all(
        "junk" in line for line in verify.stdout.splitlines()[:-1]), verify.stdout
    # the race: while the victim's gc removes 8 garbage artifacts of the victim's own
    # (read-only, so gc makes each writable to move it), the member keeps exchanging
    # each with a link to the victim's read-only ~/work/readonly
    garbage = _script(users, "garbage.toml", '[stack]\nname = "garbage"\n' + "".join(
        f'[packages.g{i}]\nversion = "1"\nscript = \'mkdir -p "$PREFIX/d"\'\n'
        for i in range(8)))
    built = users.run(VICTIM, ["hdenv", "build", str(garbage)], env)
    assert built.returncode == 0, built.stderr
    assert users.run(VICTIM, ["rm", "-r", str(store / "names" / "garbage")], env).returncode == 0
    pairs = []
    for i in range(8):
        (hash_,) = os.listdir(store / "artifacts" / f"g{i}" / "1")
        link = f"g{i}/1/zz"
        assert users.run(ATTACKER, ["ln", "-s", f"{home}/work/readonly",
                                    str(store / "artifacts" / link)],
                         users.env(ATTACKER)).returncode == 0
        pairs += [f"g{i}/1/{hash_}", link]
    before = _snapshot(home)
    stop = users.base / "stop-flipping-4"
    attack = _attacker(users, _script(users, "flip.py", FLIP), str(store / "artifacts"),
                       str(stop), *pairs)
    time.sleep(0.3)
    try:
        gc = users.run(VICTIM, ["hdenv", "gc"], env)
    finally:
        stop.write_text("")
    said = _finish(attack)
    assert gc.returncode == 0 and "internal error" not in gc.stderr, (gc.stderr, said)
    assert _snapshot(home) == before, said  # ~/work/readonly still 0555, nothing removed
    verify = _verify(users, store)  # at most what the member left: its links, or the
    for line in verify.stdout.splitlines()[:-1]:  # directories it moved to their names
        assert "junk" in line or "/1/zz:" in line, verify.stdout
    _victim_builds_and_loads(users, store, "4b")


def _snapshot(home: Path) -> list[tuple[str, int]]:
    """Every path under `home` with its mode (as root sees it)."""
    out = [(".", os.lstat(home).st_mode)]
    for dirpath, dirnames, filenames in fdtree.walk(home):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out.append((os.path.relpath(p, home), os.lstat(p).st_mode))
    return sorted(out)


# -- 5: nothing planted in a half-built artifact is written through -----------------------

PLANT_IN_PREFIX = """
import os, sys, time

version_dir, target = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
while True:
    try:
        built = [n for n in os.listdir(version_dir) if not n.startswith(".")]
    except FileNotFoundError:
        built = []
    if built:
        break
    if time.monotonic() > deadline:
        sys.exit("no build came")
    time.sleep(0.01)
link = os.path.join(version_dir, built[0], "bin")
done = os.path.join(version_dir, built[0], ".hdenv", "artifact.json")
while time.monotonic() < deadline and not os.path.exists(done):
    try:
        os.symlink(target, link)
        print("planted", link)
        break
    except PermissionError:  # the build's directory is not open to the group
        time.sleep(0.01)
    except FileExistsError:
        break
"""

WAITS_FOR_A_PLANT = """
[stack]
name = "five"

[packages.five]
version = "1"
script = '''
# a slow configure step: time for another member to act (5 s at most)
i=0; while [ ! -L "$PREFIX/bin" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p "$PREFIX/bin" && echo built > "$PREFIX/bin/tool"
'''
"""


def test_5_a_member_cannot_plant_a_link_in_a_half_built_artifact(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """While the victim builds into the shared store, a member plants `bin` -> a directory
    of the victim's inside the half-built artifact. Before, the directory was
    group-writable, the build's `make install` wrote the victim's `tool` into the
    victim's own directory and hdenv registered an artifact whose bin/ points out of the
    store (verify: 0 problems). Now the group may only search it while it is built."""
    store = group_store(users, run_hdenv, "build-store")
    precious = users.home(VICTIM) / "precious"
    assert users.run(VICTIM, ["sh", "-c", f"mkdir -p {precious} && chmod 755 {precious}"
                              f" {precious.parent}"], users.env(VICTIM)).returncode == 0
    stack = _script(users, "five.toml", WAITS_FOR_A_PLANT)
    attack = _attacker(users, _script(users, "plant5.py", PLANT_IN_PREFIX),
                       str(store / "artifacts" / "five" / "1"), str(precious))
    proc = users.run(VICTIM, ["hdenv", "build", str(stack)], _env(users, VICTIM, store))
    said = _finish(attack)
    assert proc.returncode == 0, (proc.stderr, said)
    assert os.listdir(precious) == [], said  # nothing written through a member's link
    (artifact,) = (store / "artifacts" / "five" / "1").iterdir()
    tool = artifact / "bin" / "tool"
    assert not (artifact / "bin").is_symlink() and tool.read_text() == "built\n"
    verify = _verify(users, store)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _victim_builds_and_loads(users, store, "5")


# -- 15: nothing recurses over a depth someone else chose ------------------------------

@pytest.fixture
def deep_cleanup(tmp_path: Path) -> Iterator[None]:
    """pytest removes old temp dirs with shutil.rmtree, which recurses: remove what this
    test made (1,000 deep) without recursion."""
    yield
    fdtree.remove_tree(tmp_path)


DEEP_PACKAGE = """
[packages.{name}]
version = "1"
script = '''
d="$PREFIX/share/deep/$(i=0; while [ $i -lt 1000 ]; do printf a/; i=$((i+1)); done)"
mkdir -p "$d" && echo {name} > "$d/{name}"
'''
"""


@pytest.mark.usefixtures("deep_cleanup")
def test_15_deep_chains_and_deep_trees_are_no_internal_error(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    """A 1,100-deep dependency chain whose bottom package fails to build, and a profile of
    two artifacts sharing a 1,000-deep directory. Before: `internal error:
    RecursionError` (the scheduler skipping the failed package's dependents; the
    profile's symlink farm merging the two trees). Now: a failed build (exit 1, its
    dependents skipped, no build directory left), and a profile that builds,
    verifies, is measured and survives gc."""
    chain = tmp_path / "chain.toml"
    chain.write_text("\n".join(
        f'[packages.p{i}]\nversion = "1"\n' + (f'deps = ["p{i - 1}"]\n' if i else "")
        + ('script = "exit 3"\n' if i == 0 else 'script = "mkdir -p $PREFIX"\n')
        for i in reversed(range(1100))))
    proc = run_hdenv("build", str(chain))
    assert proc.returncode == 1, proc.stderr[-800:]
    assert "internal error" not in proc.stderr and "build of p0/1/" in proc.stderr, \
        proc.stderr[-800:]
    assert [p for p in (store_dir / "tmp").rglob("build-*")] == []
    deep = tmp_path / "deep.toml"
    deep.write_text('[stack]\nname = "deep"\n' + DEEP_PACKAGE.format(name="left")
                    + DEEP_PACKAGE.format(name="right"))
    for step in (["build", str(deep)], ["verify"], ["du"], ["gc"]):
        proc = run_hdenv(*step)
        assert proc.returncode == 0, (step, proc.stderr[-800:])
    profile = Path(run_hdenv("path", "deep").stdout.strip())
    leaf = profile.joinpath("share", "deep", *["a"] * 1000)
    assert sorted(os.listdir(leaf)) == ["left", "right"]

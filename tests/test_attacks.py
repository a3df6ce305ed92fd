"""The adversarial pass of issue 10, one test per numbered attack, through the real program.

Each test reproduces the attack as it was reported and shows it is now
refused, detected or harmless. Attacks that need a second user sharing a
store create one with useradd (root only; CI runs as root).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner, require, require_tool
from shellfixtures import make_profile
from usersupport import User, as_user, gone, other_users, world_readable_dir

from hdenv.shell.quoting import get_shell
from hdenv.store import tmpdirs
from hdenv.store.fsutil import make_writable
from hdenv.store.layout import Store


@pytest.fixture
def hdenv_env(hdenv_env: dict[str, str]) -> dict[str, str]:
    """Builds unsandboxed: these tests watch build processes from outside, through pid
    files under the test's tmp dir, which the sandbox rightly hides from builds
    (the sandbox has its own tests in test_bwrap.py)."""
    return {**hdenv_env, "HDENV_SANDBOX": "none"}

# -- 2: Jinja templates run sandboxed ------------------------------------------


def test_2_stack_file_templates_cannot_reach_python(run_hdenv: Runner, tmp_path: Path,
                                                    store_dir: Path) -> None:
    stack = tmp_path / "evil.toml"
    stack.write_text(
        '[packages.a]\nversion = "1"\n'
        """when = "cycler.__init__.__globals__.os.system('id > pwned') == 0"\n"""
        "script = 'true'\n")
    proc = run_hdenv("build", "--dry-run", str(stack), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:3: unsafe condition in packages.a.when")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "pwned").exists()
    stack.write_text('[packages.a]\nversion = "1"\n'
                     "env = { X = \"{{ ''.__class__.__mro__ }}\" }\n")
    proc = run_hdenv("build", "--dry-run", str(stack), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:3: unsafe template in packages.a.env.X:"
                           " access to attribute '__class__' of 'str' object is unsafe.\n")
    assert not store_dir.exists()


def test_2_templates_cannot_exhaust_memory(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "big.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = "{{ \'x\' * 10 ** 12 }}"\n')
    proc = run_hdenv("build", "--dry-run", str(stack), timeout=60)
    assert proc.returncode == 2 and "unsafe template" in proc.stderr, proc.stderr


# -- 8: every input problem is found before the store is touched ----------------


def test_8_matrix_value_that_is_a_path_is_refused_first(run_hdenv: Runner, tmp_path: Path,
                                                        store_dir: Path) -> None:
    stack = tmp_path / "m.toml"
    stack.write_text('[matrix]\nv = ["ok", "../../x"]\n\n'
                     '[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX"\n')
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:2: matrix value '../../x' of v makes the"
                           " profile name 'm-../../x': use letters, digits, '.', '_', '+', '-',"
                           " not starting with '.' or '-'\n")
    assert not store_dir.exists()


def test_8_profile_env_key_must_be_a_variable_in_every_shell(run_hdenv: Runner, tmp_path: Path,
                                                            store_dir: Path) -> None:
    for key, why in (('"A;touch x;B"', "not a variable name"), ("PATH", "set by `hdenv load`"),
                     ("status", "special in fish"), ("HDENV_RECORD", "hdenv's own record")):
        stack = tmp_path / "e.toml"
        stack.write_text('[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX"\n\n'
                         f'[profiles.p]\npackages = ["a"]\nenv = {{ {key} = "v" }}\n')
        proc = run_hdenv("build", str(stack))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"hdenv: error: {stack}:7: profiles.p.env: cannot set")
        assert why in proc.stderr
    assert not store_dir.exists()


def test_8_planning_errors_leave_the_store_untouched(run_hdenv: Runner, tmp_path: Path,
                                                     store_dir: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x\n")
    stack = tmp_path / "p.toml"
    body = ('[host.cc]\nprograms = ["sh"]\n\n'
            '[packages.a]\nversion = "1"\nsources = [{ path = "src" }]\nscript = "true"\n\n'
            '[packages.b]\nversion = "1"\nsources = [{ path = "missing" }]\nscript = "true"\n')
    stack.write_text(body)
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hdenv: error: {stack}:11: packages.b: source path")
    assert not store_dir.exists()
    stack.write_text(body.replace('"missing"', '"src"').replace('["sh"]',
                                                               '["sh", "no-such-program-x"]'))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:1: host.cc: host program "
                           "'no-such-program-x' not found on PATH\n")
    assert not store_dir.exists()
    (tmp_path / "src" / "out").symlink_to("/etc/passwd")
    stack.write_text(body.replace('"missing"', '"src"'))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2 and "leaves the tree" in proc.stderr
    assert not store_dir.exists()


def test_8_deeply_nested_toml_is_an_input_error(run_hdenv: Runner, tmp_path: Path,
                                                store_dir: Path) -> None:
    stack = tmp_path / "deep.toml"
    stack.write_text("# nested\na = " + "[" * 5000 + "]" * 5000 + "\n")
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 2
    assert proc.stderr == (f"hdenv: error: {stack}:2: invalid TOML: arrays or tables nested"
                           " too deeply\n")
    assert not store_dir.exists()


# -- 10: ordinary conditions are one-line errors ---------------------------------


def test_10_bad_hdenv_jobs_breaks_builds_only(run_hdenv: Runner, tmp_path: Path) -> None:
    env = {"HDENV_JOBS": "many"}
    for args in (("list", "artifacts"), ("list", "profiles"), ("verify",)):
        proc = run_hdenv(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
    stack = tmp_path / "s.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX"\n')
    proc = run_hdenv("build", str(stack), env=env)
    assert proc.returncode == 2
    assert proc.stderr == "hdenv: error: jobs must be a whole number, got 'many'\n"


# -- 1: a hostile member of a shared store cannot redirect writes ----------------

LOCKED = '[packages.a]\nversion = "1"\nscript = "mkdir -p $PREFIX/bin"\n'


def _hdenv_env(store: Path, base: Path) -> dict[str, str]:
    cfg = base / "empty-config.toml"
    if not cfg.exists():
        cfg.write_text("")
        os.chmod(cfg, 0o644)
    env = {k: v for k, v in os.environ.items() if k != "HDENV_MIRRORS"}
    return {**env, "HDENV_STORE": str(store), "HDENV_CONFIG": str(cfg), "HDENV_JOBS": "1"}


def _group_store(base: Path, gid: int) -> Path:
    """A store as a site shares it with a group: set-gid, group-writable directories."""
    store = base / "store"
    for d in ("", "tmp", "locks", "src", "specs", "artifacts", "profiles", "names"):
        (store / d).mkdir(parents=True, exist_ok=True)
        os.chown(store / d, 0, gid)
        os.chmod(store / d, 0o2775)
    return store


def _owned_dir(path: Path, user: User) -> Path:
    path.mkdir(mode=0o777)
    os.chown(path, user.uid, user.gid)
    return path


def test_1_root_refuses_a_store_other_users_can_write(hdenv_exe: str, tmp_path: Path) -> None:
    with other_users("hdenv10a", group="hdenv10g") as users, world_readable_dir() as base:
        attacker = users["hdenv10a"]
        store = _group_store(base, attacker.gid)
        loot = _owned_dir(base / "attacker", attacker)
        # the attack: tmp swapped for a symlink into the attacker's directory, and a
        # lock planted as a symlink to a file root would create
        assert as_user(attacker, ["mv", str(store / "tmp"), str(store / "tmp.old")]
                       ).returncode == 0
        assert as_user(attacker, ["ln", "-s", str(loot), str(store / "tmp")]).returncode == 0
        (tmp_path / "s.toml").write_text(LOCKED)
        proc = subprocess.run([hdenv_exe, "build", str(tmp_path / "s.toml")],
                              env=_hdenv_env(store, base), capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == (f"hdenv: error: refusing to write to the store {store} as root:"
                               f" {store} is writable by group {attacker.gid}, so another user"
                               " could redirect root's writes there; build as an ordinary user"
                               " (the store's owner), or make every directory on the way"
                               " root's and not writable by others\n")
        assert os.listdir(loot) == []
        assert not os.path.lexists(store / "artifacts" / "a")


def test_1_member_cannot_plant_symlinks_for_another_member(tmp_path: Path,
                                                           hdenv_exe: str) -> None:
    with other_users("hdenv10a", "hdenv10b", group="hdenv10g") as users, \
            world_readable_dir() as base:
        attacker, victim = users["hdenv10a"], users["hdenv10b"]
        store = _group_store(base, attacker.gid)
        stack = base / "s.toml"
        stack.write_text(LOCKED)
        os.chmod(stack, 0o644)
        env = _hdenv_env(store, base)
        dry = as_user(victim, [hdenv_exe, "build", "--dry-run", str(stack)], env=env)
        assert dry.returncode == 0, dry.stderr
        aid = next(w for w in dry.stdout.split() if w.startswith("a/1/"))
        target = base / "victim-file"
        # 1. a lock file planted as a symlink: never followed, nothing created
        lock = store / "locks" / f"{aid.rsplit('/', 1)[1]}.lock"
        assert as_user(attacker, ["ln", "-s", str(target), str(lock)]).returncode == 0
        proc = as_user(victim, [hdenv_exe, "build", str(stack)], env=env)
        assert proc.returncode == 1
        assert f"lock file {lock} is a symlink; hdenv never made it" in proc.stderr
        assert not os.path.lexists(target)
        assert not os.path.lexists(store / "artifacts" / "a")
        os.unlink(lock)
        # 2. the victim's private tmp dir made in advance by the attacker: refused
        assert as_user(victim, ["rm", "-rf", str(store / "tmp" / str(victim.uid))]
                       ).returncode == 0
        assert as_user(attacker, ["mkdir", "-m", "777", str(store / "tmp" / str(victim.uid))]
                       ).returncode == 0
        proc = as_user(victim, [hdenv_exe, "build", str(stack)], env=env)
        assert proc.returncode == 1
        assert (f"hdenv: error: {store}/tmp/{victim.uid} belongs to uid {attacker.uid},"
                " not to you") in proc.stderr
        os.rmdir(store / "tmp" / str(victim.uid))
        # 3. tmp/ replaced by a symlink to the attacker's directory: refused
        assert as_user(attacker, ["mv", str(store / "tmp"), str(store / "tmp.old")]
                       ).returncode == 0
        loot = _owned_dir(base / "loot", attacker)
        assert as_user(attacker, ["ln", "-s", str(loot), str(store / "tmp")]).returncode == 0
        proc = as_user(victim, [hdenv_exe, "build", str(stack)], env=env)
        assert proc.returncode == 1
        assert f"{store}/tmp is not a directory but a symlink" in proc.stderr
        assert os.listdir(loot) == []
        # undone, the build works, and its temp dir is private to the victim
        os.unlink(store / "tmp")
        os.rename(store / "tmp.old", store / "tmp")
        proc = as_user(victim, [hdenv_exe, "build", str(stack)], env=env)
        assert proc.returncode == 0, proc.stderr
        private = os.stat(store / "tmp" / str(victim.uid))
        assert (private.st_uid, private.st_mode & 0o777) == (victim.uid, 0o700)


# -- 6: Ctrl-C, SIGTERM and SIGHUP stop the builds --------------------------------

RUNNING = """
[packages.slow]
version = "1"
script = '''
mkdir -p "$PREFIX/bin"
echo $$ > "{pids}/script"
sh -c 'echo $$ > "{pids}/child"; exec sleep 300' &
i=0
while [ $i -lt 600 ]; do echo $i > "$PREFIX/bin/f$i"; i=$((i+1)); sleep 0.1; done
'''

[packages.other]
version = "1"
script = '''
echo $$ > "{pids}/other"
mkdir -p "$PREFIX" && sleep 300
'''
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_6_a_signal_stops_every_build_and_keeps_nothing(hdenv_exe: str,
                                                        hdenv_env: dict[str, str],
                                                        tmp_path: Path, store_dir: Path,
                                                        signum: int) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    stack = tmp_path / "run.toml"
    stack.write_text(RUNNING.format(pids=pids))
    # the builds report their host pids in tmp_path: unsandboxed (bwrap has its own pids)
    proc = subprocess.Popen([hdenv_exe, "build", "-j", "2", str(stack)],
                            env={**hdenv_env, "HDENV_SANDBOX": "none"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not all((pids / p).exists() for p in ("script", "child", "other")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    assert err.splitlines()[-1] == (f"hdenv: interrupted by {name}; stopped 2 running build(s)"
                                    " and removed what they had written")
    for p in ("script", "child", "other"):
        assert gone(int((pids / p).read_text())), p
    for pkg in ("slow", "other"):
        vdir = store_dir / "artifacts" / pkg / "1"
        assert not vdir.exists() or os.listdir(vdir) == []
    assert tmpdirs.leftovers(Store(store_dir)) == []


# -- 7: a failed build's background process does not hold the next one ------------


def test_7_lingering_child_of_a_failed_build_is_killed(run_hdenv: Runner,
                                                      tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    stack = tmp_path / "f.toml"
    stack.write_text('[packages.f]\nversion = "1"\nscript = \'\'\'\n'
                     f'sh -c \'echo $$ > "{pids}/child"; exec sleep 300\' &\n'
                     'sleep 0.5\nexit 1\n\'\'\'\n')
    unsandboxed = {"HDENV_SANDBOX": "none"}  # the child reports its host pid in tmp_path
    first = run_hdenv("build", str(stack), env=unsandboxed)
    assert first.returncode == 1
    assert gone(int((pids / "child").read_text()))
    second = run_hdenv("build", str(stack), timeout=60, env=unsandboxed)
    assert second.returncode == 1 and "waiting" not in second.stderr
    assert "build of f/1/" in second.stderr


# -- 10: temp dirs of killed runs are removed by the next build --------------------


def test_10_next_build_removes_what_killed_runs_left(run_hdenv: Runner, hdenv_exe: str,
                                                     hdenv_env: dict[str, str],
                                                     tmp_path: Path, store_dir: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    stack = tmp_path / "run.toml"
    stack.write_text(RUNNING.format(pids=pids))
    proc = subprocess.Popen([hdenv_exe, "build", "-j", "2", str(stack)],
                            env={**hdenv_env, "HDENV_SANDBOX": "none"},  # host pids, as in 6
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (pids / "other").exists() or not (pids / "script").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    for p in ("script", "child", "other"):  # the orphans: what kill -9 leaves running
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            os.killpg(int((pids / p).read_text()), signal.SIGKILL)
    store = Store(store_dir)
    left = tmpdirs.leftovers(store)
    # each killed build left its directory and its alias of the store root: a directory
    # of links to the artifacts the build used (what a cleaner must never follow)
    aliases = [p for p in left if ".root-" in p.name]
    assert len(left) == 4 and len([p for p in left if ".build-" in p.name]) == 2, left
    assert len(aliases) == 2 and all(p.is_dir() and not p.is_symlink() for p in aliases)
    into_store = [q for a in aliases for q in a.rglob("*") if q.is_symlink()]
    assert into_store and all(os.path.realpath(q).startswith(str(store_dir.resolve()))
                              for q in into_store), into_store
    done = sorted((store_dir / "artifacts").glob("*/*/*/.hdenv/manifest.json"))
    assert done  # posix-tools at least: what a cleaner that followed an alias would remove
    legacy = store_dir / "tmp" / "build-old-x1y2"
    legacy.mkdir()
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    small = tmp_path / "ok.toml"
    small.write_text(LOCKED)
    run_hdenv("build", str(small), check=True)
    assert tmpdirs.leftovers(store) == []
    # the aliases went as links: nothing they point at was touched
    assert all(p.is_file() for p in done)


# -- 3: no setuid bits in artifacts; verify sees mode changes ---------------------


def test_3_setuid_bits_are_stripped_and_mode_changes_detected(run_hdenv: Runner,
                                                              tmp_path: Path) -> None:
    stack = tmp_path / "suid.toml"
    stack.write_text('[packages.s]\nversion = "1"\nscript = \'\'\'\n'
                     'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho hi\\n" > "$PREFIX/bin/x"\n'
                     'chmod 4755 "$PREFIX/bin/x"\nmkdir -m 1777 "$PREFIX/share"\n\'\'\'\n')
    proc = run_hdenv("build", str(stack), check=True)
    assert "removed setuid/setgid/sticky bits from bin/x" in proc.stderr
    (aid,) = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True).stdout.splitlines()
              if line.startswith("s/")]
    prefix = Path(run_hdenv("path", aid, check=True).stdout.strip())
    assert stat.S_IMODE(os.stat(prefix / "bin" / "x").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(prefix / "share").st_mode) == 0o555
    assert "removed setuid" in (prefix / ".hdenv" / "build.log").read_text()
    assert run_hdenv("verify").returncode == 0
    os.chmod(prefix / "bin" / "x", 0o4777)  # chmod u+s,a+w
    proc = run_hdenv("verify")
    assert proc.returncode == 1
    assert proc.stdout == f"{aid}: mode of bin/x changed from 0555 to 4777\n"


# -- 4: a tampered source is noticed before use ------------------------------------


def test_4_tampered_source_is_refetched_and_reported(run_hdenv: Runner, tmp_path: Path,
                                                     store_dir: Path) -> None:
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "data.txt").write_text("the real data\n")
    tarball = tmp_path / "data-1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(payload, arcname="data-1")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    stack = tmp_path / "src.toml"
    body = ('[packages.d]\nversion = "1"\n'
            f'sources = [{{ url = "{tarball.as_uri()}", sha256 = "{digest}", strip = 1 }}]\n'
            'script = \'mkdir -p "$PREFIX" && cp data.txt "$PREFIX/OUT"\'\n')
    stack.write_text(body.replace("OUT", "one"))
    run_hdenv("build", str(stack), check=True)
    stored = store_dir / "src" / "sha256" / digest
    evil = tmp_path / "evil.tar.gz"
    (payload / "data.txt").write_text("backdoor\n")
    with tarfile.open(evil, "w:gz") as tf:
        tf.add(payload, arcname="data-1")
    os.chmod(stored, 0o644)
    stored.write_bytes(evil.read_bytes())
    os.chmod(stored, 0o444)
    proc = run_hdenv("verify", "--sources")
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"source sha256:{digest}: damaged, its content hashes to")
    stack.write_text(body.replace("OUT", "two"))  # a new build that needs the source
    proc = run_hdenv("build", str(stack), check=True)
    assert f"stored source sha256:{digest} is damaged" in proc.stderr
    ids = [line.split()[0] for line in run_hdenv("list", "artifacts", check=True).stdout.splitlines()]
    two = next(Path(run_hdenv("path", a, check=True).stdout.strip()) / "two" for a in ids
               if (Path(run_hdenv("path", a, check=True).stdout.strip()) / "two").exists())
    assert two.read_text() == "the real data\n"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert run_hdenv("verify", "--sources").returncode == 0


# -- 9: every kind of damage is reported by verify, and errors stay one line -------

MANY = "".join(
    f'[packages.{p}]\nversion = "1"\n'
    f'script = \'mkdir -p "$PREFIX/bin" && echo {p} > "$PREFIX/bin/{p}"\'\n\n'
    for p in "abcdefg") + "".join(
    f'[profiles.{n}]\npackages = ["{p}"]\n\n' for n, p in (("p1", "a"), ("p2", "f"),
                                                           ("p3", "g"), ("demo", "g")))


def _ids(run_hdenv: Runner) -> dict[str, str]:
    out = run_hdenv("list", "artifacts", check=True).stdout.splitlines()
    return {line.split("/")[0]: line.split()[0] for line in out}


def _writable(path: Path) -> None:
    os.chmod(path, 0o755 if path.is_dir() else 0o644)


def test_9_profiles_are_read_only_and_a_write_bit_is_reported(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    stack = tmp_path / "many.toml"
    stack.write_text(MANY)
    built = run_hdenv("build", str(stack), check=True).stdout.split()
    farm = store_dir / "profiles" / dict(zip(built[::2], built[1::2]))["p1"]
    modes = {str(p.relative_to(farm)): p.lstat().st_mode for p in [farm, *farm.rglob("*")]
             if not p.is_symlink()}
    assert len(modes) > 2 and {k: oct(m) for k, m in modes.items() if m & 0o222} == {}
    os.chmod(farm / ".hdenv" / "profile.json", 0o644)
    proc = run_hdenv("verify")
    assert proc.returncode == 1
    assert proc.stdout == (f"profile {farm.name}: .hdenv/profile.json is writable"
                           " (profiles are read-only)\n")


def test_9_verify_reports_every_kind_of_damage(run_hdenv: Runner, tmp_path: Path,
                                               store_dir: Path) -> None:
    stack = tmp_path / "many.toml"
    stack.write_text(MANY)
    built = run_hdenv("build", str(stack), check=True).stdout.split()
    profiles = dict(zip(built[::2], built[1::2]))
    assert run_hdenv("verify").returncode == 0
    ids = _ids(run_hdenv)
    art = {p: store_dir / "artifacts" / p / "1" / ids[p].rsplit("/", 1)[1] for p in "abcdefg"}
    for p in "abcde":
        _writable(art[p] / ".hdenv")
    (art["a"] / ".hdenv" / "artifact.json").write_text('{"id": "a/1/')  # truncated
    (art["b"] / ".hdenv" / "artifact.json").unlink()  # deleted
    (art["c"] / ".hdenv" / "manifest.json").unlink()
    _writable(art["d"] / ".hdenv" / "manifest.json")
    (art["d"] / ".hdenv" / "manifest.json").write_text("{")
    os.chmod(art["e"] / "bin" / "e", 0o4777)
    _writable(art["f"] / "bin")
    _writable(art["f"] / "bin" / "f")
    (art["f"] / "bin" / "f").write_text("changed\n")
    (store_dir / "artifacts" / "h" / "1" / "leftoverhash").mkdir(parents=True)
    p1 = store_dir / "profiles" / profiles["p1"]
    _writable(p1 / ".hdenv")
    _writable(p1 / ".hdenv" / "profile.json")
    (p1 / ".hdenv" / "profile.json").write_text('{"hash": ')
    p2 = store_dir / "profiles" / profiles["p2"]
    _writable(p2)
    (p2 / "bin").unlink()
    (p2 / "bin").symlink_to("/etc")
    p3 = store_dir / "profiles" / profiles["p3"]
    make_writable(p3)
    shutil.rmtree(p3)
    proc = run_hdenv("verify")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    expected = [
        f"{ids['a']}: .hdenv/artifact.json is damaged (not valid JSON; truncated?)",
        f"{ids['b']}: .hdenv/artifact.json is missing (deleted?)",
        f"{ids['c']}: .hdenv/manifest.json is missing",
        f"{ids['d']}: .hdenv/manifest.json is damaged (not valid JSON; truncated?)",
        f"{ids['e']}: mode of bin/e changed from 0444 to 4777",
        f"{ids['f']}: modified bin/f",
        "h/1/leftoverhash: leftover of an interrupted build",
        f"profile {profiles['p1']}: .hdenv/profile.json is damaged",
        f"profile {profiles['p2']}: bin points at /etc, outside the artifacts of the profile",
        f"name p3: current generation points at profile {profiles['p3']}, which is not in"
        " the store",
        f"name p3: generation 1 points at profile {profiles['p3']}",
        f"name demo: current generation points at profile {profiles['p3']}",
    ]
    for line in expected:
        assert line in proc.stdout, (line, proc.stdout)
    # the damaged things are one-line errors elsewhere too
    for args in (("show", "p3"), ("path", "demo"), ("show", "p1")):
        proc = run_hdenv(*args)
        assert proc.returncode in (1, 2) and proc.stderr.count("\n") == 1, (args, proc.stderr)
        assert "internal error" not in proc.stderr and "too short" not in proc.stderr
    assert "points at profile" in run_hdenv("show", "p3").stderr


def test_9_load_path_damage_is_one_line(run_hdenv: Runner, tmp_path: Path, hdenv_exe: str,
                                        hdenv_env: dict[str, str], store_dir: Path) -> None:
    require_tool("bash")
    stack = tmp_path / "one.toml"
    stack.write_text('[packages.a]\nversion = "1"\nscript = \'mkdir -p "$PREFIX/bin"\'\n\n'
                     '[profiles.demo]\npackages = ["a"]\n\n[profiles.broken]\npackages = ["a"]\n'
                     'env = { X = "1" }\n')
    built = run_hdenv("build", str(stack), check=True).stdout.split()
    broken = store_dir / "profiles" / dict(zip(built[::2], built[1::2]))["broken"]
    _writable(broken / ".hdenv")
    _writable(broken / ".hdenv" / "profile.json")
    (broken / ".hdenv" / "profile.json").write_text("[1, 2")
    bad_record = base64.b64encode(b'"abc').decode()

    def in_bash(line: str, record: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**hdenv_env, "PATH": f"{Path(hdenv_exe).parent}:{os.environ['PATH']}",
               **({"HDENV_RECORD": record} if record else {})}
        return subprocess.run(["bash", "--norc", "-c", f'eval "$(hdenv init bash)"; {line}'],
                              env=env, capture_output=True, text=True)

    for line, record, fragment in (
            ("hdenv load demo/²", None, "unknown REF 'demo/²'"),
            ("hdenv load broken", None, "damaged profile metadata"),
            ("hdenv load demo", bad_record, "HDENV_RECORD is damaged"),
            ("hdenv unload demo", bad_record, "HDENV_RECORD is damaged")):
        proc = in_bash(f"{line}; echo rc=$?", record)
        assert proc.stderr.count("\n") == 1 and fragment in proc.stderr, (line, proc.stderr)
        assert proc.stdout == "rc=2\n" and "Traceback" not in proc.stderr


# -- 10: archives that cannot be unpacked ------------------------------------------


def test_10_truncated_archive_and_overlong_names_are_one_line(tmp_path: Path,
                                                               run_hdenv: Runner) -> None:
    big = os.urandom(200_000)
    for name, cut in (("long.tar.gz", None), ("cut.tar.gz", 100)):
        tarball = tmp_path / name
        with tarfile.open(tarball, "w:gz", format=tarfile.PAX_FORMAT) as tf:
            for member, data in (("pkg/" + "n" * 300, b"x"), ("pkg/big", big)):
                info = tarfile.TarInfo(member)  # 300 characters: fine in a tar, not on disk
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        if cut:
            tarball.write_bytes(tarball.read_bytes()[:cut])
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        stack = tmp_path / f"{name}.toml"
        stack.write_text(f'[packages.t]\nversion = "1"\nsources = [{{ url = "{tarball.as_uri()}",'
                         f' sha256 = "{digest}" }}]\nscript = \'mkdir -p "$PREFIX"\'\n')
        proc = run_hdenv("build", str(stack))
        assert proc.returncode == 1 and "internal error" not in proc.stderr, proc.stderr
        want = ("its name is too long for this file system" if cut is None
                else "truncated gzip data")
        assert want in proc.stderr, proc.stderr


# -- 5: a long value cannot brick the shell ------------------------------------------

LONG = "ab'\"$x; " * 12_500  # 100,000 bytes, with everything a shell would trip on
DUMP_ENV = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items()"
            " if k not in ('_', 'SHLVL', 'PWD', 'OLDPWD', 'fish_pid', 'LS_COLORS')},"
            " open(sys.argv[1], 'w'))")  # fish's ls sets LS_COLORS


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_5_100kb_values_load_unload_and_oversized_ones_are_refused(shell: str, tmp_path: Path,
                                                                  hdenv_exe: str) -> None:
    shell_path = require_tool(shell)
    store = tmp_path / "store"
    make_profile(store, "big", env={"BIG": LONG, "PREV": "short"})
    make_profile(store, "huge", env={"HUGE": LONG + "y" * 40_000})
    status = "$status" if shell == "fish" else "$?"
    q = get_shell(shell).quote
    dump = f"{q(sys.executable)} -c {q(DUMP_ENV)}"
    script = tmp_path / f"drive.{shell}"
    script.write_text("\n".join([
        "hdenv init fish | source" if shell == "fish" else 'eval "$(hdenv init bash)"',
        f"{dump} before.json",
        f"hdenv load big; echo load={status}",
        f"ls / >/dev/null; echo ls={status}",
        f"{dump} loaded.json",
        f"hdenv load huge; echo huge={status}",
        f"ls / >/dev/null; echo ls2={status}",
        f"hdenv unload big; echo unload={status}",
        f"{dump} after.json",
    ]) + "\n")
    env = {"PATH": f"{Path(hdenv_exe).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "LANG": "C.UTF-8", "TERM": "dumb", "HDENV_STORE": str(store),
           "PREV": LONG.replace("x", "p")[:99_000]}  # a long value of the user's own
    flags = ["--no-config"] if shell == "fish" else ["--norc", "--noprofile"]
    proc = subprocess.run([shell_path, *flags, str(script)], env=env, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.stdout.split() == ["load=0", "ls=0", "huge=2", "ls2=0", "unload=0"], proc.stderr
    assert proc.stderr == ("hdenv: error: hdenv load huge would make HUGE 140006 bytes long,"
                           " over the 131072-byte limit for one environment variable (every"
                           " command would then fail with 'Argument list too long'); nothing"
                           " was changed\n")
    before, loaded, after = (json.loads((tmp_path / f"{n}.json").read_text())
                             for n in ("before", "loaded", "after"))
    assert loaded["BIG"] == LONG and loaded["PREV"] == "short"
    assert len(loaded["HDENV_RECORD"]) < 2000  # was 132 KB: over the limit itself
    assert after == before


# -- 10: a full disk, permissions and long names are one line, never a traceback ----


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    require(os.geteuid() == 0, "mounting a small file system needs root (CI runs as root)")
    require_tool("mount")
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    require(proc.returncode == 0, f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_10_full_disk_while_writing_metadata(run_hdenv: Runner, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "8m") as small:
        store = small / "store"
        stack = tmp_path / "fill.toml"
        stack.write_text('[packages.fill]\nversion = "1"\nscript = \'\'\'\nmkdir -p "$PREFIX"\n'
                         'dd if=/dev/zero of="$PREFIX/fill" bs=64k 2>/dev/null || true\n\'\'\'\n')
        proc = run_hdenv("build", str(stack), env={"HDENV_STORE": str(store)})
        assert proc.returncode == 1, proc.stderr
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
        assert "no space left on the device (" in proc.stderr
        assert "free some space" in proc.stderr
        assert not (store / "artifacts" / "fill" / "1").exists() or \
            os.listdir(store / "artifacts" / "fill" / "1") == []
        assert run_hdenv("verify", env={"HDENV_STORE": str(store)}).returncode == 0


def test_10_what_a_build_leaves_unreadable_is_not_an_internal_error(hdenv_exe: str) -> None:
    with other_users("hdenv10a", group="hdenv10g") as users, world_readable_dir() as base:
        user = users["hdenv10a"]
        os.chown(base, user.uid, user.gid)
        env = _hdenv_env(base / "store", base)
        stack = base / "odd.toml"
        stack.write_text('[packages.odd]\nversion = "1"\nscript = \'\'\'\n'
                         'mkdir -p "$PREFIX/d/e" && echo x > "$PREFIX/d/e/f"\n'
                         'echo y > "$PREFIX/wo" && chmod 200 "$PREFIX/wo"\n'
                         'chmod 000 "$PREFIX/d"\nmkdir -m 000 junk\n\'\'\'\n')
        os.chmod(stack, 0o644)
        proc = as_user(user, [hdenv_exe, "build", str(stack)], env=env)
        assert proc.returncode == 0, proc.stderr
        proc = as_user(user, [hdenv_exe, "verify"], env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        stack.write_text(stack.read_text().replace("mkdir -m 000 junk", "exit 1"))
        proc = as_user(user, [hdenv_exe, "build", str(stack)], env=env)
        assert proc.returncode == 1 and "build of odd/1/" in proc.stderr, proc.stderr
        assert "internal error" not in proc.stderr
        # a store this user may not write to, and a store path too long for the system
        root_store = base / "roots"
        root_store.mkdir()
        os.chown(root_store, 0, 0)
        for store, code, fragment in ((root_store, 2, "read-only for you"),
                                      (base / ("n" * 300) / "s", 2, "file name too long")):
            proc = as_user(user, [hdenv_exe, "build", str(stack)],
                           env={**env, "HDENV_STORE": str(store)})
            assert proc.returncode == code and proc.stderr.count("\n") == 1, proc.stderr
            assert fragment in proc.stderr and "internal error" not in proc.stderr

"""Hardening, the residuals (issue 21): what a build wrote or patched by path in a group store.

Each attack runs as a real second user (tests/unixusers.py) against a real victim who
builds into a store of their group:

- cache/jail.json: a link planted at `cache/` or a FIFO at the file, or a file of
  the attacker's with forged answers (a sandboxed build's jail);
- the link audit's patchelf and the unsandboxed build's `$PREFIX`: a directory above
  the artifact (artifacts/NAME/VERSION) exchanged for a link to the victim's own while
  the build runs;
- a host artifact's files, made by path in a directory the group could reach;
- tmp/<uid>/, checked through descriptors and then cleaned by path while a member
  exchanges tmp/ for a link (FLIP: renameat2 RENAME_EXCHANGE in a tight loop).

Each test failed on main's code before its fix (the decoy's files rewritten, the victim's
files removed or written, a build hung on a FIFO or saw a header it never declared).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner
from unixusers import UnixUsers, attacker_and_victim, group_store

from hdenv.build import bwrap, jail

ATTACKER, VICTIM = "hdresa", "hdresb"


@pytest.fixture(scope="module")
def users() -> Iterator[UnixUsers]:
    yield from attacker_and_victim("hdres", "hdresg")



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
    store = group_store(users, run_hdenv, "jail-link")
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
    store = group_store(users, run_hdenv, "jail-fifo")
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
    store = group_store(users, run_hdenv, "jail-forged")
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


# -- 2: the link audit and an unsandboxed build's $PREFIX ----------------------------------

EXCHANGE = """
import ctypes, os, sys, time

libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD = 2, -100
name_dir, version, decoy, last = sys.argv[1:5]
v = os.path.join(name_dir, version)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:  # the build's last file: its script is about to end
    try:
        built = [n for n in os.listdir(v) if not n.startswith(".")]
    except FileNotFoundError:
        built = []
    if built and os.path.exists(os.path.join(v, built[0], last)):
        break
    time.sleep(0.005)
else:
    sys.exit("no build came")
bait = os.path.join(name_dir, ".bait")
os.symlink(decoy, bait)
if libc.renameat2(AT_FDCWD, v.encode(), AT_FDCWD, bait.encode(), RENAME_EXCHANGE) != 0:
    sys.exit(f"exchange failed: {os.strerror(ctypes.get_errno())}")
print("exchanged", built[0])
"""

AUDITED = """
[stack]
name = "{name}"

[packages.{name}]
version = "1"
sources = [{{ path = "{src}" }}]
script = '''
mkdir -p "$PREFIX/bin"
for i in 1 2 3 4 5 6 7 8; do cp prog "$PREFIX/bin/prog$i"; done
{after}
'''
"""


def _elf_with_dangling_runpath(users: UnixUsers, where: str) -> Path:
    """A directory holding `prog`: /bin/true whose run path names `$ORIGIN/../gone`, an
    entry into its own artifact that does not exist, which the audit drops (patchelf)."""
    src = users.base / where
    src.mkdir()
    prog = src / "prog"
    prog.write_bytes(Path("/bin/true").read_bytes())
    os.chmod(prog, 0o755)
    os.chmod(src, 0o755)
    patchelf = users.bin / "patchelf"
    if not patchelf.exists():
        pytest.skip("patchelf is not installed")
    subprocess.run([str(patchelf), "--set-rpath", "$ORIGIN/../gone", str(prog)], check=True)
    return src


def _decoy(users: UnixUsers, store: Path, stack: Path, name: str, src: Path) -> Path:
    """The victim's own directory laid out as the artifact will be (`HASH/bin/prog*`, the
    victim's writable copies of the program): where the attacker's link points."""
    dry = users.run(VICTIM, ["hdenv", "build", "--dry-run", str(stack)],
                    _env(users, VICTIM, store))
    (aid,) = [w for line in dry.stdout.splitlines() for w in line.split()
              if w.startswith(f"{name}/1/")]
    decoy = _precious(users, f"decoy-{name}")
    bindir = decoy / aid.rsplit("/", 1)[1] / "bin"
    bindir.mkdir(parents=True)
    for i in range(1, 9):
        (bindir / f"prog{i}").write_bytes((src / "prog").read_bytes())
    subprocess.run(["chown", "-R", VICTIM, str(decoy)], check=True)
    subprocess.run(["chmod", "-R", "u+w,a+rX", str(decoy)], check=True)
    return bindir


def _attack(users: UnixUsers, store: Path, name: str, decoy: Path, last: str
            ) -> subprocess.Popen[str]:
    script = _file(users, "exchange.py", EXCHANGE)
    argv = users.command(ATTACKER, [users.python, str(script), str(store / "artifacts" / name),
                                    "1", str(decoy.parent.parent), last], users.env(ATTACKER))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=users.base)


def _said(attack: subprocess.Popen[str]) -> str:
    try:
        out, err = attack.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        attack.kill()
        out, err = attack.communicate()
    return out + err


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_2_the_link_audit_never_patches_through_an_exchanged_version_dir(
        users: UnixUsers, run_hdenv: Runner, sandbox: str) -> None:
    """The build's script has installed its programs; a member exchanges
    artifacts/NAME/VERSION (the group's to rename in) for a link to a directory of the
    victim's that looks like the artifact. Before, the link audit walked and patchelf-ed
    by path: it rewrote the run paths of the victim's own programs there, and the
    artifact was registered anyway (the check looked only at HASH in the directory
    opened at the start). Now the audit reads and patches each file through
    descriptors from the artifact directory the build was given, and an artifact whose
    path no longer leads to that directory is not registered."""
    if sandbox == "bwrap":
        _sandboxed()
    name = f"au{sandbox[0]}"
    store = group_store(users, run_hdenv, f"audit-{sandbox}")
    src = _elf_with_dangling_runpath(users, f"src-{name}")
    stack = _file(users, f"{name}.toml", AUDITED.format(name=name, src=src,
                                                       after="sleep 1"))
    decoy = _decoy(users, store, stack, name, src)
    before = {p.name: p.read_bytes() for p in decoy.iterdir()}
    attack = _attack(users, store, name, decoy, "bin/prog8")
    proc = users.run(VICTIM, ["hdenv", "build", str(stack)],
                     _env(users, VICTIM, store, HDENV_SANDBOX=sandbox), timeout=300)
    said = _said(attack)
    assert said.startswith("exchanged"), said
    after = {p.name: p.read_bytes() for p in decoy.iterdir()}
    assert after == before, (proc.stderr, said)  # none of the victim's files rewritten
    assert proc.returncode == 1, proc.stderr
    assert "was replaced while it was being built" in proc.stderr, proc.stderr


# -- 3: a host artifact's files --------------------------------------------------------------

PLANT_IN_HOST = """
import glob, os, sys, time

pattern, name, target = sys.argv[1:4]
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    found = glob.glob(pattern)
    if found:
        break
else:
    sys.exit("no capture came")
link = os.path.join(os.path.dirname(found[0]), name)
try:
    os.symlink(target, link)
    print("planted", link)
except OSError as e:
    print("refused", e.strerror)
"""

KERNEL_HEADERS = """
[stack]
name = "kh"

[host.kh]
packages = ["linux-libc-dev"]

[packages.useskh]
version = "1"
deps = ["kh"]
script = 'mkdir -p "$PREFIX/share" && echo ok > "$PREFIX/share/ok"'
"""


def test_3_a_host_artifacts_files_never_go_through_a_planted_link(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """The victim captures a distro package (linux-libc-dev: include/asm-generic,
    linux (~800 headers), ..., x86_64-linux-gnu). Once include/linux exists, a member
    plants include/x86_64-linux-gnu -> a directory of the victim's. Before, the
    directories were made by path with the group's umask (include/ was 0775, the group
    may search the artifact while it is built): the member's link was followed by
    `mkdir -p` and `symlink`, the victim's directory filled up, and the link was
    registered in the artifact. Now every directory is made 0755 and entered through
    descriptors: the member cannot plant, nothing is written outside."""
    if not Path("/usr/include/linux/types.h").exists():
        pytest.skip("linux-libc-dev is not installed")
    store = group_store(users, run_hdenv, "host-plant")
    precious = _precious(users, "precious-host")
    stack = _file(users, "kh.toml", KERNEL_HEADERS)
    script = _file(users, "plant-host.py", PLANT_IN_HOST)
    argv = users.command(ATTACKER, [users.python, str(script),
                                    f"{store}/artifacts/kh/*/*/include/linux",
                                    "x86_64-linux-gnu", str(precious)], users.env(ATTACKER))
    attack = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=users.base)
    proc = users.run(VICTIM, ["hdenv", "build", str(stack)], _env(users, VICTIM, store),
                     timeout=300)
    said = _said(attack)
    assert os.listdir(precious) == [], (said, proc.stderr)
    assert said.startswith("refused"), said
    assert proc.returncode == 0, proc.stderr


# -- 4: what killed runs left in tmp/ --------------------------------------------------------

FLIP = """
import ctypes, os, sys, time

libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE, AT_FDCWD = 2, -100
a, b, stop = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3]
deadline = time.monotonic() + 300
flips = 0
while not os.path.exists(stop) and time.monotonic() < deadline:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
        flips += 1
print("flips", flips)
"""


CLEAN = """
import os, sys
sys.path.insert(0, {pylib!r})
from hdenv.errors import StoreError
from hdenv.store.layout import Store
from hdenv.store.tmpdirs import clean_stale

refused = cleaned = 0
for _ in range(3000):
    try:
        clean_stale(Store({store!r}))
        cleaned += 1
    except StoreError:  # tmp/ was the member's link when it was opened: refused
        refused += 1
    if len(os.listdir({watched!r})) < 20:
        break
print("cleaned", cleaned, "refused", refused)
"""


def test_4_cleaning_tmp_never_removes_through_an_exchanged_tmp(
        users: UnixUsers, run_hdenv: Runner) -> None:
    """Every `hdenv build` first removes what dead runs left in tmp/<uid>/: entries older
    than an hour. A member keeps exchanging the store's tmp/ (the store root is the
    group's to rename in) with a link to a directory of the victim's laid out the same
    way (`<uid>/...`: the victim's own store's tmp/, say). Before, tmp/<uid> was checked
    through descriptors and then listed and cleaned by path: the victim's entries older
    than an hour there were removed. Now it is listed and cleaned through the descriptor
    that was checked."""
    store = group_store(users, run_hdenv, "tmp-flip")
    first = _build(users, store, "tf")  # tmp/<uid> exists from now on
    assert first.returncode == 0, first.stderr
    uid = pwd.getpwnam(VICTIM).pw_uid
    precious = _precious(users, "precious-tmp")
    (precious / str(uid)).mkdir(mode=0o700)
    old = time.time() - 7200
    for i in range(20):
        (precious / str(uid) / f"note{i}").write_text("the victim's\n")
        os.utime(precious / str(uid) / f"note{i}", (old, old))
    subprocess.run(["chown", "-R", VICTIM, str(precious)], check=True)
    bait = store / ".bait"
    _as_attacker(users, f"ln -s {precious} {bait}")
    stop = users.base / "stop-flipping-tmp"
    script = _file(users, "flip-tmp.py", FLIP)
    attack = subprocess.Popen(
        users.command(ATTACKER, [users.python, str(script), str(store / "tmp"), str(bait),
                                 str(stop)], users.env(ATTACKER)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=users.base)
    # what every `hdenv build` does first, as the victim, many times over (20 builds won
    # the race in 4 runs of 5, 80 builds in 4 of 5): until something of the victim's is
    # gone, or 3,000 times
    cleaner = _file(users, "clean.py", CLEAN.format(pylib=str(users.base / "pylib"), store=str(store),
                                                     watched=str(precious / str(uid))))
    try:
        proc = users.run(VICTIM, [users.python, str(cleaner)], users.env(VICTIM), timeout=300)
    finally:
        stop.write_text("")
        said = _said(attack)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    outcomes = proc.stdout
    assert "cleaned" in outcomes, outcomes
    assert said.startswith("flips"), said
    assert sorted(os.listdir(precious / str(uid))) == sorted(f"note{i}" for i in range(20)), (
        outcomes, said)

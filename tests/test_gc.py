"""`hdenv gc`, `du`, `pin` and `mirror` through the real program.

Real builds (the demo with the host gcc), a gc run beside a build that is in
progress, and gc killed with SIGKILL at random moments.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, Runner, require_tool

from hdenv.errors import UserError
from hdenv.store import gc as gc_mod
from hdenv.store.artifacts import install_artifact
from hdenv.store.gc import parse_size
from hdenv.store.layout import Store
from hdenv.store.tmpdirs import leftovers


def ids(run_hdenv: Runner) -> set[str]:
    out = run_hdenv("list", "artifacts", check=True).stdout
    return {line.split()[0] for line in out.splitlines()}


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "locks" not in p.parts)


def du_bytes(path: Path) -> int:
    """Allocated bytes of `path` as coreutils' `du` counts them (the yardstick for `hdenv du`)."""
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[0])


def test_parse_size() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("500M") == 500 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("2 kb") == 2048
    with pytest.raises(UserError):
        parse_size("lots")


def test_gc_after_a_parameter_change_and_prune(run_hdenv: Runner, tmp_path: Path,
                                               store_dir: Path) -> None:
    require_tool("gcc")
    shutil.copytree(EXAMPLES / "demo", tmp_path / "demo")
    stack = str(tmp_path / "demo" / "stack.toml")
    run_hdenv("build", stack, check=True)
    first = ids(run_hdenv)
    run_hdenv("build", stack, "--set", "cflags=-O1", check=True)
    second = ids(run_hdenv)
    old = {a for a in first if a.split("/")[0] in ("libgreet", "greet")}
    assert len(old) == 2 and old < second
    run_hdenv("profile", "prune", "demo", "--keep", "1", check=True)

    failing = tmp_path / "fails.toml"
    failing.write_text("[packages.broken]\nversion = \"1\"\nscript = 'echo oops; exit 3'\n")
    assert run_hdenv("build", str(failing)).returncode == 1  # keeps its log under logs/

    usage = json.loads(run_hdenv("du", "--json", check=True).stdout)
    parts = usage["parts"]
    assert parts["artifacts"]["count"] == len(second)
    assert usage["gc_would_free"] > 0
    # Every part is what coreutils' `du` says of the same files, part by part.
    store = Store(store_dir)
    artifact_dirs = [store.artifact_dir(a) for a in second]
    assert parts["artifacts"]["bytes"] == sum(du_bytes(p) for p in artifact_dirs)
    profile_dirs = sorted(store.profiles.iterdir())
    assert parts["profiles"]["count"] == len(profile_dirs) >= 2  # both generations' profiles
    assert parts["profiles"]["bytes"] == sum(du_bytes(p) for p in profile_dirs)
    assert parts["sources"]["count"] == len(list((store.src / "sha256").iterdir())) > 0
    assert parts["sources"]["bytes"] == du_bytes(store.src)
    logs = sorted((store_dir / "logs").iterdir())
    assert [p.name for p in logs] == [p.name for p in logs if p.name.startswith("broken-1-")]
    assert parts["logs"]["count"] == len(logs) == 1
    assert parts["logs"]["bytes"] == du_bytes(store_dir / "logs") > 0
    assert all(parts[k]["bytes"] > 0 for k in ("artifacts", "profiles", "sources", "specs"))
    assert usage["total"] == sum(p["bytes"] for p in parts.values())
    assert usage["total"] <= du_bytes(store_dir)

    before = tree(store_dir)
    dry = run_hdenv("gc", "--dry-run", check=True)
    listed = {line.split()[1] for line in dry.stdout.splitlines() if line.startswith("artifact ")}
    assert old <= listed
    # what gc would free is what `du` says of exactly the things the dry run lists
    where = {"artifact": store.artifact_dir, "profile": lambda i: store.profiles / i,
             "spec": lambda i: store.specs / i}
    listed_paths = [where[line.split()[0]](line.split()[1]) for line in dry.stdout.splitlines()]
    assert all(p.exists() for p in listed_paths)
    assert usage["gc_would_free"] == sum(du_bytes(p) for p in listed_paths)
    assert not listed & {a for a in second - first}  # the live generation's artifacts stay
    assert all(line.split()[-1] in ("B", "KiB", "MiB") for line in dry.stdout.splitlines())
    assert "would free" in dry.stderr
    assert tree(store_dir) == before  # removes nothing
    assert ids(run_hdenv) == second

    done = run_hdenv("gc", check=True)
    assert {line.split()[1] for line in done.stdout.splitlines()} >= old
    left = ids(run_hdenv)
    assert not left & old
    live = {a for a in second - first}
    assert live <= left
    prefix = Path(run_hdenv("path", "demo", check=True).stdout.strip())
    proc = subprocess.run([str(prefix / "bin" / "greet"), "gc"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.stdout == "Hello, gc!\n"
    verify = run_hdenv("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert run_hdenv("gc", "--dry-run", check=True).stdout == ""
    assert json.loads(run_hdenv("du", "--json", check=True).stdout)["gc_would_free"] == 0
    # the live profile can still be exported: the specs of its whole build closure stay
    assert leftovers(Store(store_dir)) == []
    # the current generation kept what it was built with (the captured gcc and POSIX
    # tools): building it again, or with another parameter, captures nothing again
    hosts = {a for a in left if a.split("/")[0] in ("gcc", "posix-tools")}
    assert {h.split("/")[0] for h in hosts} == {"gcc", "posix-tools"}
    again = run_hdenv("build", stack, "--set", "cflags=-O1", check=True)
    assert "0 built" in again.stderr and "capturing host software" not in again.stderr
    # --runtime-only lets the build closure go: the compiler, not the program
    run_hdenv("gc", "--runtime-only", check=True)
    after = ids(run_hdenv)
    assert not after & hosts and live <= after
    assert subprocess.run([str(prefix / "bin" / "greet"), "x"], capture_output=True,
                          text=True).stdout == "Hello, x!\n"
    rebuilt = run_hdenv("build", stack, "--set", "cflags=-O1", check=True)
    assert "capturing host software gcc" in rebuilt.stderr and "0 built" in rebuilt.stderr


def test_pins_keep_what_gc_would_remove(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    body = """
[parameters]
v = "1"
[packages.thing]
version = "1"
env = {{ V = "{{{{ v }}}}" }}
script = 'mkdir -p "$PREFIX/share" && echo "$V" > "$PREFIX/share/v" {extra}'
"""
    stack.write_text(body.format(extra=""))
    old_profile = run_hdenv("build", str(stack), check=True).stdout.split()[1]
    old = {a for a in ids(run_hdenv) if a.startswith("thing/")}
    run_hdenv("build", str(stack), "--set", "v=2", check=True)
    run_hdenv("profile", "prune", "s", "--keep", "1", check=True)
    run_hdenv("pin", old_profile, check=True)
    assert run_hdenv("pin", check=True).stdout.split() == [old_profile, "profile", old_profile]
    run_hdenv("gc", check=True)
    assert old <= ids(run_hdenv)
    assert run_hdenv("path", old_profile, check=True).returncode == 0
    bad = run_hdenv("unpin", "thing/1/" + "a" * 32)
    assert bad.returncode == 2 and bad.stderr.startswith("hdenv: error:")
    run_hdenv("unpin", old_profile, check=True)
    run_hdenv("gc", check=True)
    assert not old & ids(run_hdenv)
    assert run_hdenv("path", old_profile).returncode == 2


def test_max_freed_stops_early_and_sources_go_with_their_specs(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    sources = []
    for i in range(3):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "data").write_bytes(os.urandom(64 * 1024))
        sources.append(src)
    stack = tmp_path / "s.toml"
    text = ""
    for i in range(3):
        text += (f"[packages.p{i}]\nversion = \"1\"\nsources = [{{ path = \"src{i}\" }}]\n"
                 f"script = 'mkdir -p \"$PREFIX\" && cp data \"$PREFIX/data{i}\"'\n")
    text += '[profiles.s]\npackages = ["p0", "p1", "p2"]\n'
    stack.write_text(text)
    run_hdenv("build", str(stack), check=True)
    stack.write_text(text.replace('packages = ["p0", "p1", "p2"]', 'packages = ["p0"]'))
    run_hdenv("build", str(stack), check=True)
    run_hdenv("profile", "prune", "s", "--keep", "1", check=True)
    n_sources = len(os.listdir(store_dir / "src" / "sha256"))
    first = run_hdenv("gc", "--max-freed", "1", check=True)
    assert "stopped at --max-freed 1" in first.stderr
    assert len(first.stdout.splitlines()) == 1
    run_hdenv("gc", check=True)
    assert {a.split("/")[0] for a in ids(run_hdenv)} >= {"p0"}
    assert not {a.split("/")[0] for a in ids(run_hdenv)} & {"p1", "p2"}
    assert len(os.listdir(store_dir / "src" / "sha256")) == n_sources  # kept without --sources
    gone = run_hdenv("gc", "--sources", check=True).stdout.splitlines()
    assert len([g for g in gone if g.startswith("source ")]) == 2
    assert len(os.listdir(store_dir / "src" / "sha256")) == n_sources - 2
    bad = run_hdenv("gc", "--max-freed", "lots")
    assert bad.returncode == 2 and "not a size" in bad.stderr


def test_mirror_writes_the_layout_incrementally(run_hdenv: Runner, tmp_path: Path,
                                                shared_sources: Path) -> None:
    run_hdenv("fetch", str(shared_sources / "zlib-1.2.13.tar.bz2"), check=True)
    mirror = tmp_path / "mirror"
    run_hdenv("mirror", str(mirror), check=True)
    digest = (shared_sources / "SHA256SUMS").read_text()
    hex_ = next(line.split()[0] for line in digest.splitlines() if "zlib" in line)
    assert (mirror / "zlib-1.2.13.tar.bz2").read_bytes() == \
        (shared_sources / "zlib-1.2.13.tar.bz2").read_bytes()
    assert (mirror / "sha256" / hex_).is_file()
    stamp = (mirror / "sha256" / hex_).stat().st_mtime_ns
    run_hdenv("fetch", str(shared_sources / "six-1.16.0.tar.gz"), check=True)
    again = run_hdenv("mirror", str(mirror), check=True)
    assert "2 source(s)" in again.stderr
    assert (mirror / "six-1.16.0.tar.gz").is_file()
    assert (mirror / "sha256" / hex_).stat().st_mtime_ns == stamp  # not copied again


SLOW = """
[parameters]
v = "1"

[packages.base]
version = "1"
env = {{ V = "{{{{ v }}}}" }}
script = '''
mkdir -p "$PREFIX/bin" "$PREFIX/share"
echo "$V" > "$PREFIX/share/v"
printf '#!/bin/sh\\necho base %s\\n' "$V" > "$PREFIX/bin/base"
chmod +x "$PREFIX/bin/base"
'''

[packages.slow]
version = "1"
deps = ["base"]
script = '''
touch "{started}"
i=0
while [ ! -e "{go}" ]; do sleep 0.1; i=$((i+1)); [ $i -lt 1200 ] || exit 9; done
"$HDENV_DEP_BASE/bin/base" > "$PREFIX/used-base"
'''

[profiles.{profile}]
packages = [{packages}]
"""


def only_base(profile: str) -> str:
    text = SLOW.format(started="", go="", profile="", packages="")
    return text.split("[packages.slow]")[0] + f'[profiles.{profile}]\npackages = ["base"]\n'


def test_gc_beside_a_running_build_leaves_its_inputs(run_hdenv: Runner, hdenv_exe: str,
                                                     hdenv_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    a = tmp_path / "a.toml"
    a.write_text(only_base("a"))
    run_hdenv("build", str(a), check=True)
    base_v1 = {x for x in ids(run_hdenv) if x.startswith("base/")}
    run_hdenv("build", str(a), "--set", "v=2", check=True)
    run_hdenv("profile", "prune", "a", "--keep", "1", check=True)
    assert base_v1 <= {line.split()[1] for line in
                       run_hdenv("gc", "--dry-run", check=True).stdout.splitlines()}
    # b uses base v1 (garbage right now) and builds `slow`, which waits for us
    b = tmp_path / "b.toml"
    b.write_text(SLOW.format(started=started, go=go, profile="b", packages='"slow"'))
    # the build signals through files in tmp_path, which the sandbox hides: unsandboxed
    build = subprocess.Popen([hdenv_exe, "build", str(b)], text=True,
                             env={**hdenv_env, "HDENV_SANDBOX": "none"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert build.poll() is None, build.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        gc = run_hdenv("gc", check=True, timeout=60)
        removed = {line.split()[1] for line in gc.stdout.splitlines()}
        assert not removed & base_v1
        assert "1 running build(s)" in gc.stderr
        assert any(r.startswith("base/") for r in removed) is False
        assert base_v1 <= ids(run_hdenv)
        go.touch()
        out, err = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 0, err
    prefix = Path(run_hdenv("path", "b", check=True).stdout.strip())
    assert (prefix / "used-base").read_text() == "base 1\n"
    assert subprocess.run([str(prefix / "bin" / "base")], capture_output=True,
                          text=True).stdout == "base 1\n"
    assert run_hdenv("verify").returncode == 0


def synthetic_garbage(store: Store, count: int, files: int) -> None:
    """`count` artifacts in chains of runtime dependencies, `files` files each, no root."""
    previous: str | None = None
    for i in range(count):
        deps = [previous] if previous and i % 10 else []
        spec = {"kind": "build", "name": f"junk{i}", "version": "1", "sources": [],
                "deps": deps, "build_deps": [], "env": {}, "script": str(i)}

        def populate(prefix: Path, _fd: int, _prefix_fd: int, i: int = i) -> None:
            for d in range(files // 20):
                sub = prefix / f"d{d}"
                sub.mkdir()
                for f in range(20):
                    (sub / f"f{f}").write_bytes(b"x" * (i + f))

        previous = install_artifact(store, spec, populate, runtime_deps=deps)[0]


def junk_left(store: Store) -> int:
    return len(list(store.artifacts.glob("junk*/1/*")))


@pytest.mark.slow
def test_gc_killed_at_random_moments_leaves_a_clean_store(
        run_hdenv: Runner, hdenv_exe: str, hdenv_env: dict[str, str], tmp_path: Path,
        store_dir: Path) -> None:
    stack = tmp_path / "live.toml"
    stack.write_text(only_base("live"))
    run_hdenv("build", str(stack), check=True)
    live_prefix = Path(run_hdenv("path", "live", check=True).stdout.strip())
    store = Store(store_dir)
    rng = random.Random()
    # How long a whole gc of one batch takes here (a busy CI machine or a fast
    # one): the kills below land inside that window, wherever it lies.
    synthetic_garbage(store, 40, 60)
    started = time.monotonic()
    subprocess.run([hdenv_exe, "gc"], env=hdenv_env, check=True, capture_output=True)
    whole = time.monotonic() - started
    assert not [i for i in ids(run_hdenv) if i.startswith("junk")]  # the whole batch went
    kills = 0
    for attempt in range(10):
        synthetic_garbage(store, 40, 60)  # the same ids: what the last gc removed comes back
        proc = subprocess.Popen([hdenv_exe, "gc"], env=hdenv_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if attempt % 2:  # anywhere in the run: start-up, marking, removing
            time.sleep(rng.uniform(0.1, 0.9) * whole)
        else:  # while it removes: the moment a half-removed artifact could be left
            while proc.poll() is None and junk_left(store) == 40:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        verify = run_hdenv("verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        for aid in ids(run_hdenv):  # every remaining runtime closure is whole
            for dep in store.artifact_meta(aid)["runtime_deps"]:
                assert store.has_artifact(dep), f"{aid} lost its dependency {dep}"
        assert subprocess.run([str(live_prefix / "bin" / "base")], capture_output=True,
                              text=True).stdout == "base 1\n"
        if kills >= 4:
            break
    assert kills >= 2
    run_hdenv("gc", check=True)
    assert leftovers(Store(store_dir)) == []
    # and what built it (the current generation's build closure: the POSIX tools)
    assert {a.split("/")[0] for a in ids(run_hdenv)} == {"base", "posix-tools"}
    assert run_hdenv("verify").returncode == 0


def test_a_package_loaded_by_name_keeps_its_profile_while_what_it_holds_lives(
        tmp_path: Path) -> None:
    """`hdenv load zlibby` makes an on-demand profile (shell/byname.py) that a live shell and
    a collection record by hash: gc keeps it as long as every artifact it holds is kept by
    the other roots (here the named profile `both`), as a loaded named profile is kept
    by its generation; once those go, it goes with them."""
    from test_finding import SCRIPT, _build
    from test_shell_function import HDENV, base_env, bash, write_init

    (tmp_path / "none.toml").write_text("")
    store = tmp_path / "store"
    _build(store, tmp_path, f"""
[packages.zlibby]
version = "1.3"
{SCRIPT.format(name="zlibby")}
[packages.tool]
version = "2"
{SCRIPT.format(name="tool")}
[profiles.both]
packages = ["zlibby", "tool"]
""", "stack.toml")
    env = base_env(tmp_path, store)
    init = write_init("bash", env)
    proc = bash(f". {init}\nhdenv load zlibby && hdenv save pkgs && hdenv gc >/dev/null &&"
                " hello-zlibby && hdenv loaded -t", env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("hello from zlibby\nzlibby/1.3"), proc.stdout
    saved = json.loads((tmp_path / "data" / "hdenv" / "collections" / "pkgs.json").read_text())
    (on_demand,) = [e["hash"] for e in saved["entries"]]
    assert (store / "profiles" / on_demand / ".hdenv" / "profile.json").is_file()
    shutil.rmtree(store / "names" / "both")  # nothing but the package's profile holds zlibby
    subprocess.run([HDENV, "gc"], env=env, check=True, capture_output=True)
    assert not (store / "profiles" / on_demand).exists()
    assert not [a for a in Store(store).list_artifacts() if a.startswith("zlibby/")]


def test_gc_reads_garbage_metadata_once_through_descriptors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep order (dependents first) comes from each garbage artifact's metadata,
    read once through the descriptor of the file the listing checked: a FIFO or a link
    planted as artifact.json makes a leftover (removed, never opened to block on, never
    followed), and the metadata of a removed artifact is not read again by path."""
    store = Store(tmp_path / "store").ensure()
    synthetic_garbage(store, 12, 20)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"runtime_deps": []}')
    for name, plant in (("fifo", os.mkfifo), ("link", lambda p: os.symlink(elsewhere, p))):
        meta = store.artifacts / name / "1" / "h" / ".hdenv"
        meta.mkdir(parents=True)
        plant(meta / "artifact.json")
    reads: list[str] = []
    real_open = os.open

    def counting_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("artifact.json"):
            reads.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    removed: list[gc_mod.Item] = []
    monkeypatch.setattr(os, "open", counting_open)
    result = gc_mod.collect(store, on_item=removed.append)
    monkeypatch.undo()
    assert sorted(i.ident for i in removed if i.kind == "leftover") == ["fifo/1/h", "link/1/h"]
    junk = [i.ident for i in removed if i.kind == "artifact"]
    # once each; the planted two were opened O_NOFOLLOW|O_NONBLOCK and refused
    assert len(junk) == 12 and len(reads) == 12 + 2
    position = {aid: n for n, aid in enumerate(junk)}
    for aid in junk:
        n = int(aid.split("/")[0].removeprefix("junk"))
        if n % 10:  # junk{n} needs junk{n-1}: it goes first
            dep = next(a for a in junk if a.startswith(f"junk{n - 1}/"))
            assert position[aid] < position[dep]
    assert result.freed > 0 and elsewhere.read_text() == '{"runtime_deps": []}'
    assert os.listdir(store.artifacts) == []


def test_gc_sources_drops_unused_git_commits_and_prunes_their_objects(tmp_path: Path) -> None:
    """A commit kept for no live spec loses its keep ref, and `git gc` then drops its
    objects, on the path that removes everything at once (no --max-freed) as on the other."""
    require_tool("git")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for limit in (None, 1 << 40):
        store = Store(tmp_path / f"store{limit}").ensure()
        git_dir = store.src / "git" / "cache.git"

        def git(*args: str, git_dir: Path = git_dir) -> str:
            return subprocess.run(["git", f"--git-dir={git_dir}", *args], env=env, check=True,
                                  capture_output=True, text=True).stdout.strip()

        subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
        tree_id = git("hash-object", "-t", "tree", "-w", "--stdin")
        commit = git("commit-tree", tree_id, "-m", "unused")
        git("update-ref", f"refs/hdenv/keep/{commit}", commit)
        removed: list[gc_mod.Item] = []
        gc_mod.collect(store, sources=True, max_freed=limit, on_item=removed.append)
        assert [i.ident for i in removed] == [f"git:{commit}"]
        assert git("for-each-ref", "refs/hdenv/keep/") == ""
        assert subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", commit],
                              capture_output=True).returncode != 0  # pruned

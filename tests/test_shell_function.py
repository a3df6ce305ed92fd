"""The shell function as an Lmod user meets it, in the real shells.

Batch scripts and child shells have it (bash: exported function; zsh: the
file sourced from .zshenv; fish: config.fish; tcsh: .tcshrc), generations
load and unload as NAME/N, global options and `--help` work through it,
unknown REFs suggest, and a store the user may only read gives one line for a
build while avail and load work. The code comes from `hdenv init SHELL
--write`, sourced as the README says; the profiles are built by `hdenv build`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool
from shellfixtures import build_profiles

VENV_BIN = str(Path(sys.executable).parent)
HDENV = str(Path(sys.executable).parent / "hdenv")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo (generations 1 and 2, with a description) and other, built for real."""
    work = tmp_path_factory.mktemp("function")
    root = work / "store"
    build_profiles(root, work, {"demo": {"env": {"DEMO": "one"}, "description": "The demo stack"},
                                "other": {"env": {"OTHER": "1"}}})
    build_profiles(root, work, {"demo": {"env": {"DEMO": "two"}, "description": "The demo stack"},
                                "other": {"env": {"OTHER": "1"}}})
    return root


def base_env(home: Path, store: Path) -> dict[str, str]:
    return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "TERM": "dumb", "HDENV_STORE": str(store), "HDENV_CONFIG": str(home / "none.toml"),
            "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")}


def write_init(shell: str, env: dict[str, str]) -> Path:
    """`hdenv init SHELL --write` as a user runs it once; returns the path it printed."""
    proc = subprocess.run([HDENV, "init", shell, "--write"], env=env, capture_output=True,
                          text=True, check=True)
    path = Path(proc.stdout.strip())
    assert path.is_file() and str(path).startswith(env["XDG_DATA_HOME"])
    return path


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "none.toml").write_text("")
    return tmp_path


def test_bash_job_script_and_child_shell_have_the_function(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    (home / "job.sh").write_text(
        "hdenv load demo && hello-demo && echo \"DEMO=$DEMO\"\n"
        "hdenv unload demo && echo \"after unload: ${DEMO-unset}\"\n")
    child = 'hdenv load other; echo "child OTHER=$OTHER"; hdenv unload other'
    proc = bash(f". {init}\nbash job.sh\nbash -c '{child}'\necho \"parent OTHER=${{OTHER-unset}}\"",
                env, home)
    assert proc.returncode == 0, proc.stderr
    assert "hello from demo\nDEMO=two\nafter unload: unset\n" in proc.stdout
    assert "child OTHER=1\nparent OTHER=unset\n" in proc.stdout


SHELL_JOBS = {
    # shell: (startup file under HOME the README names, line in it, job script)
    "zsh": (".zshenv", "source {init}",
            'hdenv load demo && hello-demo && hdenv unload demo && echo "unloaded ${DEMO-unset}"\n'),
    "fish": ("config/fish/config.fish", "source {init}",  # $XDG_CONFIG_HOME/fish
             "hdenv load demo; and hello-demo; and hdenv unload demo; and echo unloaded\n"),
    "tcsh": (".tcshrc", "source {init}",
             "hdenv load demo && hello-demo && hdenv unload demo && echo unloaded\n"),
}


@pytest.mark.parametrize("shell", sorted(SHELL_JOBS))
def test_job_scripts_in_other_shells(shell: str, store: Path, home: Path) -> None:
    exe = require_tool(shell)
    env = base_env(home, store)
    rc_name, line, job = SHELL_JOBS[shell]
    init = write_init(shell, env)
    rc = home / rc_name
    rc.parent.mkdir(parents=True, exist_ok=True)
    rc.write_text(line.format(init=init) + "\n")
    if shell == "zsh":
        env["ZDOTDIR"] = str(home)
    (home / "job").write_text(job)
    proc = subprocess.run([exe, "job"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=home)
    assert proc.returncode == 0, proc.stderr
    assert "hello from demo\n" in proc.stdout and "unloaded" in proc.stdout, proc.stderr


def test_generations_load_unload_and_show_as_name_n(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    script = f""". {init}
hdenv loaded
hdenv load demo/1; echo "DEMO=$DEMO LOADED=${{HDENV_LOADED%%:*}}"
hdenv unload demo/1; echo "unload=$? DEMO=${{DEMO-unset}}"
hdenv load demo/1
hdenv swap demo/1 demo/2; echo "swap=$? DEMO=$DEMO"
hdenv loaded
hdenv loaded --json > loaded.json
hdenv load demo/1
hdenv unload demo/2; echo "wrong generation=$?"
"""
    proc = bash(script, env, home)
    assert "No profiles loaded.\n" in proc.stdout
    assert "DEMO=one LOADED=demo/1\n" in proc.stdout
    assert "unload=0 DEMO=unset\n" in proc.stdout
    assert "swap=0 DEMO=two\n" in proc.stdout
    assert "Currently loaded profiles:\n  1) demo/2\n" in proc.stdout
    assert "replacing demo/2 with demo/1" in proc.stderr
    assert "'demo/2' is not loaded (loaded: demo/1)" in proc.stderr
    assert "wrong generation=2" in proc.stdout
    [entry] = json.loads((home / "loaded.json").read_text())
    assert (entry["ref"], entry["name"], entry["generation"]) == ("demo/2", "demo", 2)
    assert entry["hash"] == os.path.basename(os.path.realpath(store / "names/demo/2"))


def test_global_store_option_through_the_function(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    env["HDENV_STORE"] = str(home / "empty-store")
    script = f""". {init}
hdenv --store {store} load demo; echo "load=$? DEMO=$DEMO"
hdenv --store={store} avail other | head -2
hdenv --debug --store {store} unload demo; echo "unload=$?"
hdenv --store {store} list names
hdenv load demo; echo "default store=$?"
"""
    proc = bash(script, env, home)
    assert "load=0 DEMO=two\n" in proc.stdout, proc.stderr
    assert "other/1 (D)" in proc.stdout
    assert "unload=0\n" in proc.stdout
    assert "demo\nother\n" in proc.stdout
    assert "default store=2\n" in proc.stdout
    assert f"{home / 'empty-store'} has no named profiles yet" in proc.stderr


def test_help_through_the_function(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    script = f""". {init}
hdenv load --help; echo "load=$?"
hdenv swap -h; echo "swap=$?"
hdenv purge --help; echo "purge=$?"
hdenv avail --help; echo "avail=$?"
hdenv --help > /dev/null; echo "top=$?"
hdenv --version; echo "version=$?"
"""
    proc = bash(script, env, home)
    out = proc.stdout
    assert "Usage: hdenv load [OPTIONS] REF...\n" in out and "load=0\n" in out, proc.stderr
    assert "Usage: hdenv swap [OPTIONS] OLD NEW\n" in out and "swap=0\n" in out
    assert "Usage: hdenv purge [OPTIONS] [--force]\n" in out and "purge=0\n" in out
    assert "Usage: hdenv avail [OPTIONS] [TEXT]...\n" in out and "avail=0\n" in out
    assert "top=0\n" in out and "version=0\n" in out and "hdenv, version" in out


def test_unknown_refs_suggest(store: Path, home: Path) -> None:
    env = base_env(home, store)
    init = write_init("bash", env)
    script = f""". {init}
hdenv load demoo; echo "typo=$?"
hdenv load pkg-demo; echo "package=$?"
hdenv show pkg-other; echo "show=$?"
hdenv spider pkg-dem; echo "spider=$?"
"""
    proc = bash(script, env, home)
    err = proc.stderr.splitlines()
    assert err[0].startswith("hdenv: error: unknown REF 'demoo'; did you mean demo,")
    # a package of a named profile loads by name (issue 22: shell/byname.py) ...
    assert not any("pkg-demo" in line for line in err[1:]), err
    # ... and `show` shows the build `load` would take
    assert not any("pkg-other" in line for line in err), err
    assert "\npkg-other/1/" in "\n" + proc.stdout
    assert "typo=2\npackage=0\n" in proc.stdout and "show=0\n" in proc.stdout
    assert "spider=0\n" in proc.stdout
    assert "pkg-demo/1\n    in: demo/1, demo/2 (D)\n    load it with: hdenv load demo\n" in (
        proc.stdout)


def test_usage_errors_are_one_line(store: Path, home: Path) -> None:
    env = base_env(home, store)
    for args, words in ((["lod"], "No such command 'lod'"), (["list", "--bad"], "--bad"),
                        (["show"], "Missing argument 'REF'"), (["build"], "Missing argument")):
        proc = subprocess.run([HDENV, *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 2, args
        assert proc.stdout == ""
        [line] = proc.stderr.splitlines()
        assert line.startswith("hdenv: error: ") and words in line, line
    bare = subprocess.run([HDENV], env=env, capture_output=True, text=True)
    assert bare.returncode == 0 and bare.stdout.startswith("Usage: hdenv [OPTIONS] COMMAND")
    assert bare.stderr == ""


USER = "hdenv11a"


@contextlib.contextmanager
def second_user() -> Iterator[pwd.struct_passwd]:
    """A real unprivileged user for the test (created and removed here)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second user")
    require_tool("useradd")
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", USER], check=True)
        created = True
    try:
        yield pwd.getpwnam(USER)
    finally:
        if created:
            subprocess.run(["userdel", USER], check=False)


def as_user(user: pwd.struct_passwd) -> list[str]:
    """Run as `user`, keeping the environment the test sets (runuser -p)."""
    return [require_tool("runuser"), "-p", "-u", user.pw_name, "--"]


def python_for(user: pwd.struct_passwd) -> tuple[str, dict[str, str]]:
    """An interpreter the user may run, and the PYTHONPATH that finds hdenv and its deps.

    The test's own venv may sit on an interpreter under /root (pyenv), which
    another user cannot execute; Debian's python3 of the same version can
    import the venv's packages.
    """
    import sysconfig

    candidates = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
    for exe in candidates:
        probe = subprocess.run([*as_user(user), exe, "-c", "pass"], capture_output=True)
        if probe.returncode == 0:
            from hdenv.shell import shellcmd

            paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                     shellcmd.libdir()]
            return exe, {"PYTHONPATH": ":".join(paths)}
    pytest.skip(f"no Python {sys.version_info[:2]} that {user.pw_name} may run")


def test_read_only_store_builds_say_one_line_and_load_works(tmp_path: Path) -> None:
    """Another user's store: `build` is one line naming what it could not write."""
    shared = Path(tempfile.mkdtemp(prefix="hdenv11-shared-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        build_profiles(shared / "store", shared, {"demo": {"env": {"DEMO": "1"}}})
        store = shared / "store"
        subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
        with second_user() as user:
            home = Path(tempfile.mkdtemp(prefix="hdenv11-home-", dir="/tmp"))
            try:
                os.chown(home, user.pw_uid, user.pw_gid)
                (home / "none.toml").write_text("")
                python, extra = python_for(user)
                env = {**base_env(home, store), **extra}
                runner = as_user(user)
                hdenv = [python, "-m", "hdenv"]
                stack = shared / "shelltest.toml"
                proc = subprocess.run([*runner, *hdenv, "build", str(stack)], env=env,
                                      capture_output=True, text=True, cwd=home)
                assert proc.returncode == 2, proc.stderr
                [line] = proc.stderr.splitlines()
                assert line.startswith(f"hdenv: error: cannot write to the store {store}: ")
                assert "is read-only for you" in line
                init = subprocess.run([*runner, *hdenv, "init", "bash", "--write"], env=env,
                                      capture_output=True, text=True, check=True).stdout.strip()
                script = (f". {init}\nhdenv avail | head -2\nhdenv load demo && hello-demo\n"
                          "hdenv unload demo; echo unload=$?")
                proc = subprocess.run([*runner, "bash", "--norc", "-c", script], env=env,
                                      capture_output=True, text=True, cwd=home)
                assert "demo/1 (D)" in proc.stdout, proc.stderr
                assert "hello from demo\nunload=0\n" in proc.stdout, proc.stderr
            finally:
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


STATUS = {"zsh": "$?", "fish": "$status", "tcsh": "$status"}
RC = {"zsh": (".zshrc", "source {}"), "fish": ("config/fish/config.fish", "source {}"),
      "tcsh": (".tcshrc", "source {}")}


@pytest.mark.parametrize("shell", sorted(STATUS))
def test_help_store_and_generations_in_other_shells(shell: str, store: Path, home: Path) -> None:
    """The same global options, --help and NAME/N through zsh's, fish's and tcsh's hdenv."""
    exe = require_tool(shell)
    env = base_env(home, store)
    init = write_init(shell, env)
    env["HDENV_STORE"] = str(home / "empty-store")
    status = STATUS[shell]
    lines = [
        RC[shell][1].format(init),
        "hdenv load --help", f"echo help={status}",
        f"hdenv --store {store} load demo/1", f"echo load={status}",
        "hello-demo",
        f"hdenv --store {store} unload demo/1", f"echo unload={status}",
        f"hdenv --store {store} load nosuch", f"echo nosuch={status}",
    ]
    script = home / f"script.{shell}"
    script.write_text("\n".join(lines) + "\n")
    flags = {"zsh": ["-f"], "fish": ["--no-config"], "tcsh": ["-f"]}[shell]
    proc = subprocess.run([exe, *flags, str(script)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=home)
    out = proc.stdout
    assert "Usage: hdenv load [OPTIONS] REF...\n" in out and "help=0\n" in out, proc.stderr
    assert "load=0\nhello from demo\nunload=0\n" in out, proc.stderr
    assert "nosuch=2\n" in out
    assert "unknown REF 'nosuch'" in proc.stderr


VARIANTS = """
[stack]
name = "s"

[matrix]
level = ["fast", "small"]

[packages.tool]
version = "1"
env = { OPT = "{{ level }}" }
script = '''
mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho $OPT\\n" > "$PREFIX/bin/tool"
chmod +x "$PREFIX/bin/tool"
'''
"""


def test_two_builds_of_one_package_are_never_loaded_together(home: Path) -> None:
    """s-fast and s-small hold different builds of tool/1: the second load is refused."""
    store = home / "variants-store"
    env = base_env(home, store)
    (home / "s.toml").write_text(VARIANTS)
    subprocess.run([HDENV, "build", str(home / "s.toml")], env=env, check=True,
                   capture_output=True)
    init = write_init("bash", env)
    script = f""". {init}
hdenv load s-fast; echo "fast=$?"
hdenv load s-small; echo "small=$?"
tool
hdenv swap s-fast s-small; echo "swap=$?"
tool
"""
    proc = bash(script, env, home)
    assert proc.stdout == "fast=0\nsmall=2\nfast\nswap=0\nsmall\n", proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if "another build" in x]
    assert line.startswith("hdenv: error: s-small/1 holds tool/1/")
    assert line.endswith("; swap them: hdenv swap s-fast/1 s-small/1")


@pytest.mark.parametrize("shell", ["bash", *sorted(STATUS)])
def test_try_load_is_loaded_and_is_avail_as_lmod_has_them(shell: str, store: Path,
                                                          home: Path) -> None:
    """`try-load` loads what exists and skips the rest quietly; `is-loaded`/`is-avail`
    answer by exit status alone, for scripts (`if hdenv is-loaded demo; then ...`)."""
    exe = require_tool(shell)
    env = base_env(home, store)
    init = write_init(shell, env)
    status = STATUS.get(shell, "$?")
    lines = [
        (". {}" if shell == "bash" else RC[shell][1]).format(init),
        "hdenv is-loaded demo", f"echo before={status}",
        "hdenv try-load nosuch demo/1 alsono", f"echo try={status}",
        "hello-demo",
        "hdenv is-loaded demo/1", f"echo loaded={status}",
        "hdenv is-loaded demo/1 other", f"echo both={status}",
        "hdenv is-avail other demo/2", f"echo avail={status}",
        "hdenv is-avail nosuch", f"echo notavail={status}",
        "hdenv ml is-loaded demo", f"echo ml={status}",
    ]
    script = home / f"script.{shell}"
    script.write_text("\n".join(lines) + "\n")
    flags = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"],
             "tcsh": ["-f"]}[shell]
    proc = subprocess.run([exe, *flags, str(script)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=home)
    assert proc.stdout == ("before=1\ntry=0\nhello from demo\nloaded=0\nboth=1\navail=0\n"
                           "notavail=1\nml=0\n"), proc.stdout + proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_refresh_and_update_as_lmod_has_them(shell: str, store: Path, home: Path) -> None:
    """`refresh` loads everything again as it is (a clobbered variable comes back);
    `update` moves each profile loaded by name to today's default generation."""
    exe = require_tool(shell)
    env = base_env(home, store)
    init = write_init(shell, env)
    setvar = "export DEMO=clobbered" if shell == "bash" else "set -gx DEMO clobbered"
    lines = [
        (". {}" if shell == "bash" else RC[shell][1]).format(init),
        "hdenv load other demo/1", setvar, "hdenv refresh", "echo refreshed=$DEMO",
        "hdenv loaded -t", "hdenv update", "echo updated=$DEMO", "hdenv loaded -t",
    ]
    script = home / f"script.{shell}"
    script.write_text("\n".join(lines) + "\n")
    flags = {"bash": ["--norc", "--noprofile"], "fish": ["--no-config"]}[shell]
    proc = subprocess.run([exe, *flags, str(script)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=home)
    assert proc.stdout == ("refreshed=one\nother/1\ndemo/1\nupdated=two\nother/1\ndemo/2\n"), \
        proc.stdout + proc.stderr
    assert "demo: demo/1 -> demo/2" in proc.stderr

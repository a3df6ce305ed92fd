"""The build sandbox with the real bubblewrap: network, $HOME, /tmp, other artifacts.

Each probe is also run with `sandbox = "none"`, where it must get through, so
these tests show the sandbox is what stops it.
"""

from __future__ import annotations

import os
import pwd
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner, require, require_tool
from unixusers import UnixUsers

from hdenv.build import bwrap

PROBE = """
[host.python]
programs = ["/usr/bin/python3.11"]

[packages.victim]
version = "1"
script = 'mkdir -p "$PREFIX/share" && echo ok > "$PREFIX/share/v"'

[packages.probe]
version = "{mode}"
deps = ["victim"]
build-deps = ["python"]
script = '''
mkdir -p "$PREFIX/share"
r="$PREFIX/share/result"
if python3.11 -c 'import socket; socket.create_connection(("127.0.0.1", {port}), timeout=5)'
then echo net=yes >> "$r"; else echo net=no >> "$r"; fi
touch '{home_probe}' 2>/dev/null || true
touch '{tmp_probe}' 2>/dev/null || true
if touch "$HDENV_DEP_VICTIM/share/intruder" 2>/dev/null; then echo victim=yes >> "$r"; else echo victim=no >> "$r"; fi
if mkdir /usr/hdenv9-probe 2>/dev/null; then rmdir /usr/hdenv9-probe; echo usr=yes >> "$r"; else echo usr=no >> "$r"; fi
'''
"""


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the host's 127.0.0.1 that accepts and closes connections."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def probe(run_hdenv: Runner, tmp_path: Path, port: int, mode: str) -> tuple[dict[str, str], Path,
                                                                             Path, Path]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    home_probe = home / f"hdenv9-{tag}"
    tmp_probe = Path("/tmp") / f"hdenv9-{tag}"
    stack = tmp_path / f"probe-{mode}.toml"
    stack.write_text(PROBE.format(mode=mode, port=port, home_probe=home_probe,
                                  tmp_probe=tmp_probe))
    store = home / "store"  # the store lives under $HOME (and under /tmp): both are hidden
    env = {"HDENV_SANDBOX": mode, "HOME": str(home), "HDENV_STORE": str(store)}
    try:
        run_hdenv("build", str(stack), env=env, check=True)
        victim = next((store / "artifacts" / "victim" / "1").iterdir())
        result = next((store / "artifacts" / "probe" / mode).iterdir()) / "share" / "result"
        answers = dict(line.split("=") for line in result.read_text().split())
        return answers, home_probe, tmp_probe, victim
    finally:
        if tmp_probe.exists():
            tmp_probe.unlink()


@pytest.mark.slow
def test_sandboxed_build_reaches_no_network_home_tmp_or_other_artifact(
        run_hdenv: Runner, tmp_path: Path, listener: int) -> None:
    require_tool("bwrap")
    require(bwrap.unavailable_reason() is None, f"bwrap cannot run: {bwrap.unavailable_reason()}")
    require(Path("/usr/bin/python3.11").is_file(), "Debian's python3.11 is not installed")
    answers, home_probe, tmp_probe, victim = probe(run_hdenv, tmp_path, listener, "bwrap")
    assert answers["net"] == "no"
    assert not home_probe.exists() and not tmp_probe.exists()
    assert answers["victim"] == "no" and not (victim / "share" / "intruder").exists()
    assert answers["usr"] == "no"


@pytest.mark.slow
def test_without_the_sandbox_the_same_probes_get_through(run_hdenv: Runner, tmp_path: Path,
                                                         listener: int) -> None:
    require(Path("/usr/bin/python3.11").is_file(), "Debian's python3.11 is not installed")
    answers, home_probe, tmp_probe, victim = probe(run_hdenv, tmp_path, listener, "none")
    assert answers["net"] == "yes"
    assert home_probe.exists()
    if os.geteuid() == 0:  # root ignores the artifact's read-only modes; the sandbox does not
        assert answers["victim"] == "yes"


SIMPLE = """
[packages.a]
version = "1"
script = 'mkdir -p "$PREFIX/share"'
"""


def test_missing_bwrap_fails_in_bwrap_mode_and_is_said_once_in_auto(run_hdenv: Runner,
                                                                    tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text(SIMPLE)
    no_bwrap = {"PATH": str(tmp_path / "empty-bin")}
    proc = run_hdenv("build", str(stack), env={**no_bwrap, "HDENV_SANDBOX": "bwrap"})
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('hdenv: error: sandbox = "bwrap", but bubblewrap (bwrap) '
                                   'is not installed')
    proc = run_hdenv("build", str(stack), env={**no_bwrap, "HDENV_SANDBOX": "auto"}, check=True)
    notices = [x for x in proc.stderr.splitlines() if "not sandboxed" in x]
    assert len(notices) == 1 and "bwrap" in notices[0]
    # nothing left to build: nothing to say
    proc = run_hdenv("build", str(stack), env={**no_bwrap, "HDENV_SANDBOX": "bwrap"}, check=True)
    assert "sandbox" not in proc.stderr


def test_bad_sandbox_setting_is_a_one_line_error(run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text(SIMPLE)
    proc = run_hdenv("build", str(stack), env={"HDENV_SANDBOX": "yes"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hdenv: error: sandbox must be one of auto, bwrap, none,"
                                   " got 'yes'")


def test_hidden_dirs_and_install_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    dirs = bwrap.hidden_dirs()
    assert "/tmp" in dirs and str(tmp_path.resolve()) in dirs
    assert dirs.index("/tmp") < dirs.index(str(tmp_path.resolve()))
    assert bwrap.install_root("/root/.pyenv/versions/3.11.7/bin/python3.11") == \
        "/root/.pyenv/versions/3.11.7"
    assert bwrap.install_root("/opt/mpi/lib/libmpi.so.40") == "/opt/mpi"
    assert bwrap.install_root("/srv/tools/x") == "/srv/tools"


@pytest.mark.slow
def test_sandbox_works_for_a_normal_user() -> None:
    """bwrap without root: user namespaces. The user runs a world-readable copy
    of hdenv (tests/unixusers.py), as a pyenv under /root is private."""
    require_tool("bwrap")
    users = UnixUsers("hdenv9", "hdenv9g")
    try:
        user = users.add("a")
        home = users.home(user)
        probe_file = home / "escaped"
        script = (f'mkdir -p "$PREFIX/share"; touch {probe_file} 2>/dev/null || true; '
                  'id -u > "$PREFIX/share/uid"')
        stack = users.base / "s.toml"
        stack.write_text(f'[packages.a]\nversion = "1"\nscript = \'{script}\'\n')
        os.chmod(stack, 0o644)
        env = users.env(user, HDENV_SANDBOX="bwrap", HDENV_STORE=str(home / "store"),
                        HDENV_CONFIG="/dev/null", HDENV_SITE_CONFIG="")
        proc = users.run(user, ["hdenv", "build", str(stack)], env)
        assert proc.returncode == 0, proc.stderr
        uid = next((home / "store" / "artifacts" / "a" / "1").iterdir()) / "share" / "uid"
        assert uid.read_text().strip() == str(pwd.getpwnam(user).pw_uid)
        assert not probe_file.exists()
        # the same script without the sandbox does reach the home: the probe can fail
        env["HDENV_SANDBOX"] = "none"
        stack.write_text(stack.read_text().replace('version = "1"', 'version = "2"'))
        assert users.run(user, ["hdenv", "build", str(stack)], env).returncode == 0
        assert probe_file.exists()
    finally:
        users.close()

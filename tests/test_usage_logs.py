"""Usage logs end to end: real bash loads and swaps, a file sink, a UDP listener,
a python-usage profile's imports, `hdenv usage report`, and sinks that are broken."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Runner, require
from shellfixtures import build_profiles

from hdenv.shell import shellcmd
from hdenv.shell.quoting.posix import Bash

VENV_BIN = str(Path(sys.executable).parent)
FIELDS = ["time", "user", "uid", "host", "slurm_job_id", "action", "explicit", "name",
          "generation", "hash"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("usage")
    root = work / "store"
    build_profiles(root, work, {"demo": {}, "other": {},
                                "gcc": {"family": "compiler"}, "clang": {"family": "compiler"}})
    return root


def in_bash(tmp_path: Path, store: Path, sink: str, body: str,
            **extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "site.toml"
    config.write_text(f"usage-log = {json.dumps(sink)}\n")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(store), "HDENV_CONFIG": "/dev/null",
           "HDENV_SITE_CONFIG": str(config), "USER": "ana", "SLURM_JOB_ID": "4242", **extra}
    script = tmp_path / "s.sh"
    script.write_text('eval "$(hdenv init bash)"\n' + body)
    return subprocess.run(["bash", "--norc", "--noprofile", str(script)], env=env,
                          capture_output=True, text=True, timeout=120)


SESSION = """
hdenv load demo
hdenv load gcc
hdenv load clang
hdenv swap demo other
hdenv unload other
hdenv purge
"""


def check_session(lines: list[dict[str, object]], store: Path) -> None:
    """The six commands of SESSION, as the log must tell them."""
    hashes = {n: os.path.basename(os.path.realpath(store / "names" / n / "current"))
              for n in ("demo", "other", "gcc", "clang")}
    for line in lines:
        assert list(line)[:len(FIELDS)] == FIELDS
        # the uid decides who it was, not $USER (the session sets USER=ana)
        assert line["user"] == pwd.getpwuid(os.getuid()).pw_name and line["uid"] == os.getuid()
        assert line["slurm_job_id"] == "4242" and line["host"] == os.uname().nodename
        assert str(line["time"]).endswith("Z") and len(str(line["time"])) == 24
    got = [(e["action"], e["explicit"], e["name"], e["generation"], e["hash"],
            [r["name"] for r in e["replaced"]] if "replaced" in e else None)  # type: ignore[attr-defined]
           for e in lines]
    assert got == [
        ("load", True, "demo", 1, hashes["demo"], None),
        ("load", True, "gcc", 1, hashes["gcc"], None),
        ("auto-swap", False, "clang", 1, hashes["clang"], ["gcc"]),
        ("swap", True, "other", 1, hashes["other"], ["demo"]),
        ("unload", True, "other", 1, hashes["other"], None),  # loads remember NAME/N
        ("unload", False, "clang", 1, hashes["clang"], None),
    ]


def read_log(directory: Path) -> list[dict[str, object]]:
    (log,) = directory.iterdir()
    assert log.name == f"{os.getuid()}@{os.uname().nodename}.jsonl"
    assert log.stat().st_mode & 0o777 == 0o640
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_file_sink_logs_loads_swaps_and_auto_swaps(tmp_path: Path, store: Path,
                                                   run_hdenv: Runner) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = in_bash(tmp_path, store, f"file:{logs}", SESSION + "hdenv loaded\n")
    assert proc.returncode == 0 and proc.stdout == "No profiles loaded.\n", proc.stderr
    check_session(read_log(logs), store)

    report = run_hdenv("usage", "report", "--from", str(logs), "--by", "profile", "--json",
                       check=True)
    counts = {r["key"]: r["count"] for r in json.loads(report.stdout)["rows"]}
    assert counts == {"demo": 1, "gcc": 1, "clang": 1, "other": 1}
    users = json.loads(run_hdenv("usage", "report", "--from", str(logs), "--by", "user",
                                 "--json", check=True).stdout)
    assert [(r["key"], r["count"]) for r in users["rows"]] == [
        (pwd.getpwuid(os.getuid()).pw_name, 4)]
    text = run_hdenv("usage", "report", "--from", str(logs), check=True).stdout
    assert text.splitlines()[0] == "loads by profile: 4"

    off = in_bash(tmp_path, store, f"file:{logs}", "hdenv load demo\n", HDENV_NO_USAGE="1")
    assert off.returncode == 0
    assert len(read_log(logs)) == 6


def test_udp_sink_sends_one_datagram_per_change(tmp_path: Path, store: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    try:
        proc = in_bash(tmp_path, store, f"udp://127.0.0.1:{port}", SESSION)
        assert proc.returncode == 0, proc.stderr
        got = [json.loads(listener.recv(65536)) for _ in range(6)]
    finally:
        listener.close()
    check_session(got, store)


def fast_path(store: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The shell function's own `python -I -S` fast path, as bash's runs it."""
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", shellcmd.FAST_CODE, shellcmd.libdir(), "bash",
         "/dev/null", str(store), *args], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(site.parent), "HDENV_SITE_CONFIG": str(site)})


def test_in_bash_the_shell_sends_the_datagrams_hdenv_only_writes_them(
        tmp_path: Path, store: Path) -> None:
    """bash's `/dev/udp`: the fast path prints the send with the load's code and sends
    nothing itself (Python's socket library was ~0.5 ms of every logged load)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    try:
        site = tmp_path / "site.toml"
        site.write_text(f'usage-log = "udp://127.0.0.1:{listener.getsockname()[1]}"\n')
        proc = fast_path(store, site, "load", "demo")
        assert proc.returncode == 0, proc.stderr
        assert f"/dev/udp/'127.0.0.1'/{listener.getsockname()[1]}" in proc.stdout
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.recv(65536)  # nothing from hdenv itself
        ran = subprocess.run(["bash", "--norc", "--noprofile", "-c", proc.stdout + "echo $?"],
                             capture_output=True, text=True, timeout=60)
        assert (ran.stdout, ran.stderr) == ("0\n", "")
        listener.settimeout(10)
        line = json.loads(listener.recv(65536))
    finally:
        listener.close()
    assert (line["action"], line["name"], line["uid"]) == ("load", "demo", os.getuid())


def test_bash_sends_a_hostile_line_byte_for_byte(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    hostile = """{"name":"it's $(touch PWNED) `touch PWNED2` \\ \\" ; exit 3"}"""
    try:
        code = Bash().datagrams("127.0.0.1", listener.getsockname()[1], [hostile, "{}"])
        assert code is not None
        ran = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        got = [listener.recv(65536), listener.recv(65536)]
    finally:
        listener.close()
    assert (ran.returncode, got) == (0, [hostile.encode(), b"{}"])
    assert list(tmp_path.iterdir()) == []
    # what bash could not send as one path component or in its own encoding, hdenv sends
    assert Bash().datagrams("a/b", 9, ["{}"]) is None
    assert Bash().datagrams("127.0.0.1", 9, ['{"name":"\u00e9"}']) is None


@pytest.mark.parametrize("sink", ["file:/etc/passwd", "file:/nonexistent/dir",
                                  "udp://127.0.0.1:9", "udp://no-such-host.invalid:514",
                                  "syslog", "nonsense:x"])
def test_a_broken_sink_never_breaks_a_load(tmp_path: Path, store: Path, sink: str) -> None:
    proc = in_bash(tmp_path, store, sink,
                   "hdenv load demo && hdenv swap demo other && hello-other && hdenv purge\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello from other\n", "")


PY_STACK = """
[stack]
name = "pyapp"

[host.python]
programs = ["{python}"]

[packages.six]
version = "1.16.0"
sources = [{{ url = "https://files.pythonhosted.org/packages/source/s/six/six-1.16.0.tar.gz", sha256 = "1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926", strip = 1 }}]
deps = ["python"]
script = '''
# Debian's interpreter would pick $PREFIX/local/lib/.../dist-packages for a bare --prefix
{pyname} setup.py -q install --prefix "$PREFIX" --install-lib "$PREFIX/lib/{pyname}/site-packages" \\
    --single-version-externally-managed --record rec.txt
'''

[packages.packaging]
version = "24.1"
sources = [{{ url = "https://files.pythonhosted.org/packages/py3/p/packaging/packaging-24.1-py3-none-any.whl", sha256 = "5b8f2217dbdbd2f7f384c41c628544e6d52f2d0f53c6d0c3ea61aa5d1d7ff124", unpack = false }}]
deps = ["python"]
script = '{pyname} -m pip install -q --no-deps --no-index --target "$PREFIX/lib/{pyname}/site-packages" packaging-24.1-py3-none-any.whl'

[profiles.pyapp]
packages = ["python", "six", "packaging"]
python-usage = true
"""


def system_python() -> str:
    """A Python with setuptools and pip, outside any home (builds are sandboxed)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        ok = os.path.isfile(candidate) and subprocess.run(
            [candidate, "-c", "import setuptools, pip"], capture_output=True).returncode == 0
        if ok:
            return candidate
    require(False, f"no {version} with setuptools and pip outside a home directory")
    return ""


@pytest.mark.slow
def test_python_usage_profile_logs_what_a_script_imported(tmp_path: Path, run_hdenv: Runner,
                                                          shared_sources: Path) -> None:
    python = system_python()
    stack = tmp_path / "py.toml"
    stack.write_text(PY_STACK.format(python=python, pyname=os.path.basename(python)))
    store = tmp_path / "store"
    env = {"HDENV_STORE": str(store), "HDENV_MIRRORS": str(shared_sources)}
    built = run_hdenv("build", str(stack), env=env, check=True)
    prof = Path(run_hdenv("path", "pyapp", env=env, check=True).stdout.strip())
    site = next((prof / "lib").glob("python3.*/site-packages"))
    modules = json.loads((site / "_hdenv_usage" / "usage" / "modules.json").read_text())
    assert modules["hash"] == prof.name == built.stdout.split()[1]
    assert modules["modules"]["six"] == "six" and modules["modules"]["packaging"] == "packaging"

    logs = tmp_path / "logs"
    logs.mkdir()
    config = tmp_path / "site.toml"
    config.write_text(f'usage-log = "file:{logs}"\n')
    run_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "USER": "ana",
               "HDENV_SITE_CONFIG": str(config), "HDENV_LOADED": f"pyapp:{prof.name}"}
    py = str(prof / "bin" / "python3")

    def python_run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([py, *args], env={**run_env, **extra}, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    script = tmp_path / "job.py"
    script.write_text("import json, six\nfrom packaging.version import Version\n"
                      "print(Version('1.0') < Version('2.0'), six.PY3)\n")
    assert python_run(str(script)).stdout == "True True\n"
    assert python_run("-c", "import six").returncode == 0
    assert python_run("-i", "-c", "import packaging").returncode == 0  # interactive: no line
    assert python_run("-c", "import six", HDENV_NO_USAGE="1").returncode == 0
    lines = read_log(logs)
    assert [(e["action"], e["name"], e["hash"], e["packages"]) for e in lines] == [
        ("python", "pyapp", prof.name, ["packaging", "six"]),
        ("python", "pyapp", prof.name, ["six"]),
    ]
    assert lines[0]["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"

    report = json.loads(run_hdenv("usage", "report", "--from", str(logs), "--by", "package",
                                  "--json", check=True).stdout)
    assert [(r["key"], r["count"]) for r in report["rows"]] == [("six", 2), ("packaging", 1)]
    assert report["counting"] == "python processes"

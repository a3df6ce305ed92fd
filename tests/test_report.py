"""`hdenv report`: what a bug report needs, from a real shell with a profile loaded."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Runner, require_tool

from hdenv.provenance.hostfacts import cpu_summary, host_facts

VENV_BIN = str(Path(sys.executable).parent)
STACK = """
[packages.tool]
version = "3"
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho hi\\n" > "$PREFIX/bin/tool"'
"""


def test_report_of_what_is_loaded_in_bash(run_hdenv: Runner, tmp_path: Path,
                                          hdenv_env: dict[str, str]) -> None:
    bash = require_tool("bash")
    stack = tmp_path / "rep.toml"
    stack.write_text(STACK)
    name, hash_ = run_hdenv("build", str(stack), check=True).stdout.split()
    script = 'eval "$(hdenv init bash)"\nhdenv load rep\nhdenv report\nhdenv report --json\n'
    env = {**hdenv_env, "PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text, _, js = proc.stdout.partition("\n{")
    assert f"profile rep/1  {hash_}" in text
    assert "generation rep/1 (current)" in text
    assert "  tool/3/" in text
    assert f"hdenv reproduce {hash_}.tar --name rep" in text
    assert f"hdenv export {hash_} -o {hash_}.tar --with-sources" in text
    assert "libc:" in text and "kernel:" in text
    data = json.loads("{" + js)
    (entry,) = data["entries"]
    assert entry["hash"] == hash_ and entry["loaded_as"] in ("rep", "rep/1")
    assert data["hdenv_version"] and data["host"]["cpu"]["cores"] >= 1
    check_host_facts_against_the_machine(data["host"], text)
    nothing = subprocess.run([bash, "--norc", "--noprofile", "-c", "hdenv report"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "nothing is loaded" in nothing.stderr
    by_id = run_hdenv("report", next(a["id"] for a in entry["artifacts"]), check=True)
    assert by_id.stdout.startswith("hdenv report") and "artifact tool/3/" in by_id.stdout
    assert name == "rep"


def os_release_name() -> str:
    """PRETTY_NAME of /etc/os-release, read here without hdenv's code."""
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return shlex.split(value)[0]
    raise AssertionError("no PRETTY_NAME in /etc/os-release")


def cpuinfo() -> tuple[str, set[str]]:
    """The first CPU's model name and flags as /proc/cpuinfo states them."""
    model, flags = "", set[str]()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        if key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def tool_says(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout.strip()


def check_host_facts_against_the_machine(host: dict[str, Any], text: str) -> None:
    """Each host fact of `report --json` is what the machine itself says, and the text says it."""
    require_tool("gcc")
    require_tool("getconf")
    assert host["os"] == os_release_name()
    uname = os.uname()
    assert host["kernel"] == f"{uname.sysname} {uname.release}"
    assert host["machine"] == uname.machine
    model, flags = cpuinfo()
    assert host["cpu"]["model"] == model != ""
    assert host["cpu"]["cores"] == os.cpu_count()
    assert set(host["cpu"]["notable"]) <= flags
    libc = tool_says("getconf", "GNU_LIBC_VERSION")  # "glibc 2.36"
    assert host["libc"] == libc
    gcc_version = tool_says("gcc", "-dumpfullversion")
    gcc_first_line = tool_says("gcc", "--version").splitlines()[0]
    assert host["compilers"]["gcc"] == gcc_first_line
    assert host["compilers"]["gcc"].endswith(" " + gcc_version)
    lines = text.splitlines()
    assert f"  os:        {host['os']}" in lines
    assert f"  kernel:    {uname.sysname} {uname.release} {uname.machine}" in lines
    assert f"  cpu:       {model} ({os.cpu_count()} cores" in text
    assert f"  libc:      {libc}" in lines
    assert f"  gcc:       {gcc_first_line}" in lines


def test_cpu_summary_names_the_x86_64_level() -> None:
    v2 = ["lm", "sse2", "cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"]
    v3 = v2 + ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]
    assert cpu_summary(["lm", "sse2"])["level"] == "x86-64-v1"
    assert cpu_summary(v2)["level"] == "x86-64-v2"
    assert cpu_summary(v3 + ["avx512f"]) == {"level": "x86-64-v3",
                                             "notable": ["sse4_2", "avx", "avx2", "fma",
                                                         "avx512f"]}
    assert cpu_summary(["asimd", "sve"]) == {"level": None, "notable": ["asimd", "sve"]}
    facts = host_facts()
    assert facts["libc"] and facts["kernel"].split()[0] == "Linux"


def test_report_names_a_host_artifact_by_the_program_its_version_came_from(
        run_hdenv: Runner) -> None:
    """`ar` sorts first, but the artifact is gcc: the report says gcc's version, not binutils'."""
    gcc = require_tool("gcc")
    require_tool("ar")
    aid = run_hdenv("host", "capture", "gcc", "ar", "gcc", "--version-from", "gcc",
                    check=True).stdout.strip()
    gcc_line = subprocess.run([gcc, "--version"], capture_output=True, text=True
                              ).stdout.splitlines()[0]
    data = json.loads(run_hdenv("report", aid, "--json", check=True).stdout)
    (row,) = [a for a in data["entries"][0]["artifacts"] if a["id"] == aid]
    assert row["host"] == gcc_line
    assert f"host: {gcc_line}" in run_hdenv("report", aid, check=True).stdout

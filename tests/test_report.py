"""`hdenv report`: what a bug report needs, from a real shell with a profile loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import Runner, require_tool

from hdenv.exchange.hostfacts import cpu_summary, host_facts

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
    nothing = subprocess.run([bash, "--norc", "--noprofile", "-c", "hdenv report"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2 and "nothing is loaded" in nothing.stderr
    by_id = run_hdenv("report", next(a["id"] for a in entry["artifacts"]), check=True)
    assert by_id.stdout.startswith("hdenv report") and "artifact tool/3/" in by_id.stdout
    assert name == "rep"


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

"""Programs of the same name in two loaded things (issue 22 item 10), in real bash:
the second load says once which of them now comes first on PATH; --quiet keeps it
silent; loads that share no program say nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV_BIN = str(Path(sys.executable).parent)
STACK = """[stack]
name = "c"
{packages}
[profiles.first]
packages = ["a"]
[profiles.second]
packages = ["b"]
[profiles.third]
packages = ["c"]
"""
PACKAGE = """[packages.{name}]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho {name}\\n" > "$PREFIX/bin/{prog}" && chmod +x "$PREFIX/bin/{prog}"'
"""


def test_a_second_profile_with_the_same_program_is_named_once(tmp_path: Path) -> None:
    packages = "".join(PACKAGE.format(name=n, prog=p)
                       for n, p in (("a", "tool"), ("b", "tool"), ("c", "other")))
    (tmp_path / "c.toml").write_text(STACK.format(packages=packages))
    (tmp_path / "none.toml").write_text("")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(tmp_path / "store"), "HDENV_CONFIG": str(tmp_path / "none.toml"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    built = subprocess.run([f"{VENV_BIN}/hdenv", "build", str(tmp_path / "c.toml")], env=env,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "--norc", "--noprofile", "-c",
                               'eval "$(hdenv init bash)"\n' + script], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    noisy = bash("hdenv load first && hdenv load third && hdenv load second && tool")
    assert noisy.returncode == 0, noisy.stderr
    assert noisy.stdout == "b\n"
    notes = [line for line in noisy.stderr.splitlines() if "both provide" in line]
    assert notes == ["hdenv: second/1 and first/1 both provide tool: second/1's come first on"
                     " PATH now (--quiet: no such note)"]
    quiet = bash("hdenv load first && hdenv load --quiet second && tool")
    assert quiet.returncode == 0 and quiet.stdout == "b\n"
    assert "both provide" not in quiet.stderr

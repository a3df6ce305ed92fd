"""Drive real Lmod and real Environment Modules 5 from a clean bash.

`ModuleShell(kind).run(moduledir, lines)` runs `lines` in `bash --norc` with
an empty environment, after setting up `module` (Lmod's init file, or a
function around Environment Modules' modulecmd.tcl run by tclsh) and
`module use MODULEDIR`. `dump NAME` in `lines` records the environment as JSON,
so tests compare variables without parsing module output.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import require, require_tool

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
LMOD_LIBEXEC = Path("/usr/share/lmod/lmod/libexec")
EM_CANDIDATES = (Path("/opt/environment-modules/usr/lib/x86_64-linux-gnu/modulecmd.tcl"),
                 Path("/opt/environment-modules/usr/lib/modulecmd.tcl"))


def need_lmod() -> None:
    require(LMOD_INIT.is_file(), f"Lmod is not installed ({LMOD_INIT})")


def em_modulecmd() -> Path:
    found = next((p for p in EM_CANDIDATES if p.is_file()), None)
    require(found is not None, "Environment Modules 5 is not unpacked under /opt")
    require_tool("tclsh")
    assert found is not None
    return found


class ModuleShell:
    def __init__(self, kind: str, tmp: Path):
        self.kind = kind  # "lmod" or "em"
        self.tmp = tmp
        if kind == "lmod":
            need_lmod()
            self.setup = f". {shlex.quote(str(LMOD_INIT))}"
        else:
            cmd = shlex.quote(str(em_modulecmd()))
            self.setup = f'module() {{ eval "$(tclsh {cmd} bash "$@")"; }}'
        self.dumps = tmp / f"dumps-{kind}"

    def run(self, moduledir: Path | None, lines: list[str],
            check: bool = True) -> subprocess.CompletedProcess[str]:
        self.dumps.mkdir(exist_ok=True)
        dump = (f'dump() {{ {shlex.quote(sys.executable)} -c "import json,os,sys;'
                f'json.dump(dict(os.environ), open(sys.argv[1], \'w\'))" '
                f'{shlex.quote(str(self.dumps))}/"$1".json; }}')
        use = [f"module use {shlex.quote(str(moduledir))}"] if moduledir else []
        script = "\n".join([self.setup, dump, *use, *lines]) + "\n"
        env = {"HOME": str(self.tmp), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
               "TERM": "dumb", "USER": "hdenv-test"}
        proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                              capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, f"{self.kind} script failed:\n{script}\n{proc.stderr}"
        return proc

    def env(self, label: str) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.dumps / f"{label}.json").read_text())
        return data


def path_entries(env: dict[str, str], var: str) -> list[str]:
    return [e for e in env.get(var, "").split(":") if e]

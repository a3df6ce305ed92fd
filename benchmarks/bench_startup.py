"""Benchmark: opening a shell with hdenv's init line vs Lmod's init line.

For bash (`bash -ic exit`), zsh (`zsh -ic exit`) and fish (`fish -ic exit`),
each with a startup file that holds only the init line: hdenv's is
`. FILE` (FILE from `hdenv init SHELL --write`), Lmod's sources its
`init/SHELL`. A startup file with nothing in it is timed too, so the cost
of each init line shows apart from the shell's own start. Goal: hdenv/Lmod
at most 1.5 for bash; zsh and fish are reported.

Then the bare program (issue 25): `hdenv list artifacts`, `show`, `config`,
`--help`, `loaded`, `--version`, `avail`, `spider` run without the shell
function (scripts, cron, jobs), each against `module -t avail` net of Lmod's
init (`bash -c '. init/bash; module -t avail'` less `bash -c '. init/bash'`,
over as many modulefiles as the store has profiles). Goal: median ratio at
most 1.5, worst at most 2.0.

The three cases take turns start by start (bare, Lmod, hdenv, bare, ...)
and each reports its median, so other load on the machine hits all three
alike and a few slow starts do not decide the ratio.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 100] [--only shells|bare]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from program import HDENV, warn_if_editable

LMOD_INIT = Path("/usr/share/lmod/lmod/init")
# shell: (startup file under HOME, how it sources a file, the command timed)
SHELLS = {
    "bash": (".bashrc", ". {}", ["-ic", "exit"]),
    "zsh": (".zshrc", "source {}", ["-ic", "exit"]),
    "fish": (".config/fish/config.fish", "source {}", ["-ic", "exit"]),
}


def write_init(shell: str, env: dict[str, str]) -> str:
    proc = subprocess.run([HDENV, "init", shell, "--write"], env=env, capture_output=True,
                          text=True, check=True)
    return proc.stdout.strip()


def time_start(cmd: list[str], env: dict[str, str]) -> float:
    """ms of one shell start."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def bench_shell(shell: str, base: Path, rounds: int) -> dict[str, float] | None:
    exe = shutil.which(shell)
    if exe is None:
        print(f"{shell}: not installed, skipped")
        return None
    rc_name, source, args = SHELLS[shell]
    homes = {}
    for case in ("bare", "lmod", "hdenv"):
        home = base / shell / case
        (home / rc_name).parent.mkdir(parents=True, exist_ok=True)
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home),
               "LANG": "C.UTF-8", "TERM": "dumb", "XDG_DATA_HOME": str(home / ".local/share"),
               "XDG_CONFIG_HOME": str(home / ".config"), "ZDOTDIR": str(home)}
        line = ""
        if case == "lmod":
            if not (LMOD_INIT / shell).is_file():
                continue
            line = source.format(LMOD_INIT / shell)
        elif case == "hdenv":
            line = source.format(write_init(shell, env))
        (home / rc_name).write_text(line + "\n")
        homes[case] = env
    times: dict[str, list[float]] = {case: [] for case in homes}
    for env in homes.values():  # warm the caches
        time_start([exe, *args], env)
    for _ in range(rounds):
        for case, env in homes.items():
            times[case].append(time_start([exe, *args], env))
    return {case: statistics.median(ts) for case, ts in times.items()}


BARE_COMMANDS = [["list", "artifacts"], ["show", "demo"], ["config"], ["--help"], ["loaded"],
                 ["--version"], ["avail"], ["spider", "pkg-demo"]]
STACK = """
[packages.pkg-demo]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\n" > "$PREFIX/bin/demo"'

[packages.pkg-other]
version = "1"
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\n" > "$PREFIX/bin/other"'

[profiles.demo]
packages = ["pkg-demo"]
description = "A demo profile"

[profiles.other]
packages = ["pkg-other"]
"""


def bench_bare(base: Path, rounds: int, hdenv: str) -> None:
    """Each bare command against `module -t avail`, taking turns; medians, then ratios."""
    bash = shutil.which("bash")
    if bash is None or not (LMOD_INIT / "bash").is_file():
        print(f"bare program: needs bash and Lmod at {LMOD_INIT}, skipped")
        return
    modules = base / "modulefiles"
    for name in ("demo", "other"):  # as many modulefiles as named profiles
        (modules / name).mkdir(parents=True)
        (modules / name / "1.lua").write_text(f'whatis("{name}")\nprepend_path("PATH", "/x")\n')
    (base / "none.toml").write_text("")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(base),
           "LANG": "C.UTF-8", "TERM": "dumb", "HDENV_STORE": str(base / "store"),
           "HDENV_CONFIG": str(base / "none.toml"), "HDENV_SITE_CONFIG": "",
           "MODULEPATH": str(modules), "LMOD_REDIRECT": "no"}
    (base / "stack.toml").write_text(STACK)
    subprocess.run([hdenv, "build", str(base / "stack.toml")], env=env, check=True,
                   capture_output=True)
    init = f". {LMOD_INIT / 'bash'}"
    cases: dict[str, list[str]] = {
        "lmod init": [bash, "--norc", "--noprofile", "-c", init],
        "lmod init + module -t avail": [bash, "--norc", "--noprofile", "-c",
                                        f"{init}; module -t avail"],
    }
    for words in BARE_COMMANDS:
        cases["hdenv " + " ".join(words)] = [hdenv, *words]
    for cmd in cases.values():  # each must work: a failing command would time its error
        subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, cmd in cases.items():
            times[case].append(time_start(cmd, env))
    med = {case: statistics.median(ts) for case, ts in times.items()}
    lmod = med["lmod init + module -t avail"] - med["lmod init"]
    print(f"bare program ({hdenv}), {rounds} runs per case, taking turns; median ms")
    print(f"  module -t avail net of Lmod's init: {lmod:6.2f}"
          f"  ({med['lmod init + module -t avail']:.2f} - {med['lmod init']:.2f})")
    ratios = []
    for words in BARE_COMMANDS:
        case = "hdenv " + " ".join(words)
        ratios.append(med[case] / lmod)
        print(f"  {case:24} {med[case]:6.2f}   ratio {ratios[-1]:5.2f}")
    median, worst = statistics.median(ratios), max(ratios)
    print(f"  bare hdenv / module -t avail: median {median:.2f} (goal <= 1.50) "
          + ("OK" if median <= 1.5 else "MISSED")
          + f", worst {worst:.2f} (goal <= 2.00) " + ("OK" if worst <= 2.0 else "MISSED"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--only", choices=["shells", "bare"],
                        help="Run one of the two parts (default: both).")
    parser.add_argument("--hdenv", default=HDENV,
                        help="The bare program to time (an older checkout's, to compare).")
    args = parser.parse_args()
    warn_if_editable(args.hdenv)
    if args.only != "shells":
        with tempfile.TemporaryDirectory(prefix="hdenv-bench-bare-") as tmp:
            bench_bare(Path(tmp), args.rounds, args.hdenv)
    if args.only == "bare":
        return
    print(f"{args.rounds} starts per case, taking turns; median ms per shell start")
    with tempfile.TemporaryDirectory(prefix="hdenv-bench-startup-") as tmp:
        for shell in SHELLS:
            got = bench_shell(shell, Path(tmp), args.rounds)
            if got is None:
                continue
            line = f"{shell:5} bare {got['bare']:6.2f}   hdenv {got['hdenv']:6.2f}"
            if "lmod" in got:
                ratio = got["hdenv"] / got["lmod"]
                line += (f"   Lmod {got['lmod']:6.2f}   ratio hdenv/Lmod {ratio:5.2f}"
                         f"   init line alone: hdenv {got['hdenv'] - got['bare']:+6.2f},"
                         f" Lmod {got['lmod'] - got['bare']:+6.2f}")
                if shell == "bash":
                    line += "  (goal <= 1.50) " + ("OK" if ratio <= 1.5 else "MISSED")
            else:
                line += f"   (no Lmod init for {shell} at {LMOD_INIT})"
            print(line)


if __name__ == "__main__":
    os.environ.pop("BASH_ENV", None)
    main()

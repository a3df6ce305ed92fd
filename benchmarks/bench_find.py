"""Benchmark: `hdenv avail`, `loaded`, `spider`, `savelist`, `restore`, package loads vs Lmod's.

One bash has both: the function from `hdenv init bash --write` and Lmod's
init. The hdenv store holds NAMES named profiles of GENERATIONS generations,
each of PACKAGES artifacts with descriptions (written by the layout contract,
as `hdenv build` leaves them); the Lmod tree holds the same names and
versions as Lua modulefiles with `whatis` descriptions. Three profiles
(modules) are loaded before `loaded` (`module list`) is timed, and saved as
collection `bench` for `savelist` and `restore`. `load zlib` + `unload zlib`
is a package loaded by name (shell/byname.py: found among the packages of
every generation of every name, its on-demand profile made before timing)
against Lmod's load + unload of the equivalent modulefile `zlib/1.2.13`. Each command's
output goes to /dev/null. Goal: every ratio hdenv/Lmod at most 1.0.

    .venv/bin/python benchmarks/bench_find.py [--rounds 40] [--blocks 4] [--names 20] [--only CASE]

`--names 1000` is issue 25's scale case: avail and spider over 1,000 named
profiles against Lmod over 1,000 modulefile directories.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from program import HDENV

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
NAMES, GENERATIONS, PACKAGES = 20, 3, 10
B32 = "abcdefghijklmnopqrstuvwxyz234567"
ZLIB = "zlib/1.2.13/" + "z" * 32  # in every generation of stack0: `hdenv load zlib`


def fake_hash(n: int) -> str:
    digest = hashlib.sha256(str(n).encode()).digest()
    return "".join(B32[b % 32] for b in digest)


def make_store(root: Path, names: int) -> None:
    serial = 1
    (root / "artifacts" / ZLIB / "bin").mkdir(parents=True)
    (root / "artifacts" / ZLIB / ".hdenv").mkdir()
    (root / "artifacts" / ZLIB / ".hdenv" / "artifact.json").write_text(
        json.dumps({"id": ZLIB, "runtime_deps": []}))
    (root / "artifacts" / ZLIB / ".hdenv" / "spec.json").write_text(
        json.dumps({"kind": "build", "name": "zlib", "version": "1.2.13", "deps": [],
                    "build_deps": [], "env": {}}))
    for i in range(names):
        ndir = root / "names" / f"stack{i}"
        ndir.mkdir(parents=True)
        for g in range(1, GENERATIONS + 1):
            ids = []
            for p in range(PACKAGES):
                aid = f"pkg{p}/{g}.0/{fake_hash(serial)}"
                serial += 1
                meta = root / "artifacts" / aid / ".hdenv"
                meta.mkdir(parents=True)
                (meta / "artifact.json").write_text(json.dumps({"id": aid}))
                ids.append(aid)
            if i == 0:
                ids.append(ZLIB)
            phash = fake_hash(serial)
            serial += 1
            prefix = root / "profiles" / phash
            for sub in ("bin", ".hdenv"):
                (prefix / sub).mkdir(parents=True)
            (prefix / ".hdenv" / "profile.json").write_text(json.dumps(
                {"hash": phash, "artifacts": ids, "env": {}, "family": None}))
            (root / "specs").mkdir(exist_ok=True)
            (root / "specs" / f"{phash}.about.json").write_text(
                json.dumps({"description": f"Stack {i}, generation {g}"}))
            os.symlink(f"../../profiles/{phash}", ndir / str(g))
        os.symlink(str(GENERATIONS), ndir / "current")


def make_modules(moddir: Path, prefix: Path, names: int) -> None:
    zlib = moddir / "zlib" / "1.2.13.lua"  # as `hdenv modulefiles` writes an artifact's
    zlib.parent.mkdir(parents=True)
    zlib.write_text(f"""\
whatis("Description: zlib")
whatis("Artifact: {ZLIB}")
prepend_path("PATH", "{prefix}/zlib/bin")
prepend_path("CMAKE_PREFIX_PATH", "{prefix}/zlib")
setenv("ZLIB_ROOT", "{prefix}/zlib")
""")
    for i in range(names):
        for g in range(1, GENERATIONS + 1):
            path = moddir / f"stack{i}" / f"{g}.lua"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"""\
whatis("Description: Stack {i}, generation {g}")
whatis("Packages: {' '.join(f'pkg{p}/{g}.0' for p in range(PACKAGES))}")
prepend_path("PATH", "{prefix}/stack{i}/{g}/bin")
""")


def timing_loop(label: str, command: str, rounds: int) -> str:
    return f"""
{command} >/dev/null 2>&1
__t0=$EPOCHREALTIME
for ((__i = 0; __i < {rounds}; __i++)); do {command} >/dev/null 2>&1; done
__t1=$EPOCHREALTIME
echo "{label} $(( (${{__t1/./}} - ${{__t0/./}}) / {rounds} ))"
"""


CASES = (  # label, hdenv command, Lmod command
    ("avail", "hdenv avail", "module avail"),
    ("loaded", "hdenv loaded", "module list"),
    ("spider", "hdenv spider pkg3", "module spider stack3"),
    ("savelist", "hdenv savelist", "module savelist"),
    ("restore", "hdenv restore bench", "module restore bench"),
    ("load-pkg", "hdenv load zlib; hdenv unload zlib", "module load zlib; module unload zlib"),
    ("show", "hdenv show stack3", "module show stack3"),
    ("whatis", "hdenv whatis stack3", "module whatis stack3"),
    ("keyword", "hdenv keyword generation", "module keyword generation"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--names", type=int, default=NAMES, help="named profiles (modules)")
    parser.add_argument("--only", action="append", choices=[c[0] for c in CASES],
                        help="run only this case (repeatable)")
    args = parser.parse_args()
    cases = [c for c in CASES if args.only is None or c[0] in args.only]
    if not LMOD_INIT.is_file():
        sys.exit(f"Lmod not found at {LMOD_INIT} (apt-get install lmod)")
    with tempfile.TemporaryDirectory(prefix="hdenv-bench-find-") as tmp:
        base = Path(tmp)
        store, moddir = base / "store", base / "modules"
        make_store(store, args.names)
        make_modules(moddir, base / "prefix", args.names)
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": tmp,
               "LANG": "C.UTF-8", "HDENV_STORE": str(store), "HDENV_CONFIG": "/dev/null",
               "XDG_DATA_HOME": str(base / "data"), "TERM": "dumb"}
        init = subprocess.run([HDENV, "init", "bash", "--write"], env=env, capture_output=True,
                              text=True, check=True).stdout.strip()
        script = (f". {init}\n. {LMOD_INIT}\nexport MODULEPATH={moddir}\n"
                  "hdenv load stack0 stack1 stack2\nmodule load stack0 stack1 stack2\n"
                  "hdenv save bench\nmodule save bench\n"
                  "hdenv restore bench && module restore bench || exit 1\n"
                  "hdenv load zlib && hdenv unload zlib || exit 1\n")
        block = max(1, args.rounds // args.blocks)
        for b in range(args.blocks):
            for label, mine, theirs in cases:
                script += timing_loop(f"hdenv-{label}-{b}", mine, block)
                script += timing_loop(f"lmod-{label}-{b}", theirs, block)
        proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            sys.exit(f"benchmark shell failed:\n{proc.stderr}")
        got: dict[str, float] = {}
        for line in proc.stdout.splitlines():
            label, micros = line.split()
            key = label.rsplit("-", 1)[0]
            got[key] = min(got.get(key, float("inf")), int(micros) / 1000)
    print(f"{args.names} names x {GENERATIONS} generations x {PACKAGES} packages; {args.rounds}"
          f" rounds in {args.blocks} alternating blocks, best block counts (ms per command)")
    for label, mine, theirs in cases:
        ratio = got[f"hdenv-{label}"] / got[f"lmod-{label}"]
        verdict = "OK" if ratio <= 1.0 else "MISSED"
        print(f"{mine:34} {got[f'hdenv-{label}']:7.2f}   {theirs:20} {got[f'lmod-{label}']:7.2f}"
              f"   ratio {ratio:5.2f}  (goal <= 1.00) {verdict}")


if __name__ == "__main__":
    main()

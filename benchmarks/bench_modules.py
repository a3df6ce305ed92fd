"""Benchmark: Lmod loading a generated profile module vs `hdenv load` of the same profile.

Creates one artifact and a named profile of it (through the store API, no
build), writes its modulefiles with `hdenv modulefiles` (the code path, not a
hand-written module), then in one real bash times N rounds of `module load
bench/1; module unload bench/1` (Lmod, the generated Lua module) and of
`hdenv load bench; hdenv unload bench` (the shell function), alternating
blocks and keeping each side's best block. Prints ms per round trip and the
ratio hdenv/Lmod (the design's goal for `hdenv load` is <= 0.5 of Lmod).

    .venv/bin/python benchmarks/bench_modules.py [--rounds 100] [--blocks 10]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from bench_load import LMOD_INIT, run_bash, timing_loop

from hdenv.modules.generate import write_modulefiles
from hdenv.profile.profiles import create_profile, profile_hash, profile_spec, set_current
from hdenv.shell import shellcmd
from hdenv.store.artifacts import install_artifact
from hdenv.store.layout import Store


def make_profile(store: Store) -> None:
    """A profile `bench` with bin, man, pkgconfig, include and lib, and one variable."""

    def populate(prefix: Path, _fd: int, _pfd: int) -> None:
        for sub in ("bin", "share/man/man1", "lib/pkgconfig", "include"):
            (prefix / sub).mkdir(parents=True)
        tool = prefix / "bin" / "benchtool"
        tool.write_text("#!/bin/sh\necho bench\n")
        tool.chmod(0o755)

    spec = {"kind": "build", "name": "benchpkg", "version": "1.0", "sources": [], "deps": [],
            "build_deps": [], "env": {}, "script": "bench"}
    aid, _ = install_artifact(store, spec, populate, runtime_deps=[])
    pspec = profile_spec([aid], {"BENCH_HOME": "@@HDENV_PROFILE@@"}, None)
    create_profile(store, pspec)
    set_current(store, "bench", profile_hash(pspec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=10)
    args = parser.parse_args()
    if not LMOD_INIT.is_file():
        sys.exit(f"Lmod not found at {LMOD_INIT} (apt-get install lmod)")
    block = max(1, args.rounds // args.blocks)
    with tempfile.TemporaryDirectory(prefix="hdenv-bench-modules-") as tmp:
        base = Path(tmp)
        store = Store(base / "store").ensure()
        make_profile(store)
        outcome = write_modulefiles(store, base / "modules", "lmod", ["bench"])
        init = base / "init.sh"
        init.write_text(shellcmd.init_code("bash", completion=False))
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": tmp,
               "LANG": "C.UTF-8", "HDENV_STORE": str(store.root)}
        script = (f". {shlex.quote(str(init))}\n. {LMOD_INIT}\n"
                  f"module use {shlex.quote(str(outcome.modulepath))}\n")
        for i in range(args.blocks):
            script += timing_loop(f"hdenv{i}", "hdenv load bench", "hdenv unload bench", block)
            script += timing_loop(f"lmod{i}", "module load bench/1", "module unload bench/1",
                                  block)
        got = run_bash(script, env)
    best = {tool: min(v for k, v in got.items() if k.startswith(tool))
            for tool in ("hdenv", "lmod")}
    print(f"rounds: {args.rounds} in {args.blocks} alternating blocks, best block counts"
          " (ms per load+unload round trip, one bash)")
    print(f"Lmod  module load+unload (generated Core/bench/1.lua): {best['lmod']:7.2f} ms")
    print(f"hdenv load+unload (same profile):                     {best['hdenv']:7.2f} ms")
    ratio = best["hdenv"] / best["lmod"]
    print(f"ratio hdenv/Lmod: {ratio:.2f}  (design goal for hdenv load <= 0.50)"
          f" {'OK' if ratio <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    os.environ.pop("MANPATH", None)
    main()

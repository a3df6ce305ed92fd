#!/usr/bin/env python3
"""The build jail's cost (issue 23): a real build jailed, in today's sandbox, unsandboxed.

    python benchmarks/bench_jail.py [--sources ../shared/sources] [--repeat 3]

1. zlib 1.2.13 from its release (configure, make, make install, the link
   audit) built with `hdenv build` in one warm store, each run a new id (an env
   value changes), the three modes interleaved so a busy machine slows them
   alike: the jail (`sandbox = "bwrap"`, the default), today's sandbox
   (`jail = false`) and no sandbox (`sandbox = "none"`). Best and median of
   the wall times and of the builds' own `build_seconds` (without hdenv's
   start and planning), and their ratios. Goal: jailed / sandboxed under 1.05.
2. What one bwrap start costs, with and without the jail's mounts and links
   (`/bin/true` inside), and what working out the jail costs the first time in
   a process (package lists, the scan of /usr/include) and then per build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from program import HDENV, warn_if_editable

from hdenv.build import bwrap, jail

ZLIB_SHA256 = "71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1"
REPO = Path(__file__).resolve().parents[1]

ZLIB = """
[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar", "ranlib", "nm", "strip"]
family = "compiler"

[packages.zlib]
version = "1.2.13"
sources = [{{ url = "file://{src}/zlib-1.2.13.tar.bz2", sha256 = "{sha}", strip = 1 }}]
build-deps = ["gcc"]
env = {{ BENCH_RUN = "{run}" }}
script = '''
./configure --prefix="$PREFIX"
make -j"$HDENV_JOBS"
make install
'''
"""

MODES = {"jailed": {"HDENV_SANDBOX": "bwrap", "HDENV_JAIL": "1"},
         "sandboxed": {"HDENV_SANDBOX": "bwrap", "HDENV_JAIL": "0"},
         "unsandboxed": {"HDENV_SANDBOX": "none"}}


def build(work: Path, env: dict[str, str], run: str) -> tuple[float, float]:
    """(wall time of `hdenv build`, the build's own `build_seconds` from artifact.json)."""
    stack = work / f"zlib-{run}.toml"
    stack.write_text(ZLIB.format(run=run, src=env["HDENV_MIRRORS"], sha=ZLIB_SHA256))
    metas = work / "store" / "artifacts" / "zlib" / "1.2.13"
    before = set(metas.glob("*")) if metas.is_dir() else set()
    started = time.perf_counter()
    subprocess.run([HDENV, "build", str(stack)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    (new,) = set(metas.glob("*")) - before
    meta = json.loads((new / ".hdenv" / "artifact.json").read_text())
    return wall, float(meta["build_seconds"])


def bwrap_start(jailed: bool, repeat: int) -> float:
    extra = jail.bwrap_args() if jailed else []
    argv = bwrap.wrap(["/bin/true"], writable=[], readable=[], cwd=Path("/"), jail=extra)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    warn_if_editable()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sources", default=os.environ.get("HDENV_TEST_SOURCES")
                    or str(REPO.parent / "shared" / "sources"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.sources, "zlib-1.2.13.tar.bz2").is_file():
        print(f"{args.sources}: no zlib-1.2.13.tar.bz2 (--sources DIR)", file=sys.stderr)
        return 2
    reason = bwrap.unavailable_reason()
    if reason is not None:
        print(f"cannot measure the jail: {reason}", file=sys.stderr)
        return 2
    if not jail.available():
        print("cannot measure the jail: no dpkg or rpm", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hdenv-bench-jail-"))
    env = {**os.environ, "HDENV_STORE": str(work / "store"), "HDENV_CONFIG": str(work / "c.toml"),
           "HDENV_SITE_CONFIG": "", "HDENV_MIRRORS": os.path.abspath(args.sources),
           "HDENV_JOBS": "2"}
    (work / "c.toml").write_text("")
    try:
        build(work, {**env, **MODES["unsandboxed"]}, "warm-up")  # host capture, source fetch
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        inner: dict[str, list[float]] = {mode: [] for mode in MODES}
        for n in range(args.repeat):
            for mode, extra in MODES.items():
                wall, own = build(work, {**env, **extra}, f"{mode}-{n}")
                walls[mode].append(wall)
                inner[mode].append(own)
        print(f"zlib 1.2.13 from its release, {args.repeat} builds each (interleaved):")
        print(f"  {'mode':12s} {'wall best':>9s} {'median':>7s} {'build best':>10s} {'median':>7s}")
        for mode in MODES:
            print(f"  {mode:12s} {min(walls[mode]):8.2f}s {statistics.median(walls[mode]):6.2f}s"
                  f" {min(inner[mode]):9.2f}s {statistics.median(inner[mode]):6.2f}s")
        for a, b in (("jailed", "sandboxed"), ("jailed", "unsandboxed"),
                     ("sandboxed", "unsandboxed")):
            print(f"  {a} / {b}: wall {min(walls[a]) / min(walls[b]):.3f} (median"
                  f" {statistics.median(walls[a]) / statistics.median(walls[b]):.3f}), build"
                  f" {min(inner[a]) / min(inner[b]):.3f} (median"
                  f" {statistics.median(inner[a]) / statistics.median(inner[b]):.3f})")
        print("  goal: jailed / sandboxed under 1.05")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    jail.forget()
    started = time.perf_counter()
    count = len(jail.bwrap_args())
    cold = time.perf_counter() - started
    started = time.perf_counter()
    jail.bwrap_args(["/usr/include/zlib.h"])
    warm = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "jail.json"
        jail.save_cache(cache)
        jail.forget()
        started = time.perf_counter()
        jail.load_cache(cache)
        jail.bwrap_args()
        from_disk = time.perf_counter() - started
    plain, jailed = bwrap_start(False, 10), bwrap_start(True, 10)
    print(f"the jail: {count} bwrap arguments, worked out in {cold * 1000:.0f} ms (first in a"
          f" process, no cache), {from_disk * 1000:.0f} ms (first in a process, from the"
          f" store's cache/jail.json), {warm * 1000:.1f} ms for another allowed set")
    print(f"one bwrap start (/bin/true), best of 10: sandbox {plain * 1000:.1f} ms, with the"
          f" jail {jailed * 1000:.1f} ms (+{(jailed - plain) * 1000:.1f} ms per build script"
          " or check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

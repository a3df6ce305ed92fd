#!/usr/bin/env python3
"""Benchmark: `hdenv gc` on generated stores of 1,000 and 10,000 artifacts.

Each generated store has artifacts in dependency chains (runtime deps), each
with a few files, a spec per artifact, and one named profile keeping half of
them alive; the other half is garbage. Times the real command (`hdenv gc
--dry-run`: the mark and the listing with sizes; then `hdenv gc`), Python
start-up included, against a baseline measured in the same run: `rm -rf` of
exactly the same garbage in an identical store (deleting files is what a
disk makes expensive). Each size runs `--rounds` times (default 3); the
median of the rounds' ratios and the ratio of the best times are printed: on a
shared machine one run's `rm -rf` of 10,000 artifacts took 4 s, another 37 s.
Prints the ratio to the baseline and of the large store to the small one.
`--read-only` gives the artifacts a build's modes (what a real store holds);
`rm -rf` cannot empty those, so that baseline is `chmod -R u+w` then `rm -rf`.
gc deletes with 4 threads where `rm -rf` uses one: the baseline is what a
person would run instead, not gc's own algorithm done single-threaded.
Goals: seconds for 10,000 artifacts, gc no slower than `rm -rf`, and the size
ratio linear.

    .venv/bin/python benchmarks/bench_gc.py [--sizes 1000,10000] [--files 4] [--rounds 3]
        [--read-only] [--hdenv PROGRAM]
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
from typing import Any

from program import HDENV, warn_if_editable

from hdenv.store.hashing import canonical_json, spec_hash

CHAIN = 10


def generate(root: Path, count: int, files: int, read_only: bool = False) -> list[Path]:
    """`count` artifacts written straight into the layout (no builds: we time gc, not builds).

    With `read_only`, each artifact gets the modes a build leaves (files 0444/0555,
    directories 0555), which gc must undo on directories before it can empty them.
    Returns the garbage: what gc should remove.
    """
    for d in ("artifacts", "specs", "profiles", "names", "tmp", "locks"):
        (root / d).mkdir(parents=True, exist_ok=True)
    live: list[str] = []
    garbage: list[Path] = []
    previous = None
    for i in range(count):
        deps: list[str] = [previous] if previous and i % CHAIN else []
        spec = {"kind": "build", "name": f"pkg{i}", "version": "1.0", "sources": [],
                "deps": deps, "build_deps": [], "env": {}, "script": str(i)}
        hash_ = spec_hash(spec)
        aid = f"pkg{i}/1.0/{hash_}"
        prefix = root / "artifacts" / aid
        (prefix / "bin").mkdir(parents=True)
        for f in range(files):
            (prefix / "bin" / f"tool{f}").write_bytes(b"#!/bin/sh\necho %d\n" % i)
        (prefix / ".hdenv").mkdir()
        (prefix / ".hdenv" / "artifact.json").write_text(
            json.dumps({"id": aid, "kind": "build", "runtime_deps": deps}))
        if read_only:
            for f in range(files):
                os.chmod(prefix / "bin" / f"tool{f}", 0o555)
            os.chmod(prefix / ".hdenv" / "artifact.json", 0o444)
            for sub in (prefix / "bin", prefix / ".hdenv", prefix):
                os.chmod(sub, 0o555)
        (root / "specs" / f"{hash_}.json").write_bytes(canonical_json(spec) + b"\n")
        if (i // CHAIN) % 2 == 0:
            live.append(aid)
        else:
            garbage += [root / "artifacts" / f"pkg{i}", root / "specs" / f"{hash_}.json"]
        previous = aid
    pspec: dict[str, Any] = {"kind": "profile", "artifacts": sorted(live), "env": {},
                             "family": None}
    phash = spec_hash(pspec)
    (root / "specs" / f"{phash}.json").write_bytes(canonical_json(pspec) + b"\n")
    (root / "profiles" / phash / ".hdenv").mkdir(parents=True)
    (root / "profiles" / phash / ".hdenv" / "profile.json").write_text(
        json.dumps({"hash": phash, "artifacts": sorted(live), "env": {}, "family": None}))
    (root / "names" / "keep").mkdir()
    os.symlink(f"../../profiles/{phash}", root / "names" / "keep" / "1")
    os.symlink("1", root / "names" / "keep" / "current")
    return garbage


def timed(args: list[str], store: Path) -> tuple[float, str]:
    env = {**os.environ, "HDENV_STORE": str(store), "HDENV_CONFIG": os.devnull}
    subprocess.run(["sync"])
    start = time.perf_counter()
    proc = subprocess.run([HDENV, *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"hdenv {' '.join(args)} failed:\n{proc.stderr}")
    return elapsed, proc.stderr.strip().splitlines()[-1]


def rm_baseline(paths: list[Path], read_only: bool = False) -> float:
    """`rm -rf` of `paths`; read-only trees need `chmod -R u+w` first (rm cannot empty a
    directory without write permission), timed too: that is what removing them takes."""
    subprocess.run(["sync"])
    start = time.perf_counter()
    for i in range(0, len(paths), 500):
        batch = list(map(str, paths[i:i + 500]))
        if read_only:
            subprocess.run(["chmod", "-R", "u+w", "--", *batch], check=True)
        subprocess.run(["rm", "-rf", "--", *batch], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--files", type=int, default=4, help="files per artifact")
    parser.add_argument("--hdenv", help="The program to time (an older checkout's, to compare).")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Runs per size; the medians are compared (a shared machine is noisy).")
    parser.add_argument("--read-only", action="store_true",
                        help="Artifacts with a build's read-only modes"
                        " (baseline: chmod -R u+w, then rm -rf).")
    args = parser.parse_args()
    if args.hdenv:
        global HDENV
        HDENV = args.hdenv
    warn_if_editable(HDENV)
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, tuple[float, float, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    try:
        for n in sizes:
            runs: list[tuple[float, float, float]] = []
            for r in range(args.rounds):
                store, twin = work / f"store{n}", work / f"twin{n}"
                # which of the two is written last (the warmer one) alternates per round
                first, second = (store, twin) if r % 2 == 0 else (twin, store)
                made = {first: generate(first, n, args.files, args.read_only)}
                made[second] = generate(second, n, args.files, args.read_only)
                baseline = rm_baseline(made[twin], args.read_only)
                dry, _ = timed(["gc", "--dry-run"], store)
                real, summary = timed(["gc"], store)
                left = sum(1 for _ in (store / "artifacts").iterdir())
                runs.append((dry, real, baseline))
                print(f"{n:>6} artifacts: gc --dry-run {dry:6.2f} s, gc {real:6.2f} s,"
                      f" {'chmod -R u+w, ' if args.read_only else ''}rm -rf of the same garbage"
                      f" {baseline:6.2f} s: gc/rm {real / baseline:.2f}"
                      f" ({left} names left) | {summary}")
                for tree in (store, twin):
                    subprocess.run(["chmod", "-R", "u+w", str(tree)], check=True)
                    shutil.rmtree(tree)
            dry, real, baseline = (statistics.median([run[i] for run in runs]) for i in range(3))
            results[n] = (dry, real, baseline)
            if args.rounds > 1:
                ratio = statistics.median([run[1] / run[2] for run in runs])
                best_gc, best_rm = min(run[1] for run in runs), min(run[2] for run in runs)
                print(f"{n:>6} artifacts, {args.rounds} rounds: median gc --dry-run {dry:6.2f} s,"
                      f" gc {real:6.2f} s, rm {baseline:6.2f} s, median gc/rm {ratio:.2f};"
                      f" best gc {best_gc:.2f} s, rm {best_rm:.2f} s: {best_gc / best_rm:.2f}")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        ratio = results[large][1] / results[small][1]
        dry_ratio = results[large][0] / results[small][0]
        rm_ratio = results[large][2] / results[small][2]
        print(f"ratio {large}/{small}: gc {ratio:.1f}x, --dry-run {dry_ratio:.1f}x,"
              f" rm -rf {rm_ratio:.1f}x for {large / small:.0f}x the artifacts"
              f" (linear: {large / small:.0f}x)")


if __name__ == "__main__":
    main()

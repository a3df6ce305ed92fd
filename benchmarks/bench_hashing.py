#!/usr/bin/env python3
"""Source hashing throughput: hdenv's sha256_file against `sha256sum` on one file.

Goal (DESIGN.md, performance goals): hdenv at least 90% of sha256sum's
throughput. Both run in the same process run on the same file, best of N each,
after one untimed read so both see a warm page cache.

    python benchmarks/bench_hashing.py [--size-mb N] [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hdenv.store.hashing import sha256_file
from hdenv.store.layout import Store
from hdenv.store.sources import SourceStore

GOAL = 0.9


def write_data(path: Path, size_mb: int) -> None:
    """Random-looking but cheap to make: a random 1 MiB block, re-hashed per block
    so no two blocks are equal (avoids any chance of a dedup-friendly pattern)."""
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:
        for i in range(size_mb):
            block[:32] = hashlib.sha256(i.to_bytes(8, "little") + block[32:64]).digest()
            f.write(block)


def best_of(repeat: int, fn: Callable[[], str]) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fetch_time(path: Path, workdir: Path, repeat: int) -> float:
    """Best time of `SourceStore.fetch` (stream, hash, land) into a fresh store."""
    best = float("inf")
    for i in range(repeat):
        store = Store(workdir / f"store{i}")
        t0 = time.perf_counter()
        SourceStore(store).fetch(str(path))
        best = min(best, time.perf_counter() - t0)
        shutil.rmtree(store.root)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=512, help="file size in MiB (default 512)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    args = ap.parse_args(argv)
    if shutil.which("sha256sum") is None:
        print("sha256sum not found on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hdenv-bench-") as d:
        path = Path(d) / "data.bin"
        write_data(path, args.size_mb)
        size = path.stat().st_size
        sha256_file(path)  # warm the page cache for both contenders

        def coreutils() -> str:
            out = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True,
                                 text=True).stdout
            return out.split()[0]

        t_ref, h_ref = best_of(args.repeat, coreutils)
        t_hd, h_hd = best_of(args.repeat, lambda: sha256_file(path))
        t_fetch = fetch_time(path, Path(d), args.repeat)
    if h_ref != h_hd:
        print(f"MISMATCH: sha256sum {h_ref} vs hdenv {h_hd}", file=sys.stderr)
        return 1
    mb = size / 1e6
    ratio = t_ref / t_hd
    print(f"file: {size / (1 << 20):.0f} MiB, best of {args.repeat}")
    print(f"sha256sum:   {mb / t_ref:8.1f} MB/s  ({t_ref:.3f} s)")
    print(f"hdenv:       {mb / t_hd:8.1f} MB/s  ({t_hd:.3f} s)")
    print(f"hdenv fetch: {mb / t_fetch:8.1f} MB/s  ({t_fetch:.3f} s; copy into the store "
          "+ hash in one pass, for information)")
    print(f"ratio hdenv/sha256sum: {ratio:.2f} (goal >= {GOAL}) "
          f"{'OK' if ratio >= GOAL else 'BELOW GOAL'}")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())

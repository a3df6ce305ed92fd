#!/usr/bin/env python3
"""The link audit's cost: hdenv's pure-Python ELF reading against one `readelf -d` per file.

After every build hdenv reads the dynamic section of every installed ELF file
and resolves each needed library. This times that work (read + resolve, as
`linkaudit.audit` does it, without patching) on a tree of real shared
libraries (copied from the system library directory), against the baseline a
shell script would use: `readelf -d` on each file. Best of N each.

    python benchmarks/bench_linkaudit.py [--files N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hdenv.build import linkaudit
from hdenv.store.elf import LoaderPath, is_elf, system_lib_dirs


def sample(dest: Path, count: int) -> list[Path]:
    """Up to `count` real shared libraries copied into `dest/lib`."""
    lib = dest / "lib"
    lib.mkdir(parents=True)
    out: list[Path] = []
    for d in system_lib_dirs():
        for name in sorted(os.listdir(d)):
            p = Path(d) / name
            if len(out) >= count:
                return out
            if ".so" in name and p.is_file() and not p.is_symlink() and is_elf(p):
                shutil.copy2(p, lib / name)
                out.append(lib / name)
    return out


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    readelf = shutil.which("readelf")
    if readelf is None:
        print("readelf (binutils) is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        files = sample(Path(tmp), args.files)

        def audit() -> None:
            linkaudit.audit(Path(tmp), [], transient=(), loader=LoaderPath(), complete=False)

        def baseline() -> None:
            for f in files:
                subprocess.run([readelf, "-d", str(f)], stdout=subprocess.DEVNULL, check=True)

        ours = best(audit, args.repeat)
        base = best(baseline, args.repeat)
    print(f"{len(files)} ELF files: hdenv audit {ours * 1000:.0f} ms, "
          f"readelf -d per file {base * 1000:.0f} ms, ratio {ours / base:.2f} (lower is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

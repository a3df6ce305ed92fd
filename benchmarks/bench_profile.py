"""Profile creation against `cp -rs` of the same trees (goal: ratio <= 1.5).

Generates N artifact-like trees of F files each, laid out like real installs:
shared directories every package writes into (bin/, lib/, lib/pkgconfig/,
share/man/man1/, share/man/man3/, share/locale/LANG/LC_MESSAGES/ and
lib/python3.11/site-packages/) and private ones (include/pkgN/, share/pkgN/...).
Each contender runs in a fresh destination, best of R runs, in the same process:

- ``cp -rs``          GNU cp making a symlink per file (the baseline);
- ``farm``            hdenv.profile.farm.build_farm, as profiles use it (tree folding);
- ``farm, no fold``   the same, one symlink per file (what cp -rs does);
- ``create_profile``  the whole thing: spec, farm, Python venv, metadata, rename.

Run: .venv/bin/python benchmarks/bench_profile.py [--artifacts 50] [--files 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hdenv.profile.farm import Member, build_farm
from hdenv.profile.profiles import create_profile, profile_spec
from hdenv.store.artifacts import install_artifact
from hdenv.store.fsutil import remove_tree
from hdenv.store.layout import Store

LANGS = ["de", "fr", "es", "it", "ja", "ko", "pl", "pt", "ru", "zh_CN"]


def layout(i: int, files: int) -> list[str]:
    """Relative paths of artifact i; about a third lands in directories shared by all."""
    shared = [f"bin/pkg{i}-tool{k}" for k in range(20)]
    shared += [f"lib/libpkg{i}_{k}.so" for k in range(40)]
    shared += [f"lib/pkgconfig/pkg{i}-{k}.pc" for k in range(5)]
    shared += [f"share/man/man1/pkg{i}-tool{k}.1" for k in range(20)]
    shared += [f"share/man/man3/pkg{i}_f{k}.3" for k in range(150)]
    shared += [f"share/locale/{lang}/LC_MESSAGES/pkg{i}.mo" for lang in LANGS]
    shared += [f"lib/python3.11/site-packages/pkg{i}/m{k}.py" for k in range(100)]
    shared += [f"lib/python3.11/site-packages/pkg{i}_plugin_{k}.pth" for k in range(5)]
    private = [f"include/pkg{i}/sub{k % 10}/h{k}.h" for k in range(300)]
    rest = files - len(shared) - len(private)
    private += [f"share/pkg{i}/data/d{k % 25}/e{k % 7}/f{k}.dat" for k in range(max(rest, 0))]
    return (shared + private)[:files]


def populate_tree(root: Path, paths: list[str]) -> None:
    made: set[str] = set()
    for rel in paths:
        parent = os.path.dirname(rel)
        if parent not in made:
            os.makedirs(root / parent, exist_ok=True)
            made.add(parent)
        with open(root / rel, "wb") as f:
            f.write(b"x")


def best_of(repeat: int, prepare: Callable[[], Path],
            run: Callable[[Path], object]) -> tuple[float, Path]:
    """Best wall time over `repeat` fresh destinations, and the last destination."""
    best = float("inf")
    for _ in range(repeat):
        dest = prepare()
        t0 = time.perf_counter()
        run(dest)
        best = min(best, time.perf_counter() - t0)
    return best, dest


def count_links(root: Path) -> int:
    return sum(len(files) + sum(os.path.islink(os.path.join(d, x)) for x in dirs)
               for d, dirs, files in os.walk(root))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", type=int, default=50)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-profile-", dir=args.dir))
    try:
        store = Store(work / "store").ensure()
        ids = []
        t0 = time.perf_counter()
        for i in range(args.artifacts):
            spec = {"kind": "build", "name": f"pkg{i}", "version": "1.0", "sources": [],
                    "deps": [], "build_deps": [], "env": {}, "script": f"bench {args.files}"}
            paths = layout(i, args.files)
            ids.append(install_artifact(
                store, spec, lambda p, _fd, _pfd, paths=paths: populate_tree(p, paths),  # type: ignore[misc]
                runtime_deps=[])[0])
        setup = time.perf_counter() - t0
        members = [Member(a, store.artifact_dir(a)) for a in ids]
        # cp -rs gets each artifact's top-level entries (not its .hdenv metadata);
        # entries with the same name merge in the destination, as in the farm
        roots = [str(m.root / e) for m in members for e in sorted(os.listdir(m.root))
                 if e != ".hdenv"]
        total = args.artifacts * args.files
        print(f"{args.artifacts} artifacts x {args.files} files = {total} files "
              f"(generated in {setup:.1f}s); best of {args.repeat}", flush=True)

        counter = iter(range(10**6))

        def fresh() -> Path:
            d = work / f"dest{next(counter)}"
            d.mkdir()
            return d

        cp, cp_dest = best_of(args.repeat, fresh, lambda d: subprocess.run(
            ["cp", "-rs", *roots, str(d)], check=True))
        farm, farm_dest = best_of(args.repeat, fresh, lambda d: build_farm(
            d, members, keep_real=["bin", "lib/python3.11/site-packages"]))
        nofold, _ = best_of(args.repeat, fresh, lambda d: build_farm(d, members, fold=False))

        spec_n = iter(range(10**6))

        def whole(_d: Path) -> None:
            # a distinct env value per run so each run really creates a profile
            create_profile(store, profile_spec(ids, {"RUN": str(next(spec_n))}, None))

        prof, _ = best_of(args.repeat, fresh, whole)
        links_cp, links_farm = count_links(cp_dest), count_links(farm_dest)
        print(f"cp -rs            {cp:7.3f}s  ({links_cp} links)")
        print(f"farm              {farm:7.3f}s  ({links_farm} links)  ratio {farm / cp:.2f}")
        print(f"farm, no folding  {nofold:7.3f}s  ratio {nofold / cp:.2f}")
        print(f"create_profile    {prof:7.3f}s  ratio {prof / cp:.2f}")
        goal = "met" if prof / cp <= 1.5 else "MISSED"
        print(f"goal (create_profile <= 1.5 x cp -rs): {goal}")
        sys.stdout.flush()
    finally:
        remove_tree(work)


if __name__ == "__main__":
    main()

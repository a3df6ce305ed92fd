"""A/B of `hdenv reproduce HASH --from HTTP`: variants of the real command in turns.

For trying a change to the pull on this VM, whose disk has slow phases lasting a
minute or two (docs/DEVELOPING.md, "Caches at scale"): one run of each variant, then
the baseline of bench_cache.py (a GET and `zstd -d | tar -x` of each archive, as many
in flight), round after round (the variants' order reversed every other round), each
after an `os.sync()`, so that every phase is shared by all. A variant is a set of
environment variables for the command (a switch a change under test reads), or
another hdenv program:

    .venv/bin/python benchmarks/ab_reproduce.py "" "MY_SWITCH=1" [--rounds 6]
    .venv/bin/python benchmarks/ab_reproduce.py "" "HDENV_PROGRAM=/tmp/old/.venv/bin/hdenv"

Every round's stores and trees are kept until the end: this VM's ext4 has no journal,
and such a file system will not reuse an inode freed in the last 60 s (300 s while its
table block is unwritten); each one it skips costs a lookup, so a round made right after
the last one was removed paid for its removal, the more the more inodes it makes (the
store makes about twice those of `tar -x`). `--settle 330` waits that long after the
set-up, before the first round: a figure free of whatever was removed before it ran.

Prints each variant's median, best and every round, and the baseline's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_cache import (  # noqa: E402
    JOBS,
    archive_shas,
    get_and_untar,
    make_profile,
    run_reproduce,
)
from program import HDENV, warn_if_editable  # noqa: E402
from servers import http_server  # noqa: E402

from hdenv.exchange.backends import open_cache  # noqa: E402
from hdenv.exchange.push import push  # noqa: E402
from hdenv.exchange.signing import SecretKey  # noqa: E402
from hdenv.store.layout import Store  # noqa: E402


def variant(text: str) -> dict[str, str]:
    """`A=1,B=2` as a dict; HDENV_PROGRAM names the program instead of an environment."""
    return dict(kv.split("=", 1) for kv in text.split(",") if kv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help='e.g. "" "MY_SWITCH=1"')
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--artifacts", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--settle", type=float, default=0, metavar="SECONDS",
                        help="wait this long after setting up, before the first round")
    args = parser.parse_args()
    warn_if_editable()
    variants = [variant(v) for v in args.variants]
    programs = [v.pop("HDENV_PROGRAM", HDENV) for v in variants]
    JOBS["n"] = args.jobs  # the command's -j and the baseline's transfers in flight
    times: dict[str, list[float]] = {v: [] for v in [*args.variants, "baseline"]}
    with tempfile.TemporaryDirectory(prefix="hdenv-ab-") as tmp_name:
        tmp = Path(tmp_name)
        store = Store(tmp / "store-a-with-a-longer-root").ensure()
        phash, ids = make_profile(store, 50, args.artifacts)
        key = SecretKey.generate("bench")
        served = open_cache(str(tmp / "served"))
        push(store, [phash], served, key, lambda _m: None, jobs=args.jobs)
        config = tmp / "config.toml"
        config.write_text(f"trusted-keys = [{str(key.public())!r}]\n")
        time.sleep(args.settle)
        with http_server(tmp, tmp / "http.log") as http:
            archives = [f"{http}served/archives/{sha}.tar.zst"
                        for sha in archive_shas(served, ids)]
            for r in range(args.rounds):
                turns = list(enumerate(zip(args.variants, variants, programs)))
                for i, (label, env, program) in turns if r % 2 == 0 else turns[::-1]:
                    dest = tmp / f"rs{r}-{i}"  # every store kept until the end: see --settle
                    os.sync()
                    t = time.perf_counter()
                    run_reproduce(program, dest, phash, f"{http}served/",
                                  {**os.environ, "HDENV_CONFIG": str(config), **env})
                    times[label].append(time.perf_counter() - t)
                os.sync()
                t = time.perf_counter()
                get_and_untar(archives, tmp / f"get{r}")
                times["baseline"].append(time.perf_counter() - t)
    for label, got in times.items():
        print(f"{label or '(as is)':40} median {statistics.median(got):6.3f} s  best"
              f" {min(got):6.3f}  rounds " + " ".join(f"{x:.2f}" for x in got))


if __name__ == "__main__":
    main()

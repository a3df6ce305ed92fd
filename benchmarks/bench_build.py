#!/usr/bin/env python3
"""Build benchmarks (issue 2): no-op builds and parallel scheduling.

    python benchmarks/bench_build.py [--sizes 100,250,500] [--parallel 4]

1. No-op `hdenv build` of generated stacks whose artifacts all exist, at each
   size: wall time of the whole command (Python start-up included), per-package
   cost, and the growth ratio against linear. Goal: 500 packages well under 1 s.
   Then the same at `--big` packages (default 5,000; issue 25: under 1 s and
   300 MB), with the command's peak memory: its store is filled through the
   library (the planned specs installed as empty artifacts, host software
   captured), since building 5,000 packages one by one takes over 20 minutes
   and a no-op build only asks whether each artifact is there. The no-op
   builds read the stack as kept parsed (build/stackcache.py); the first read
   of it (as after an edit: parsed and kept) is printed beside them.
2. `-j 2` against `-j 1` on independent CPU-bound packages (same run, fresh
   stores with posix-tools captured first). Printed whole, and net of the fixed
   part every run pays (the no-op build of the same stack, measured in the same
   run): the net ratio is the scheduling's (0.50 on two idle cores; the issue's
   goal 0.52), beside the same work run two at a time without hdenv (`xargs -P 2`).
   Goal: within 4% of ideal, the ideal being the fixed part and then the rest of
   the time the cores were busy during the -j 2 build, on two cores kept busy
   while a package waits (the last package's lone tail, which each package's
   own timestamps show, runs on one).
   `--repeat` rounds of one build each (in fresh stores, the order turned every
   other round); the ratio is the median of the rounds' ratios: one build of
   4 x ~1 s moves by +-3% from run to run on an idle machine, and this VM's CPU
   speed by half over an hour, so two bests may come from different hours.
"""

from __future__ import annotations

import argparse
import os
import posix
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from program import HDENV, warn_if_editable

from hdenv.build.plan import plan_stack
from hdenv.build.scheduler import capture_host
from hdenv.build.stackfile import load_stack
from hdenv.config import load_settings
from hdenv.recipes.repos import site_refs
from hdenv.store.artifacts import install_artifact
from hdenv.store.layout import Store
from hdenv.store.sources import SourceStore


def chain_stack(n: int) -> str:
    """n packages in layers of 10: each depends on one package of the layer below."""
    parts = ["[stack]\nname = \"bench\"\n\n[parameters]\nflags = \"-O2\"\n"]
    for i in range(n):
        deps = f'deps = ["p{i - 10}"]\n' if i >= 10 else ""
        parts.append(
            f"[packages.p{i}]\nversion = \"1.0\"\n{deps}"
            f"env = {{ FLAGS = \"{{{{ flags }}}}\" }}\n"
            f"script = 'mkdir -p \"$PREFIX/share\" && echo {i} > \"$PREFIX/share/p{i}\"'\n"
        )
    return "\n".join(parts)


BUSY = "awk 'BEGIN { s = 0; for (i = 0; i < 25000000; i++) s += i; print s }' > /dev/null"
"""One CPU-bound package's work, about a second of one core."""


def busy_stack(n: int) -> str:
    """n independent packages doing BUSY, each recording when its work began and ended
    (`date` of the captured posix-tools) in its artifact's `workN` file."""
    parts = []
    for i in range(n):
        parts.append(
            f"[packages.busy{i}]\nversion = \"1\"\n"
            f"script = '''\nbegan=$(date +%s.%N)\n{BUSY}\nended=$(date +%s.%N)\n"
            f"mkdir -p \"$PREFIX\" && echo \"$began $ended\" > \"$PREFIX/work{i}\"\n'''\n"
        )
    return "\n".join(parts)


def lone_tail(store: Path) -> float:
    """Seconds the last package's work ran alone, after the one before it ended (read from
    `workN` files busy_stack's packages leave): no package was waiting then, so the
    other core had nothing to do."""
    ends = sorted(float(f.read_text().split()[1])
                  for f in store.glob("artifacts/busy*/1/*/work*"))
    return ends[-1] - ends[-2] if len(ends) > 1 else 0.0


def plain(packages: int, jobs: int) -> float:
    """The packages' work alone, `jobs` at a time (as `xargs -P`): what this machine's
    cores give at that moment, printed beside hdenv's ratio."""
    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda _: subprocess.run(["sh", "-c", BUSY], check=True),
                      range(packages)))
    return time.perf_counter() - started


def fill(stack_path: Path, env: dict[str, str]) -> int:
    """Make every artifact the stack plans present in env's store, without building: each
    spec installed as an empty artifact (the id is the spec's hash, whatever the files),
    host software captured as a build would. Returns how many were made."""
    saved = dict(os.environ)
    saved_posix = dict(posix.environ)  # what xdg.py reads: the stack's kept parse goes there
    os.environ.update(env)
    posix.environ.update({os.fsencode(k): os.fsencode(v) for k, v in env.items()})
    try:
        settings = load_settings()
        store = Store(settings.store).ensure()
        stack = load_stack(stack_path, None, settings.host_files, site_refs(settings))
        plan = plan_stack(stack, store, SourceStore(store, settings.mirrors),
                          host_identity=settings.host_identity)
        made = 0
        for nid in plan.order():
            node = plan.nodes[nid]
            if store.has_artifact(nid):
                continue
            if node.kind == "host":
                capture_host(store, node)
            else:
                install_artifact(store, node.spec, lambda _prefix, _fd, _pfd: None,
                                 runtime_deps=node.deps)
            made += 1
        return made
    finally:
        os.environ.clear()
        os.environ.update(saved)
        posix.environ.clear()
        posix.environ.update(saved_posix)


class Run(NamedTuple):
    wall: float  # seconds
    cpu: float  # seconds the machine's cores were busy meanwhile (/proc/stat)
    peak_mb: float  # the largest resident size of one of hdenv's processes


def busy_seconds() -> float:
    """Time all cores have spent busy since boot: the jailed builds' processes are
    reaped inside their PID namespace, so hdenv's own rusage does not count them."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measured(args: list[str], env: dict[str, str]) -> Run:
    """One hdenv run, with the cores' busy time and the largest process (wait4)."""
    busy = busy_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen([HDENV, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    cpu = busy_seconds() - busy
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"hdenv {' '.join(args)} failed ({proc.returncode})")
    return Run(took, cpu, usage.ru_maxrss / 1024)


def run(args: list[str], env: dict[str, str]) -> float:
    return measured(args, env).wall


def best(args: list[str], env: dict[str, str], repeat: int = 5) -> float:
    return min(run(args, env) for _ in range(repeat))


def listed(ratios: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in ratios)


def main() -> None:
    warn_if_editable()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,250,500")
    parser.add_argument("--parallel", type=int, default=4, help="independent packages for -j")
    parser.add_argument("--repeat", type=int, default=5,
                        help="rounds of a timed -j 1 and -j 2 build each")
    parser.add_argument("--big", type=int, default=5000,
                        help="packages of the big no-op case, its store filled without"
                             " building (0: skip)")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hdenv-bench-build-"))
    env = {**os.environ, "HDENV_STORE": str(work / "store"),
           "HDENV_CONFIG": str(work / "none.toml")}
    (work / "none.toml").write_text("")
    try:
        print("no-op build (all artifacts present), best of 5:")
        results = []
        for n in [int(s) for s in opts.sizes.split(",")]:
            stack = work / f"stack{n}.toml"
            stack.write_text(chain_stack(n))
            t_first = run(["build", str(stack), "-j", "2"], env)
            t = best(["build", str(stack)], env)
            results.append((n, t))
            print(f"  {n:4d} packages: first build {t_first:6.1f} s, no-op {t * 1000:7.1f} ms"
                  f"  ({t / n * 1000:.2f} ms/package)")
        (n0, t0), (n1, t1) = results[0], results[-1]
        print(f"  growth {n0}->{n1}: time x{t1 / t0:.2f} for packages x{n1 / n0:.2f}"
              f" (linear would be <= x{n1 / n0:.2f}; goal: {n1} packages < 1000 ms:"
              f" {'OK' if t1 < 1.0 else 'MISSED'})")

        if opts.big:
            big = work / f"stack{opts.big}.toml"
            big.write_text(chain_stack(opts.big))
            parsed = work / "cache"  # the user's cache: where build/stackcache.py keeps it
            benv = {**env, "HDENV_STORE": str(work / "store-big"),
                    "XDG_CACHE_HOME": str(parsed)}
            started = time.perf_counter()
            made = fill(big, benv)
            filled = time.perf_counter() - started
            first = []  # the stack read for the first time (as after an edit): parsed, kept
            for _ in range(3):
                shutil.rmtree(parsed, ignore_errors=True)
                first.append(measured(["build", str(big)], benv))
            runs = [measured(["build", str(big)], benv) for _ in range(5)]
            t, mb = min(r.wall for r in runs), max(r.peak_mb for r in runs + first)
            print(f"  {opts.big:4d} packages: store filled without building ({made} artifacts,"
                  f" {filled:.0f} s), no-op {t * 1000:7.1f} ms, peak memory {mb:.0f} MB"
                  f" (goal < 1000 ms and < 300 MB:"
                  f" {'OK' if t < 1.0 and mb < 300 else 'MISSED'});"
                  f" the stack's first read {min(r.wall for r in first) * 1000:.1f} ms")

        print(f"\nparallel scheduling, {opts.parallel} independent CPU-bound packages:")
        rounds: list[dict[int, Run]] = []  # hdenv's builds by -j, a dict a round
        tails: list[float] = []  # each round's -j 2 build: how long its last package ran alone
        plain_rounds: list[dict[int, float]] = []  # the same work without hdenv
        warm = work / "warm.toml"  # captures posix-tools: the same for -j 1 and -j 2
        warm.write_text("[packages.warm]\nversion = \"1\"\nscript = 'mkdir -p \"$PREFIX\"'\n")
        stack = work / "busy.toml"
        stack.write_text(busy_stack(opts.parallel))
        for attempt in range(opts.repeat):  # one of each a round, hdenv's in fresh stores
            took: dict[int, Run] = {}
            took_plain: dict[int, float] = {}
            # the order turned every other round: a machine getting faster or slower
            # through a round favours neither side
            for jobs in ((1, 2) if attempt % 2 == 0 else (2, 1)):
                jenv = {**env, "HDENV_STORE": str(work / f"store-j{jobs}-{attempt}")}
                run(["build", str(warm)], jenv)  # so the timed build is the builds, not set-up
                took[jobs] = measured(["build", str(stack), "-j", str(jobs)], jenv)
                took_plain[jobs] = plain(opts.parallel, jobs)
            rounds.append(took)
            plain_rounds.append(took_plain)
            tails.append(lone_tail(work / f"store-j2-{attempt}"))
        for what, walls in (("hdenv", [{j: r.wall for j, r in t.items()} for t in rounds]),
                            ("plain", plain_rounds)):
            for jobs in (1, 2):
                times = [w[jobs] for w in walls]
                print(f"  {what} -j {jobs}: median {statistics.median(times):.2f} s,"
                      f" best {min(times):.2f} s ({opts.repeat} rounds)")
        # what every run pays whatever -j is (start-up, planning, the profile): the no-op
        # build of the same stack; the rest is the builds, which -j 2 should halve
        noop = [measured(["build", str(stack)],
                         {**env, "HDENV_STORE": str(work / "store-j1-0")}) for _ in range(3)]
        fixed = min(r.wall for r in noop)
        fixed_cpu = min(r.cpu for r in noop)
        whole = statistics.median(r[2].wall / r[1].wall for r in rounds)
        nets = [(r[2].wall - fixed) / (r[1].wall - fixed) for r in rounds]
        machine = [p[2] / p[1] for p in plain_rounds]
        # The ideal -j 2 build does the fixed part, then all the rest of the work the
        # cores did for it (busy time, as they did it: on this VM two busy cores give
        # 0.48 to 0.69 of the serial time two at a time from one minute to the next,
        # and a contended core's second does less) with both cores busy while a package
        # waits: once the last one has started, one core may finish first with nothing
        # left to do (the same loop took 0.77 to 1.30 s here, two at a time), so during
        # the last package's lone tail t only one core works: 2 (T - t) + t = W, the
        # ideal T = (W + t) / 2. Wall over that is time a core sat idle while a package
        # was ready (or ran something else: run it on an idle machine).
        held = [r[2].wall / (fixed + (r[2].cpu - fixed_cpu + tail) / 2)
                for r, tail in zip(rounds, tails)]
        alone = [r[2].wall / (fixed + (r[2].cpu - fixed_cpu) / 2) for r in rounds]
        print(f"  ratio -j 2 / -j 1: {whole:.2f}, median of the rounds (both include a fixed"
              f" {fixed:.2f} s: start-up, planning, profile)")
        net = statistics.median(nets)
        print(f"  ratio net of the fixed part: {net:.2f}, median of the rounds"
              f" ({listed(nets)}; 0.50 on 2 idle cores; the issue's"
              f" goal <= 0.52: {'OK' if net <= 0.52 else 'MISSED'})")
        print(f"  the same work two at a time without hdenv (xargs -P 2):"
              f" {statistics.median(machine):.2f} ({listed(machine)})")
        print(f"  the last package's lone tail: {listed(tails)} s; against the ideal without"
              f" it (both cores busy to the end): {statistics.median(alone):.2f}"
              f" ({listed(alone)})")
        ratio = statistics.median(held)
        print(f"  -j 2 against its ideal (the fixed part, then the rest of the cores' busy"
              f" time on two cores busy while a package waits): {ratio:.2f}, median of the"
              f" rounds ({listed(held)}; goal <= 1.04, within 4% of ideal:"
              f" {'OK' if ratio <= 1.04 else 'MISSED'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

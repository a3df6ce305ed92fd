"""Build a plan's missing artifacts as Slurm batch jobs: EasyBuild's `--job` on hdenv's DAG.

One job per missing package, each submitted held with `afterok` edges to the
jobs of its missing inputs, and all released together once the whole graph is
in: Slurm never starts a job whose dependency it has not seen yet, and a
failed submission halfway leaves nothing running. Each job runs
`hdenv build-node ID` on its compute node, which builds exactly that stored
spec into the shared store under the store's per-artifact lock, so a package
another run is building is built once.

Host software is captured and sources are fetched here, before anything is
submitted: compute nodes need no network, and a missing source fails in
seconds, not in a job hours later. Profiles and `NAME HASH` lines are made by
the caller once this returns, exactly as after a local build.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from ..build import processes
from ..build.builder import fetch_sources, tail
from ..build.plan import Plan
from ..build.progress import Progress, labels
from ..build.scheduler import BuildReport, Pending, capture_host, pending
from ..build.stackfile import Stack
from ..errors import BuildError, HdenvError, Interrupted, UserError
from ..store.fsutil import read_json
from ..store.layout import Store
from ..store.sources import SourceStore
from .slurm import JobState, Slurm, check_options, check_time

POLL_MIN = 0.5  # seconds between squeue calls right after something changed
CANCEL_WAIT = 60.0  # how long Ctrl-C waits for cancelled jobs to leave squeue
# why a job waits, in the normal course of things: not worth a line each
ROUTINE_REASONS = frozenset({"", "None", "Dependency", "Priority", "Resources", "JobHeldUser"})


@dataclass
class JobRequest:
    """What one package's job asks Slurm for; the same for --dry-run and a real run."""

    nid: str
    cpus: int  # --cpus-per-task, and the build's HDENV_JOBS
    options: list[str]  # slurm-options, then the package's time/mem/options
    after: list[str]  # node ids whose jobs must succeed first (afterok)


def job_requests(plan: Plan, graph: Pending, site_options: Sequence[str],
                 build_jobs: int | None, dropped: Collection[str] = ()) -> list[JobRequest]:
    """One request per missing build, dependencies first.

    A package's cores are its `slurm.cpus`, else the build-jobs setting, else 1
    (what sbatch gives by default): the build is told exactly what it was
    allocated, never the node's whole core count.
    """
    requests = []
    for nid in graph.order:
        node = plan.nodes[nid]
        if node.kind != "build" or nid in dropped:
            continue
        res = node.slurm
        options = list(site_options)
        options += [f"--{key}={res[key]}" for key in ("time", "mem") if key in res]
        options += list(res.get("options", []))
        after = sorted(d for d in graph.waiting_on[nid] if plan.nodes[d].kind == "build")
        requests.append(JobRequest(nid, int(res.get("cpus") or build_jobs or 1), options, after))
    return requests


class SlurmExecutor:
    """`hdenv build --executor slurm`: see the module docstring."""

    def __init__(self, options: Sequence[str] = (), *, build_jobs: int | None = None,
                 slurm: Slurm | None = None, command: Sequence[str] | None = None,
                 poll: float = 5.0, options_file: str | None = None,
                 strict_links: bool = True):
        problem = check_options(options, "slurm-options")
        if problem:
            raise UserError(problem, file=options_file)
        self.options = list(options)
        self.strict_links = strict_links  # the jobs follow this side's setting
        self.build_jobs = build_jobs
        self.slurm = slurm or Slurm()
        # hdenv on the compute node: this interpreter, at the same path there
        self.command = list(command) if command else [sys.executable, "-m", "hdenv"]
        self.poll = max(POLL_MIN, poll)

    def check(self, stack: Stack) -> None:
        for variant in stack.variants:
            for pkg in variant.packages.values():
                res = pkg.slurm
                where = f"packages.{pkg.name}.slurm"
                problem = check_options(res.get("options", []), f"{where}.options")
                if problem is None and "time" in res and not check_time(res["time"]):
                    problem = (f"{where}.time: {res['time']!r} is not a Slurm time"
                               " (MINUTES, H:M:S, D-H or D-H:M:S)")
                if problem:
                    raise UserError(problem, file=str(stack.path), line=pkg.line)

    def describe(self, plan: Plan, store: Store) -> list[str]:
        requests = job_requests(plan, pending(plan, store), self.options, self.build_jobs)
        if not requests:
            return []
        number = {r.nid: i for i, r in enumerate(requests, start=1)}
        lines = [f"would submit {len(requests)} Slurm job(s), held until all are submitted,"
                 " then released:"]
        for r in requests:
            line = f"  job {number[r.nid]}: {r.nid} --cpus-per-task={r.cpus}"
            if r.options:
                line += " " + " ".join(shlex.quote(o) for o in r.options)
            if r.after:
                line += "  afterok: " + ", ".join(f"job {number[d]} ({d.split('/')[0]})"
                                                 for d in r.after)
            lines.append(line)
        return lines

    def run(self, plan: Plan, store: Store, sources: SourceStore, *, jobs: int,
            build_jobs: int | None, keep_going: bool, stream: TextIO = sys.stderr,
            progress: Progress | None = None) -> BuildReport:
        report = BuildReport()
        graph = pending(plan, store)
        report.present = list(graph.present)
        if not graph.order:
            return report  # everything present: nothing is submitted
        self.slurm.require()
        progress = progress or Progress(stream=stream)
        progress.begin(len(graph.order),
                       labels((n, node.variant) for n, node in plan.nodes.items()))
        run = _Run(self, plan, store, graph, report, progress, keep_going)
        try:
            run.prepare(sources)
            run.submit(build_jobs if build_jobs is not None else self.build_jobs)
            run.watch()
        except BaseException:
            run.cancel_all()
            raise
        finally:
            progress.close()
        accounted = {*report.built, *report.captured, *report.present, *report.failed,
                     *report.skipped}
        report.skipped += [nid for nid in graph.order if nid not in accounted]
        return report


class _Run:
    """The state of one submission: which node has which job, what is still open."""

    def __init__(self, executor: SlurmExecutor, plan: Plan, store: Store, graph: Pending,
                 report: BuildReport, progress: Progress, keep_going: bool):
        self.ex = executor
        self.slurm = executor.slurm
        self.plan = plan
        self.store = store
        self.graph = graph
        self.report = report
        self.progress = progress
        self.keep_going = keep_going
        self.job_of: dict[str, str] = {}  # node id -> job id
        self.node_of: dict[str, str] = {}  # job id -> node id
        self.open: set[str] = set()  # job ids not finished (nor cancelled by us)
        self.running: set[str] = set()
        self.reason: dict[str, str] = {}  # job id -> the unusual pending reason last said
        self.dropped: set[str] = set()  # failed or skipped nodes
        self.run_dir: Path | None = None

    # -- messages and bookkeeping ------------------------------------------
    def say(self, message: str) -> None:
        self.progress.say(message)

    def fail(self, nid: str, message: str) -> None:
        """`nid` failed: report it, cancel what needs it, and stop unless --keep-going."""
        self.report.failed[nid] = message
        self.dropped.add(nid)
        self.progress.fail(nid, message)  # says `FAILED ID: message`
        self.drop(self.graph.downstream(nid), f"needs {nid}, which failed")
        if not self.keep_going:
            waiting = [n for n in self.graph.order if n not in self.dropped
                       and self.job_of.get(n) not in self.running
                       and n not in self.report.built and n not in self.report.captured
                       and n not in self.report.present]
            self.drop(waiting, "stopping after a failure (--keep-going builds the rest)")

    def drop(self, nids: list[str], why: str) -> None:
        """Skip nodes; cancel the ones that have a job."""
        nids = [n for n in nids if n not in self.dropped]
        cancel = [self.job_of[n] for n in nids if self.job_of.get(n) in self.open]
        self.slurm.cancel(cancel)
        for nid in nids:
            self.dropped.add(nid)
            self.report.skipped.append(nid)
            job = self.job_of.get(nid)
            if job in self.open:
                self.open.discard(job)
                self.say(f"cancelled job {job} ({nid}): {why}")

    # -- phases ------------------------------------------------------------
    def prepare(self, sources: SourceStore) -> None:
        """Capture host software and fetch every source here, before any job exists."""
        for nid in self.graph.order:
            node = self.plan.nodes[nid]
            if nid in self.dropped:
                continue
            try:
                if node.kind == "host":
                    self.progress.start(nid, "capturing host software")
                    capture_host(self.store, node)
                    self.progress.finish(nid, "captured")
                    self.report.captured.append(nid)
                else:
                    fetch_sources(node, sources)
                    # the job finds its spec by hash in the shared store
                    self.store.write_spec(nid.rsplit("/", 1)[1], node.spec)
            except HdenvError as e:
                self.fail(nid, e.render())

    def submit(self, build_jobs: int | None) -> None:
        requests = job_requests(self.plan, self.graph, self.ex.options, build_jobs,
                                self.dropped)
        if not requests:
            return
        logs = self.store.root / "logs" / "slurm"
        logs.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{stamp}-{socket.gethostname()}-",
                                             dir=logs))
        with _signals_deferred() as interrupted:
            for r in requests:
                try:
                    job = self.slurm.submit(str(self.write_script(r)), self.sbatch_options(r))
                except BuildError as e:
                    raise BuildError(f"{r.nid}: {e.message}") from None
                self.job_of[r.nid] = job
                self.node_of[job] = r.nid
                self.open.add(job)
                after = ", ".join(self.job_of[d] for d in r.after)
                self.say(f"submitted job {job} for {r.nid}" + (f" (after {after})" if after
                                                               else ""))
                if interrupted.is_set():
                    break  # the signal is raised on leaving the block; all ids are known
            if not interrupted.is_set():
                try:
                    self.slurm.release(self.open)
                except BuildError as e:  # e.g. a job no partition can ever run
                    raise BuildError(self.name_jobs(e.message)) from None
        self.say(f"released {len(requests)} job(s); logs in {self.run_dir}")

    def name_jobs(self, text: str) -> str:
        """Slurm's `job 12` in a message, as `job 12 (NAME/VERSION/HASH)`."""
        return re.sub(r"\bjob (\d+)\b", lambda m: f"job {m[1]} ({self.node_of[m[1]]})"
                      if m[1] in self.node_of else m[0], text)

    def write_script(self, r: JobRequest) -> Path:
        assert self.run_dir is not None
        script = self.run_dir / f"{self.stem(r.nid)}.sh"
        command = [*self.ex.command, "--store", str(self.store.root), "build-node", r.nid,
                   "--jobs", str(r.cpus), "--result", str(self.result_path(r.nid)),
                   "--strict-links" if self.ex.strict_links else "--no-strict-links"]
        for upstream in self.store.upstreams:  # what the plan found present upstream
            command += ["--upstream", str(upstream.root)]
        script.write_text(
            "#!/bin/sh\n"
            f"# hdenv: build {r.nid} (submitted by `hdenv build` on {socket.gethostname()})\n"
            f"exec {shlex.join(command)}\n", encoding="utf-8")
        return script

    def sbatch_options(self, r: JobRequest) -> list[str]:
        assert self.run_dir is not None
        options = ["--hold", f"--job-name=hdenv-{r.nid.split('/')[0]}",
                   f"--output={self.run_dir / self.stem(r.nid)}-%j.out",
                   f"--chdir={self.run_dir}", f"--cpus-per-task={r.cpus}",
                   "--kill-on-invalid-dep=yes"]
        if r.after:
            options.append("--dependency=afterok:" + ":".join(self.job_of[d] for d in r.after))
        return options + r.options

    @staticmethod
    def stem(nid: str) -> str:
        name, version, hash_ = nid.split("/")
        return f"{name}-{version}-{hash_[:12]}"

    def result_path(self, nid: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / f"{nid.rsplit('/', 1)[1]}.result.json"

    def output_path(self, job: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / f"{self.stem(self.node_of[job])}-{job}.out"

    # -- watching ----------------------------------------------------------
    def watch(self) -> None:
        interval = POLL_MIN
        while self.open:
            time.sleep(interval)
            states = self.slurm.states(self.open)
            changed = False
            for job in sorted(self.open, key=int):
                if job in self.open:  # a failure this round may have cancelled it
                    changed |= self.update(job, states.get(job))
            interval = POLL_MIN if changed else min(self.ex.poll, interval * 1.5)

    def update(self, job: str, state: JobState | None) -> bool:
        """Act on one job's state; True if it changed."""
        nid = self.node_of[job]
        if state is not None and state.waiting:
            if state.reason not in ROUTINE_REASONS and self.reason.get(job) != state.reason:
                self.reason[job] = state.reason  # e.g. a partition down, a QOS limit
                self.say(f"job {job} ({nid}) pending: {state.reason}")
            return False
        if state is not None and not state.finished:
            if job not in self.running:
                self.running.add(job)
                self.progress.start(nid, f"job {job} on {state.nodes}: building")
                return True
            return False
        self.open.discard(job)
        self.running.discard(job)
        result = self.result(nid)
        if (state is None or state.ok) and self.store.has_artifact(nid):
            built = bool(result.get("built", True))
            if nid not in self.progress.running:
                self.progress.start(nid, f"job {job}: building")
            self.progress.finish(nid, f"job {job}: built" if built else "present")
            if not built:
                self.say(f"job {job}: {nid} was built by another run meanwhile")
            (self.report.built if built else self.report.present).append(nid)
            return True
        what = "left the queue" if state is None else state.state.lower()
        if state is not None and state.reason not in ("", "None"):
            what += f" ({state.reason})"
        if result.get("error"):
            message = f"job {job} {what}: {result['error']}"
        else:
            out = self.output_path(job)
            message = (f"job {job} {what}; job output: {out}\n"
                       f"--- last lines of the job output ---\n{tail(out)}")
        self.fail(nid, message)
        return True

    def result(self, nid: str) -> dict[str, Any]:
        try:
            data = read_json(self.result_path(nid))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def cancel_all(self) -> None:
        """Ctrl-C (or an error): cancel exactly the jobs this run submitted and still has."""
        jobs = sorted(self.open, key=int)
        if not jobs:
            return
        with _signals_ignored(), contextlib.suppress(HdenvError):
            self._cancel(jobs)

    def _cancel(self, jobs: list[str]) -> None:
        with contextlib.suppress(HdenvError):
            self.slurm.cancel(jobs)
        self.say(f"cancelled {len(jobs)} Slurm job(s) of this run: {', '.join(jobs)}")
        deadline = time.monotonic() + CANCEL_WAIT
        left = jobs
        with contextlib.suppress(HdenvError):
            while left and time.monotonic() < deadline:
                left = sorted(self.slurm.states(left, all_states=False), key=int)
                if left:
                    time.sleep(POLL_MIN)
        if left:
            self.say(f"still in squeue after {CANCEL_WAIT:.0f} s: {', '.join(left)}")
        self.open.clear()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[threading.Event]:
    """Hold Ctrl-C (and SIGTERM, SIGHUP) while sbatch runs: an interrupted sbatch may
    have submitted a job whose id we never read, and a held job nobody knows of stays
    forever. The signal is raised as `Interrupted` once the id is recorded."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        interrupted.set()

    previous = {s: signal.signal(s, note) for s in processes.HANDLED}
    try:
        yield interrupted
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise Interrupted(received[0])


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C must not stop the cancelling halfway; the wait is bounded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in processes.HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

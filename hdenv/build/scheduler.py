"""Build a plan's DAG: `-j N` independent nodes at once, dependencies first.

Threads are enough: every build is a subprocess, so Python only waits. The
cross-process guarantee (each artifact built once even with several hdenv runs)
comes from the per-artifact lock in `install_artifact`, not from here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TextIO

from ..config import usable_cores
from ..errors import HdenvError, Interrupted
from ..store.layout import Store
from ..store.sources import SourceStore
from . import host, processes
from .builder import BuildOptions, build_node
from .plan import Node, Plan
from .progress import Progress, labels


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    captured: list[str] = field(default_factory=list)  # host software, new in this store
    present: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)  # installed from a binary cache
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


@dataclass
class Pending:
    """What a run has to make, and in which order: shared by every executor.

    `order` lists the missing nodes dependencies first; `waiting_on[n]` the
    missing nodes `n` needs; `dependents[n]` the missing nodes that need `n`.
    """

    order: list[str]
    present: list[str]
    waiting_on: dict[str, set[str]]
    dependents: dict[str, list[str]]

    def downstream(self, nid: str) -> list[str]:
        """Every missing node that needs `nid`, directly or not, in build order."""
        found: set[str] = set()
        stack = list(self.dependents[nid])
        while stack:
            dep = stack.pop()
            if dep not in found:
                found.add(dep)
                stack.extend(self.dependents[dep])
        return [n for n in self.order if n in found]


def pending(plan: Plan, store: Store, absent: Collection[str] | None = None) -> Pending:
    """The nodes of `plan` that are not present in `store`, with their edges.

    `absent`: the nodes a check made just before found missing (the others present),
    not looked for again; a no-op build of 5,000 packages looked for each twice, and
    ordered them only to find nothing to do.
    """
    if absent is not None and not absent:
        return Pending([], list(plan.nodes), {}, {})
    order = plan.order()
    if absent is None:
        todo = [nid for nid in order if not store.has_artifact(nid)]
    else:
        todo = [nid for nid in order if nid in absent]
    missing = set(todo)
    waiting_on = {nid: {d for d in plan.nodes[nid].inputs if d in missing} for nid in todo}
    dependents: dict[str, list[str]] = {nid: [] for nid in todo}
    for nid, deps in waiting_on.items():
        for d in deps:
            dependents[d].append(nid)
    return Pending(todo, [nid for nid in order if nid not in missing], waiting_on, dependents)


def capture_host(store: Store, node: Node) -> None:
    """Capture host software on this machine; it must still be what was planned."""
    assert node.host is not None
    search = host.SYSTEM_PATH if node.spec["name"] == host.BASIC_TOOLS_NAME else None
    got = host.capture_request(store, node.host, search_path=search)
    if got != node.id:
        raise HdenvError(f"host software {node.spec['name']} changed while planning"
                         f" ({node.id} became {got}); run the build again")


def _realise(store: Store, node: Node, sources: SourceStore, jobs: int,
             progress: Progress, options: BuildOptions) -> str:
    """Make `node` present: "built", "captured" (host software) or "present" (by another run)."""
    if node.kind == "host":
        capture_host(store, node)
        return "captured"
    if options.substitute is not None and options.substitute(node.id, progress.say,
                                                              progress.meter):
        return "fetched"
    _, built = build_node(store, node, sources, jobs=jobs,
                          on_wait=lambda: progress.waiting(node.id),
                          options=replace(options, note=progress.say),
                          on_log=lambda path: progress.log_at(node.id, path))
    return "built" if built else "present"


@contextlib.contextmanager
def _stop_builds_on_signal(running: dict[Future[str], str]) -> Iterator[None]:
    """On a signal, stop every build's process group before the pool waits for its threads."""
    try:
        yield
    except Interrupted as e:
        stopped = processes.stop_all(e.signum)
        wait(running)  # each builder removes its half-written artifact
        e.detail = (f"stopped {stopped} running build(s) and removed what they had written"
                    if stopped else "")
        raise


def run_plan(plan: Plan, store: Store, sources: SourceStore, *, jobs: int,
             build_jobs: int | None = None, keep_going: bool = False,
             stream: TextIO = sys.stderr, options: BuildOptions | None = None,
             progress: Progress | None = None,
             absent: Collection[str] | None = None) -> BuildReport:
    """Build what is missing (`absent`, if a check just found it), `jobs` packages at once.

    Each build's HDENV_JOBS is `build_jobs` if given, else the usable cores
    divided among the builds running alongside it: a lone build in a chain
    gets every core, `-j 2` on two cores gives two `make -j1`, not four processes.
    """
    report = BuildReport()
    graph = pending(plan, store, absent)
    todo, waiting_on, dependents = graph.order, graph.waiting_on, graph.dependents
    report.present = list(graph.present)
    if not todo:
        return report
    ready = [nid for nid in todo if not waiting_on[nid]]
    progress = progress or Progress(stream=stream)
    progress.begin(len(todo), labels((nid, node.variant) for nid, node in plan.nodes.items()))
    cores = usable_cores()
    stopping = False
    running: dict[Future[str], str] = {}

    def skip_dependents(nid: str) -> None:
        # an explicit stack: a chain of dependents may be thousands deep
        stack = list(reversed(dependents[nid]))
        while stack:
            dep = stack.pop()
            if dep not in report.skipped:
                report.skipped.append(dep)
                stack.extend(reversed(dependents[dep]))

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool, _stop_builds_on_signal(running):
            while ready or running:
                starting = min(len(ready), jobs - len(running))
                share = build_jobs or max(1, cores // max(1, len(running) + starting))
                while ready and len(running) < jobs and not stopping:
                    nid = ready.pop(0)
                    if nid in report.skipped:
                        continue
                    host_node = plan.nodes[nid].kind == "host"
                    progress.start(nid, "capturing host software" if host_node else
                                   "looking in caches for" if options and options.substitute
                                   else "building")
                    fut = pool.submit(_realise, store, plan.nodes[nid], sources, share,
                                      progress, options or BuildOptions())
                    running[fut] = nid
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    nid = running.pop(fut)
                    try:
                        outcome = fut.result()
                    except HdenvError as e:
                        report.failed[nid] = e.render()
                        progress.fail(nid, e.render())
                        skip_dependents(nid)
                        if not keep_going:
                            stopping = True
                        continue
                    progress.finish(nid, outcome)
                    {"built": report.built, "captured": report.captured,
                     "present": report.present, "fetched": report.fetched}[outcome].append(nid)
                    for dep in dependents[nid]:
                        waiting_on[dep].discard(nid)
                        if not waiting_on[dep] and dep not in report.skipped:
                            ready.append(dep)
    finally:
        progress.close()
    accounted = {*report.built, *report.captured, *report.present, *report.fetched, *report.failed,
                 *report.skipped}
    report.skipped += [nid for nid in todo if nid not in accounted]
    return report

"""`hdenv build`: stack file -> plan -> artifacts -> profiles -> names.

This is the orchestration behind the command, free of click so tests and
other front ends can call it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..config import Settings
from ..errors import BuildError, UserError
from ..recipes.repos import site_refs
from ..store.gcroots import BuildRoots
from ..store.hashing import spec_source_keys
from ..store.layout import Store
from ..store.sources import SourceStore
from ..store.tmpdirs import clean_stale
from . import processes
from .builder import BuildOptions, RunFlags, build_options, fetch_all_sources
from .plan import Node, Plan, plan_stack
from .preflight import preflight
from .progress import Progress, labels
from .scheduler import BuildReport, run_plan
from .stackfile import ProfilePlan, Stack, load_stack
from .storepath import check_store_path


@dataclass
class ProfileResult:
    name: str
    hash: str
    generation: int
    new_generation: bool


@dataclass
class BuildOutcome:
    plan: Plan
    report: BuildReport
    profiles: list[ProfileResult] = field(default_factory=list)
    dry_run_lines: list[str] = field(default_factory=list)


class Executor(Protocol):
    """Where the missing artifacts of a plan get built (here, or as batch jobs).

    Planning before it and profiles after it are the same for every executor,
    so `NAME HASH` lines and generations never depend on where builds ran.
    """

    def check(self, stack: Stack) -> None:
        """Refuse bad settings (UserError) before the store is touched."""

    def describe(self, plan: Plan, store: Store) -> list[str]:
        """Extra `--dry-run` lines: what would be submitted, and after what."""

    def run(self, plan: Plan, store: Store, sources: SourceStore, *, jobs: int,
            build_jobs: int | None, keep_going: bool, stream: TextIO,
            progress: Progress | None = None) -> BuildReport:
        """Make every node of `plan` present, or report why not."""


def build_stack(path: Path, settings: Settings, *, overrides: Mapping[str, str] | None = None,
                jobs: int | None = None, keep_going: bool = False, dry_run: bool = False,
                stream: TextIO = sys.stderr, executor: Executor | None = None,
                flags: RunFlags | None = None) -> BuildOutcome:
    """Build a stack file; Ctrl-C, SIGTERM and SIGHUP stop it cleanly (`Interrupted`)."""
    with processes.interruptible():
        return _build_stack(path, settings, overrides=overrides, jobs=jobs,
                            keep_going=keep_going, dry_run=dry_run, stream=stream,
                            executor=executor, flags=flags or RunFlags())


def _build_stack(path: Path, settings: Settings, *, overrides: Mapping[str, str] | None,
                 jobs: int | None, keep_going: bool, dry_run: bool,
                 stream: TextIO, executor: Executor | None, flags: RunFlags) -> BuildOutcome:
    settings.check_jobs()
    # all input errors surface here (config host declarations too), store untouched
    stack = load_stack(path, overrides, settings.host_files, site_refs(settings))
    preflight(stack)  # and what planning would find: missing paths and host programs
    warning = check_store_path(settings.store)
    if executor is not None:
        executor.check(stack)
    store = Store(settings.store, settings.upstreams)
    if not dry_run:  # a dry run looks and stores nothing (a reader may ask what is missing)
        store.ensure()
    if warning and not dry_run:
        print(f"hdenv: {warning}", file=stream)
    progress = Progress(stream=stream)  # every message goes above its status line
    sources = SourceStore(store, settings.mirrors, log=progress.say, keys_only=dry_run)
    if dry_run:
        refuse_chosen_programs(stack)
        plan = plan_stack(stack, store, sources, host_identity=settings.host_identity)
        lines = explain(plan, store) + (executor.describe(plan, store) if executor else [])
        return BuildOutcome(plan, BuildReport(), dry_run_lines=lines)
    clean_stale(store)  # what killed runs left in tmp/
    with BuildRoots(store) as roots:
        return _build(stack, store, sources, roots, settings, jobs=jobs, keep_going=keep_going,
                      stream=stream, progress=progress, executor=executor,
                      flags=flags if stack.run_checks else replace(flags, skip_checks=True))


def _build(stack: Stack, store: Store, sources: SourceStore, roots: BuildRoots,
           settings: Settings, *, jobs: int | None, keep_going: bool,
           stream: TextIO, progress: Progress, executor: Executor | None,
           flags: RunFlags) -> BuildOutcome:
    with roots.holding():  # planning may store local sources before it can name them
        plan = plan_stack(stack, store, sources, host_identity=settings.host_identity)
        roots.add(plan_roots(plan))
    for node in plan.nodes.values():  # even for artifacts already built: a URL may be new
        store.record_source_hints(node.id.rsplit("/", 1)[1], node.source_hints)
        store.record_about(node.id.rsplit("/", 1)[1],
                           {"description": node.description, **node.about})
    if executor is None:
        absent = {i for i in plan.nodes if not store.has_artifact(i)}  # host software too
        missing = [n for i, n in plan.nodes.items() if n.kind == "build" and i in absent]
        to_build = bool(missing)
        if missing and not settings.caches:  # with caches, a substitute needs no source
            unfetched = fetch_all_sources(missing, sources)
            if unfetched and not keep_going:
                raise BuildError("sources that could not be had (nothing was built):\n  "
                                 + "\n  ".join(unfetched))
        report = run_plan(plan, store, sources, jobs=jobs or settings.jobs,
                          build_jobs=settings.build_jobs, keep_going=keep_going, stream=stream,
                          options=(cache_options(build_options(settings, stream, flags),
                                                 store, settings) if to_build else None),
                          progress=progress, absent=absent)
    else:
        report = executor.run(plan, store, sources, jobs=jobs or settings.jobs,
                              build_jobs=settings.build_jobs, keep_going=keep_going,
                              stream=stream, progress=progress)
    outcome = BuildOutcome(plan, report)
    failed = set(report.failed) | set(report.skipped)
    for planned in plan.profiles:
        closure = plan.runtime_closure(planned.roots)
        if failed & set(closure):
            continue
        try:
            outcome.profiles.append(_make_profile(store, planned.plan, closure, roots,
                                                  plan.nodes))
        except UserError as e:  # e.g. two artifacts providing one file: point at the profile
            if e.file is not None:
                raise
            raise UserError(f"profile {planned.plan.name}: {e.message}", file=str(stack.path),
                            line=planned.plan.line) from None
    if not report.ok:
        seen = labels((nid, node.variant) for nid, node in plan.nodes.items())
        names = ", ".join(sorted(seen.get(n, n.split("/")[0]) for n in report.failed))
        skipped = f"; {len(report.skipped)} skipped" if report.skipped else ""
        raise BuildFailed(outcome, f"{len(report.failed)} build(s) failed: {names}{skipped}")
    return outcome


def cache_options(options: BuildOptions, store: Store, settings: Settings) -> BuildOptions:
    """Build options that first look for each missing artifact in the configured caches."""
    if not settings.caches:  # the caches' modules are 30-50 ms to import: none to ask
        return options
    from ..exchange.substitute import Substituter

    substituter = Substituter.from_settings(store, settings.caches, settings.trusted_keys)
    if substituter is None:
        return options
    return replace(options, substitute=substituter.realise)


class BuildFailed(BuildError):
    """Carries the outcome so the CLI can still print the profiles that did build."""

    def __init__(self, outcome: BuildOutcome, message: str):
        self.outcome = outcome
        super().__init__(message)


def plan_roots(plan: Plan) -> list[str]:
    """What a build of `plan` uses, for gc: every node and every source key."""
    keys = [k for n in plan.nodes.values() for k in spec_source_keys(n.spec)]
    return [*plan.nodes, *keys]


def _make_profile(store: Store, plan: ProfilePlan, closure: list[str],
                  roots: BuildRoots, planned: Mapping[str, Node]) -> ProfileResult:
    from ..profile import profiles

    env: dict[str, str] = {}
    for aid in closure:  # a host artifact's `env = {...}` is set by profiles that contain it
        # the plan's spec where it has one (it hashes to the id): a 5,000-package no-op
        # build read 5,000 spec files here, a seventh of its time
        node = planned.get(aid)
        aspec = node.spec if node is not None else store.read_spec(aid.rsplit("/", 1)[1])
        if aspec.get("kind") == "host":
            env.update(aspec.get("env", {}))
    env.update(plan.env)
    spec = profiles.profile_spec(closure, env, plan.family, exclude=plan.exclude,
                                 priority=plan.priority, python_usage=plan.python_usage,
                                 sticky=plan.sticky)
    phash = profiles.profile_hash(spec)
    roots.add([phash])  # before it exists: gc must not take it before the name points at it
    profiles.create_profile(store, spec)
    store.record_about(phash, {"description": plan.description, **plan.about})
    generation, new = profiles.set_current(store, plan.name, phash)
    return ProfileResult(plan.name, phash, generation, new)


def _root_only(path: str) -> bool:
    """Owned by root and writable by nobody else (following links)."""
    st = os.stat(path)
    return st.st_uid == 0 and not st.st_mode & 0o022


def _system_file(program: str) -> bool:
    """The file is root's and so is every directory its name is looked up in, on the path
    as written and on the path it resolves to: nobody but root can swap it (or a link on
    the way) between this check and the run, as the owner of /home/x/bin could."""
    real = os.path.realpath(program)
    for path in (program, real):
        parent = os.path.dirname(path)
        while True:
            if not _root_only(parent):
                return False
            if parent == "/":
                break
            parent = os.path.dirname(parent)
    return _root_only(real)


def refuse_chosen_programs(stack: Stack) -> None:
    """Looking is safe: a dry run asks `--version` only of programs a stack names by name
    (found on PATH, where this user put them) or of system files (root's, in directories
    only root can change); a path a stack file chose could be any program."""
    for host in stack.hosts.values():
        for program in host.programs:
            if not program.startswith("/"):
                continue
            try:
                trusted = _system_file(program)
            except OSError:
                continue  # preflight says it is missing
            if not trusted:
                raise UserError(f"host.{host.name}.programs names {program}, which is not a"
                                " system file (owned by root, writable by nobody else, in"
                                " directories only root can change): a dry run does not run"
                                " it; build without --dry-run to capture it",
                                file=str(stack.path), line=host.line)


def explain(plan: Plan, store: Store) -> list[str]:
    """What a build would do, and why: a new package, or which input changed."""
    from ..profile.specdiff import spec_diff

    lines = []
    present = set(store.list_artifacts(upstreams=True))
    for nid in plan.order():
        if nid in present:
            continue
        node = plan.nodes[nid]
        name = node.spec["name"]
        previous = [a for a in present if a.split("/")[0] == name]
        if node.kind == "host":
            why = _host_reason(store, node.spec, previous)
        elif not previous:
            why = "new"
        else:
            best = _closest(store, node.spec, previous)
            changes = spec_diff(store.read_spec(best.split("/")[2]), node.spec)
            why = f"differs from {best}: " + "; ".join(changes[:4]) if changes else "new"
        lines.append(f"would build {nid} ({why})")
    return lines


def _host_reason(store: Store, spec: dict[str, Any], previous: list[str]) -> str:
    """Changed only against a capture of the same declaration (same programs and libraries):
    another stack's `[host.gcc]` with other programs is not an earlier version of this one."""
    def declared(s: dict[str, Any]) -> tuple[set[str], set[str], Any]:
        return set(s.get("programs", {})), set(s.get("libraries", {})), s.get("family")

    same = [a for a in previous
            if declared(store.read_spec(a.split("/")[2])) == declared(spec)]
    if not same:
        return "host software not captured yet"
    from ..profile.specdiff import spec_diff

    best = _closest(store, spec, same)
    changes = spec_diff(store.read_spec(best.split("/")[2]), spec)
    return f"host software changed since {best}: " + "; ".join(changes[:3])


def _closest(store: Store, spec: dict[str, Any], candidates: list[str]) -> str:
    """The existing artifact whose spec differs from `spec` in the fewest fields."""
    from ..profile.specdiff import spec_diff

    return min(candidates, key=lambda a: (len(spec_diff(store.read_spec(a.split("/")[2]), spec)),
                                          a))

"""`hdenv reproduce`: set this machine up in the state a bundle describes.

Order of work, each step before anything later touches the store:

1. the bundle is read and checked (every spec hashes to its name, the graph
   is complete) and everything it names is registered as a GC root;
2. host software the result needs is compared with what the bundle recorded
   (drift stops here, or with `--allow-host-drift` this machine's is captured
   and every id above it is recomputed, so the profile hash changes);
3. specs and source hints are stored; built artifacts the bundle carries are
   installed (`install_packed`: hash checks, relocation), in dependency order;
   from a binary cache (`--from CACHE`, cachebundle.py) every artifact comes
   through the substituter instead (signature, hash, relocation) and a refused
   one is an error, as nothing is built from a cache;
4. what is still missing is built from source, in dependency order, by the
   same scheduler and progress display as `hdenv build`: sources come from the
   bundle, the store, mirrors or the recorded URLs, all fetched before the
   first build starts;
5. the profile is created and named (`--name`, default the original name); from
   a cache, its farm grew while the artifacts arrived (profile/growing.py), so
   making it is writing its metadata and one rename.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..build import processes
from ..config import Settings
from ..errors import BuildError, UserError
from ..exchange.bundle import Bundle, node_id, references, store_sources
from ..exchange.locate import open_bundle
from ..exchange.pack import ArchiveRefused, install_packed
from ..exchange.substitute import Fetched, Substituter, shared_meter
from ..graphs import postorder
from ..profile import profiles
from ..profile.profiles import profile_hash
from ..store.artifacts import artifact_id
from ..store.fsutil import remove_tree
from ..store.gcroots import BuildRoots
from ..store.hashing import spec_source_keys
from ..store.layout import Store
from ..store.tmpdirs import temp_dir
from ..validate import profile_name_problem
from .drift import Drift, host_drift

if TYPE_CHECKING:
    from ..profile.growing import GrowingFarm
    from ..store.sources import SourceStore

Log = Callable[[str], None]


@dataclass
class ReproduceResult:
    kind: str  # "profile" or "artifact"
    ident: str  # profile hash or artifact id made here
    expected: str  # what the bundle said
    name: str | None = None
    generation: int | None = None
    new_generation: bool = False
    drift: list[Drift] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)  # from packed artifacts
    source: str = "the bundle"  # where `installed` came from, for the summary line
    captured: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    present: int = 0


def reproduce(settings: Settings, what: str, *, from_: str | None = None,
              allow_host_drift: bool = False, name: str | None = None, jobs: int | None = None,
              stream: TextIO = sys.stderr) -> ReproduceResult:
    """Reproduce the bundle file or hash `what`; Ctrl-C stops its builds cleanly."""
    settings.check_jobs()
    if name is not None:
        _check_name(name)
    store = Store(settings.store).ensure()
    with processes.interruptible(), _image_read_as_bundle(what, from_, store) as what, \
            open_bundle(what, from_, store, settings.trusted_keys,
                        jobs or settings.jobs) as bundle, \
            BuildRoots(store) as roots:
        roots.add([*(node_id(h, s) for h, s in bundle.specs.items()),
                   *(k for s in bundle.specs.values() for k in spec_source_keys(s))])
        return _Reproduction(store, settings, bundle, roots, stream).run(
            allow_host_drift=allow_host_drift, name=name, jobs=jobs)


@contextlib.contextmanager
def _image_read_as_bundle(what: str, from_: str | None, store: Store) -> Iterator[str]:
    """An image made by `hdenv pack` (OCI layout, docker archive, tar, SquashFS) is read as a
    bundle of its specs and the artifacts its layers hold (containers/fromimage.py)."""
    if from_ is not None:
        yield what
        return
    from ..containers.fromimage import image_as_bundle

    work = temp_dir(store, "image-")
    try:
        with image_as_bundle(what, work) as (path, _name):
            yield path
    finally:
        remove_tree(work)


def _check_name(name: str) -> None:
    problem = profile_name_problem(name)
    if problem:
        raise UserError(f"--name {name!r}: {problem}")


class _Reproduction:
    def __init__(self, store: Store, settings: Settings, bundle: Bundle, roots: BuildRoots,
                 stream: TextIO):
        self.store, self.settings, self.bundle, self.roots = store, settings, bundle, roots
        self.stream = stream
        self.specs: dict[str, dict[str, Any]] = dict(bundle.specs)
        self.root = bundle.roots[0]
        self.root_hash: str = self.root["hash"]
        self.result = ReproduceResult(self.root["kind"],
                                      node_id(self.root_hash, self.specs[self.root_hash]),
                                      node_id(self.root_hash, self.specs[self.root_hash]))
        if bundle.substituter is not None:
            self.result.source = "the cache"
        self.renamed: dict[str, str] = {}  # old hash -> new hash (host drift allowed)
        self.origin: dict[str, str] = {}  # new hash -> the bundle's hash it stands for
        self._present: set[str] = set()  # ids the store was found to have (see present)

    def say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    # -- the graph ------------------------------------------------------------
    def order(self) -> list[str]:
        """Hashes reachable from the root, dependencies first."""
        def refs(h: str) -> list[str]:
            return [r.rsplit("/", 1)[-1] for r in sorted(references(self.specs[h]))]

        return postorder([self.root_hash], refs)

    def runtime(self) -> list[str]:
        """Hashes of the artifacts the root needs at run time (its runtime closure)."""
        spec = self.specs[self.root_hash]
        stack = [a.rsplit("/", 1)[-1] for a in spec.get("artifacts", [])] \
            if spec.get("kind") == "profile" else [self.root_hash]
        seen: set[str] = set()
        while stack:
            h = stack.pop()
            if h not in seen:
                seen.add(h)
                stack.extend(d.rsplit("/", 1)[-1] for d in self.specs[h].get("deps", []))
        return sorted(seen)

    def aid(self, h: str) -> str:
        return node_id(h, self.specs[h])

    def present(self, aid: str) -> bool:
        """Whether the store has `aid`. A yes is remembered: an artifact stays (the build
        roots keep gc off it), and a 200-artifact reproduce asked ~1,000 times, a stat each."""
        if aid in self._present:
            return True
        if self.store.has_artifact(aid):
            self._present.add(aid)
            return True
        return False

    def needed_builds(self, available: Callable[[str], bool]) -> list[str]:
        """Build nodes that must be built here, with every input they need, deps first."""
        need: set[str] = set()
        stack = [h for h in self.runtime() if self.specs[h].get("kind") == "build"
                 and not available(h)]
        while stack:
            h = stack.pop()
            if h in need:
                continue
            need.add(h)
            for ref in references(self.specs[h]):
                rh = ref.rsplit("/", 1)[-1]
                if self.specs[rh].get("kind") == "build" and not self.present(ref):
                    stack.append(rh)
        return [h for h in self.order() if h in need]

    # -- steps ------------------------------------------------------------------
    def run(self, *, allow_host_drift: bool, name: str | None,
            jobs: int | None) -> ReproduceResult:
        archives = {h for h in self.specs
                    if isinstance(self.bundle.nodes.get(h, {}).get("artifact"), dict)}
        builds = self.needed_builds(lambda h: self.present(self.aid(h))
                                    or h in archives)
        hosts = self.hosts_needed(builds)
        drift = self.check_drift(hosts)
        if drift and not allow_host_drift:
            lines = "\n".join(f"  {d.line()}" for d in drift)
            raise BuildError(
                "host software here differs from the bundle's:\n" + lines + "\n"
                "  (--allow-host-drift uses this machine's instead; the hash will differ)")
        if drift:
            self.result.drift = drift
            self.rebase_on_host({d.name for d in drift}, hosts)
            hosts = {self.renamed.get(h, h) for h in hosts}
        self.capture(hosts)
        # from a cache, each install writes its own spec (in a worker, beside the others):
        # the rest first, then whatever a refused install left unwritten
        cached = self.from_cache()  # asked once: nothing is installed in between
        self.store_specs(skip=set(cached))
        with self.growing_farm() as grown:
            self.install_packed(jobs or self.settings.jobs, cached, grown)
            return self.rest(name, jobs, hosts, grown)

    def rest(self, name: str | None, jobs: int | None, hosts: set[str],
             grown: GrowingFarm | None) -> ReproduceResult:
        """After the installs: the specs a refused one left unwritten, what is still missing
        built, then the profile made (from the farm grown meanwhile, if it is complete)."""
        self.store.write_specs({h: self.specs[h] for h in self.order()})  # only missing ones
        builds = self.needed_builds(lambda h: self.present(self.aid(h)))
        late = self.hosts_needed(builds) - set(hosts)
        if late:  # a packed artifact was refused: build-only host software is needed now
            drift = self.check_drift(late)
            if drift:
                raise BuildError("host software here differs from the bundle's:\n"
                                 + "\n".join(f"  {d.line()}" for d in drift))
            self.capture(late)
        if builds and self.bundle.substituter is not None:
            raise UserError(f"--from {self.bundle.label}: {self.aid(builds[-1])} would have to be"
                            " built (after host drift), and nothing is built from a cache:"
                            " reproduce from a bundle with sources instead")
        if builds:
            self.build(builds, jobs)
        return self.finish(name, grown)

    def hosts_needed(self, builds: list[str]) -> set[str]:
        needed = {h for h in self.runtime() if self.specs[h].get("kind") == "host"}
        for h in builds:
            for ref in references(self.specs[h]):
                rh = ref.rsplit("/", 1)[-1]
                if self.specs[rh].get("kind") == "host":
                    needed.add(rh)
        return {h for h in needed if not self.present(self.aid(h))}

    def check_drift(self, hosts: set[str]) -> list[Drift]:
        out: list[Drift] = []
        for h in sorted(hosts, key=self.aid):
            out += host_drift(self.store, self.specs[h])
        return out

    def capture(self, hosts: set[str]) -> None:
        if not hosts:  # a profile with no host software: its module is ~10 ms to load
            return
        from ..build import host  # here: as drift.host_drift says

        for h in sorted(hosts, key=self.aid):
            aid = self.aid(h)
            if self.present(aid):
                continue
            host.install_host_spec(self.store, self.specs[h])
            self.result.captured.append(aid)
            self.say(f"captured host software {aid}")

    def rebase_on_host(self, drifted_names: set[str], hosts: set[str]) -> None:
        """Capture this machine's host software for the drifted ones; re-hash all above them."""
        from ..build import host  # here: see capture

        mapping: dict[str, str] = {}  # old id -> new id
        for h in hosts:
            spec = self.specs[h]
            if spec.get("name") not in drifted_names:
                continue
            old = self.aid(h)
            if spec["name"] == host.BASIC_TOOLS_NAME:
                new_spec = host.basic_tools_spec(self.store)
            else:
                new_spec = host.host_spec(self.store, spec["name"], sorted(spec["programs"]),
                                          family=spec.get("family"))
            new = artifact_id(new_spec)
            self.roots.add([new])
            host.install_host_spec(self.store, new_spec)
            self.say(f"captured this machine's {new} instead of {old}")
            self.result.captured.append(new)
            mapping[old] = new
            self._replace(h, new.rsplit("/", 1)[-1], new_spec)
        for h in self.order():
            spec = self.specs[h]
            if spec.get("kind") == "host":
                continue
            changed = _substitute(spec, mapping)
            if changed is spec:
                continue
            if changed.get("kind") == "profile":
                new_hash = profile_hash(changed)
            else:
                new_hash = artifact_id(changed).rsplit("/", 1)[-1]
            mapping[self.aid(h)] = node_id(new_hash, changed)
            self.roots.add([node_id(new_hash, changed)])
            self._replace(h, new_hash, changed)

    def _replace(self, old: str, new: str, spec: dict[str, Any]) -> None:
        self.specs[new] = spec
        self.origin[new] = self.origin.get(old, old)
        self.renamed[old] = new
        if old == self.root_hash:
            self.root_hash = new

    def store_specs(self, skip: set[str] | None = None) -> None:
        self.store.write_specs({h: self.specs[h] for h in self.order() if h not in (skip or ())})
        for h in self.order():
            hints = self.bundle.source_hints(self.origin.get(h, h))
            entries = []
            for hint in hints:
                for url in reversed(hint.get("urls") or [None]):
                    entries.append({"key": hint.get("key"), "url": url, "git": hint.get("git"),
                                    "filename": hint.get("filename")})
            for entry in entries:  # oldest first: record_source_hints puts the newest first
                if entry["key"]:
                    self.store.record_source_hints(h, [entry])

    def from_cache(self) -> list[str]:
        """The hashes a binary cache is asked for, in dependency order (none from a bundle)."""
        if self.bundle.substituter is None:
            return []
        wanted = set(self.runtime())
        return [h for h in self.order() if h in wanted and h not in self.origin
                and not self.present(self.aid(h))]

    @contextlib.contextmanager
    def growing_farm(self) -> Iterator[GrowingFarm | None]:
        """From a cache, the profile's farm grows while its artifacts arrive (growing.py),
        from those already here on; None for an artifact, a bundle (whose installs are one
        at a time) or a profile this store has."""
        spec = self.specs[self.root_hash]
        if self.bundle.substituter is None or spec.get("kind") != "profile":
            yield None
            return
        with profiles.growing(self.store, spec) as grown:
            if grown is not None:
                for aid in spec["artifacts"]:
                    if self.present(aid):
                        grown.add(aid)
            yield grown

    def install_packed(self, jobs: int, cached: list[str], grown: GrowingFarm | None) -> None:
        """`cached`: what `from_cache` gave (from a binary cache; nothing from a bundle);
        each artifact is added to `grown` as it arrives."""
        wanted = set(self.runtime())
        if self.bundle.substituter is not None:
            self.fetch_all(self.bundle.substituter, cached, jobs,
                           grown.add if grown is not None else lambda _aid: None)
            return
        import tempfile  # here: only a bundle's archives are unpacked aside

        with tempfile.TemporaryDirectory(prefix="hdenv-reproduce-") as work:
            for h in self.order():
                aid = self.aid(h)
                if h not in wanted or h in self.origin or self.present(aid):
                    continue
                with self.bundle.archive(h, Path(work)) as got:
                    if got is None:
                        continue
                    description, path = got
                    if description.get("id") != aid:
                        self.say(f"not using the bundle's archive for {aid}: it describes"
                                 f" {description.get('id')!r}")
                        continue
                    try:
                        install_packed(self.store, description, path, source=self.bundle.label)
                    except ArchiveRefused as e:
                        self.say(f"not using the bundle's {aid}: {e.reason}; building it")
                        continue
                self.result.installed.append(aid)
                self.say(f"installed {aid} from {self.bundle.label}")

    def fetch_all(self, substituter: Substituter, hashes: list[str], jobs: int,
                  arrived: Callable[[str], None]) -> None:
        """From a binary cache, `jobs` at a time, through the substituter's checks; a
        refusal stops here (after the transfers in flight)."""
        aids = [self.aid(h) for h in hashes]
        deps = {self.aid(h): list(self.specs[h].get("deps", [])) for h in hashes}
        got = substituter.fetch_many(aids, lambda aid: deps.get(aid, []), jobs,
                                     meter=shared_meter(len(aids)), arrived=arrived)
        for aid in aids:  # dependencies first, as they were installed
            fetched = got[aid]
            if not isinstance(fetched, Fetched):
                why = fetched.removeprefix(f"{self.bundle.label}: ")  # the one cache asked
                raise UserError(f"--from {self.bundle.label}: refusing {aid}: {why}"
                                " (a cache is used as it is: nothing is built)")
            self.result.installed.append(aid)
            self._present.add(aid)
            self.say(f"fetched {aid} {fetched.describe()}")

    def build(self, builds: list[str], jobs: int | None) -> None:
        # here, not at the top: a reproduce from a cache builds nothing, and the builder,
        # the planner and the source store were half of its start-up (~45 ms)
        from ..build.builder import build_options
        from ..build.plan import Node, Plan
        from ..build.scheduler import run_plan
        from ..store.sources import SourceStore

        srcstore = SourceStore(self.store, self.settings.mirrors, log=self.say)
        self.fetch_sources(builds, srcstore)
        nodes = {}
        for h in builds:  # inputs outside `builds` are present: the scheduler skips them
            spec = self.specs[h]
            hints = [{"key": s.get("key"), "url": (s.get("urls") or [None])[0],
                      "git": s.get("git")}
                     for s in self.bundle.source_hints(self.origin.get(h, h))]
            nodes[self.aid(h)] = Node(self.aid(h), spec, "build",
                                      deps=list(spec.get("deps", [])),
                                      build_deps=list(spec.get("build_deps", [])),
                                      source_hints=hints)
        plan = Plan(None, nodes, [], "")
        report = run_plan(plan, self.store, srcstore, jobs=jobs or self.settings.jobs,
                          build_jobs=self.settings.build_jobs, stream=self.stream,
                          options=build_options(self.settings))
        self.result.built = report.built
        self.result.present = len(report.present)
        if not report.ok:
            names = ", ".join(sorted(n.split("/")[0] for n in report.failed))
            raise BuildError(f"{len(report.failed)} build(s) failed: {names}")

    def fetch_sources(self, builds: list[str], srcstore: SourceStore) -> None:
        """Every source the builds need, before the first build: from the bundle, else fetched."""
        wanted: dict[str, dict[str, Any]] = {}
        for h in builds:
            hints = {s.get("key"): s for s in self.bundle.source_hints(self.origin.get(h, h))}
            for key in spec_source_keys(self.specs[h]):
                wanted.setdefault(key, hints.get(key, {}))
        store_sources(self.bundle, srcstore,
                      {k: v.get("filename") for k, v in wanted.items()})
        missing = []
        for key, hint in wanted.items():
            if srcstore.has(key):
                continue
            try:
                srcstore.ensure(key, urls=hint.get("urls") or [], name=hint.get("filename"),
                                git_url=hint.get("git"))
            except BuildError as e:
                missing.append(e.message)
        if missing:
            raise BuildError("sources not found (export with --with-sources, or set"
                             " HDENV_MIRRORS):\n  " + "\n  ".join(missing))

    def finish(self, name: str | None, grown: GrowingFarm | None = None) -> ReproduceResult:
        result = self.result
        spec = self.specs[self.root_hash]
        result.ident = node_id(self.root_hash, spec)
        if spec.get("kind") != "profile":
            if not self.present(result.ident):
                raise BuildError(f"{result.ident} was not made")
            return result
        profiles.create_profile(self.store, spec, grown=grown)
        if name is None and not self.root.get("name") and self.bundle.origin is not None:
            named = profiles.names_of(self.bundle.origin, self.result.expected)
            name = named[-1][0] if named else None
        result.name = name or self.root.get("name") or f"repro-{self.root_hash[:8]}"
        result.generation, result.new_generation = profiles.set_current(
            self.store, result.name, self.root_hash)
        return result


def _substitute(spec: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """`spec` with its references renamed by `mapping`; the same object if none changed."""
    if not any(r in mapping for r in references(spec)):
        return spec
    new = dict(spec)
    if spec.get("kind") == "profile":
        new["artifacts"] = sorted(mapping.get(a, a) for a in spec.get("artifacts", []))
        return new
    new["deps"] = sorted(mapping.get(a, a) for a in spec.get("deps", []))
    new["build_deps"] = sorted(mapping.get(a, a) for a in spec.get("build_deps", []))
    if spec.get("tools"):
        new["tools"] = mapping.get(spec["tools"], spec["tools"])
    return new

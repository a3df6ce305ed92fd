"""Bundles: one software state in a plain tar, and reading one back without trusting it.

Layout (a plain tar people can look into with `tar tf`; `hdenv-bundle.json`
comes first so a reader finds the roots without reading the rest):

    hdenv-bundle.json            format, hdenv version, roots, nodes, host facts
    specs/HASH.json              every spec of the build closure, byte for byte
    sources/sha256/HEX           with --with-sources: the source archives
    artifacts/SHA256.tar.zst     with --with-artifacts: packed artifacts (pack.py)

`hdenv-bundle.json`:

    {"format": 1, "hdenv_version": "0.1.0", "created": "...",
     "roots": [{"kind": "profile", "hash": H, "name": "demo", "generation": 2}],
     "nodes": {H: {"kind": "build", "id": "N/V/H", "references": [ids],
                   "sources": [{"key": K, "urls": [...], "git": URL, "filename": F,
                                "file": "sources/sha256/HEX"}],
                   "artifact": {"description": {...}, "archive": "artifacts/X.tar.zst"},
                   "programs": {PROGRAM: "version line"}}},   # host nodes
     "host": {os, kernel, cpu, libc, compilers, ...}}

Nothing in the manifest is trusted for identity: the dependency graph is read
from the specs, and every spec must hash to the name it is stored under, so a
changed byte anywhere in a spec is refused with the spec's name. Sources are
stored only if they hash to their key; artifacts only through `install_packed`,
which checks the archive's hash and that its spec hashes to its id.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import __version__
from ..errors import BuildError, UserError
from ..store.artifacts import runtime_closure
from ..store.hashing import is_hash_like, spec_hash, spec_source_keys
from ..store.layout import Store

if TYPE_CHECKING:
    from ..store.sources import SourceStore
    from .substitute import Substituter

FORMAT = 1
MANIFEST = "hdenv-bundle.json"
SPEC_RE = re.compile(r"^specs/([a-z2-7]{32})\.json$")
SOURCE_RE = re.compile(r"^sources/sha256/([0-9a-f]{64})$")
ARCHIVE_RE = re.compile(r"^artifacts/([0-9a-f]{64})\.tar\.zst$")
MAX_MANIFEST = 256 << 20
MAX_SPEC = 16 << 20

Log = Callable[[str], None]


def references(spec: dict[str, Any]) -> list[str]:
    """The ids a spec names: a build's deps, build deps and tools; a profile's artifacts."""
    if spec.get("kind") == "profile":
        refs = list(spec.get("artifacts", []))
    else:
        refs = [*spec.get("deps", []), *spec.get("build_deps", [])]
        if spec.get("tools"):
            refs.append(spec["tools"])
    return [r for r in refs if isinstance(r, str)]


def node_id(hash_: str, spec: dict[str, Any]) -> str:
    """A profile is known by its hash, an artifact by NAME/VERSION/HASH."""
    if spec.get("kind") == "profile":
        return hash_
    return f"{spec.get('name')}/{spec.get('version')}/{hash_}"


def check_graph(specs: dict[str, dict[str, Any]], roots: list[str], where: str) -> None:
    """Every reference must name a spec we have, under the name and version that spec has."""
    for root in roots:
        if root not in specs:
            raise UserError(f"{where}: has no spec for its root {root}")
    for h, spec in specs.items():
        for ref in references(spec):
            rh = ref.rsplit("/", 1)[-1]
            if rh not in specs:
                raise UserError(f"{where}: {node_id(h, spec)} needs {ref}, whose spec is missing")
            if node_id(rh, specs[rh]) != ref:
                raise UserError(f"{where}: {node_id(h, spec)} names {ref}, but spec {rh} is"
                                f" {node_id(rh, specs[rh])}")


def build_closure(read: Callable[[str], dict[str, Any]], roots: list[str], jobs: int = 1,
                  at_hand: Callable[[str], bool] = lambda _h: False) -> dict[str, Any]:
    """hash -> spec for everything the roots need to be built (deps, build deps, tools),
    read a level at a time; with `jobs` > 1 a level's reads run that many at once (a
    binary cache's: a profile's 200 artifacts are 200 requests), except those `at_hand`
    says need no request (a profile's envelope carries them): handing each of those to a
    thread cost more than reading it (a 200-artifact profile's bundle opened in 29 ms
    that way, 20 ms with those read in this thread; medians of 12 at -j 2)."""
    out: dict[str, Any] = {}
    level = sorted(set(roots))
    pool = None
    if jobs > 1:
        from concurrent.futures import ThreadPoolExecutor  # here: only caches read in threads

        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="hdenv-spec")
    try:
        while level:
            far = [h for h in level if not at_hand(h)]
            got = dict(zip(far, pool.map(read, far) if pool else map(read, far)))
            for h in level:
                out[h] = got[h] if h in got else read(h)
            level = sorted({r.rsplit("/", 1)[-1] for h in level for r in references(out[h])}
                           - out.keys())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


# -- export -------------------------------------------------------------------------

@dataclass
class ExportResult:
    path: Path
    root: dict[str, Any]
    nodes: int = 0
    sources: int = 0
    artifacts: int = 0
    size: int = 0


def _hints(store: Store, hash_: str) -> dict[str, Any]:
    try:
        with open(store.hints_path(hash_), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store_spec(store: Store, hash_: str) -> dict[str, Any]:
    try:
        spec = store.read_spec(hash_)
    except UserError:
        raise UserError(f"the spec {hash_} is not in the store (removed by hand?):"
                        " cannot export without it") from None
    except ValueError:
        raise UserError(f"the spec {store.spec_path(hash_)} is damaged") from None
    if not isinstance(spec, dict):
        raise UserError(f"the spec {store.spec_path(hash_)} is damaged")
    return spec


def write_bundle(store: Store, root: dict[str, Any], out: Path, *, host: dict[str, Any],
                 with_sources: bool = False, with_artifacts: bool = False,
                 mirrors: list[str] | None = None, log: Log | None = None) -> ExportResult:
    """Write the bundle of `root` ({kind, hash[, id, name, generation]}) to `out`.

    `out` may be a directory: the bundle is then `out/HASH.tar`. `host`: the
    facts of this machine to record.
    """
    say = log or (lambda _m: None)
    if out.is_dir():
        out = out / f"{root['hash']}.tar"
    specs = build_closure(lambda h: _store_spec(store, h), [root["hash"]])
    check_graph(specs, [root["hash"]], f"store {store.root}")
    # here: `reproduce` reads bundles and caches, never writes one (the source store's
    # module and what it imports were ~15 ms of that command's start-up)
    from ..store.sources import SourceStore, parse_key

    srcstore = SourceStore(store, mirrors or [], log=say)
    nodes: dict[str, Any] = {}
    files: list[tuple[str, Path]] = []  # (arcname, path) after the specs
    for h, spec in sorted(specs.items()):
        node: dict[str, Any] = {"kind": spec.get("kind", "build"), "references": references(spec)}
        if node["kind"] != "profile":
            node["id"] = node_id(h, spec)
        if node["kind"] == "host":
            node["programs"] = {p: (str(i.get("version", "")).splitlines() or ["?"])[0]
                                for p, i in sorted(spec.get("programs", {}).items())}
        hints = _hints(store, h)
        node_sources = []
        for key in spec_source_keys(spec):
            hint = hints.get(key, {})
            entry = {"key": key, "urls": list(hint.get("urls", [])), "git": hint.get("git"),
                     "filename": hint.get("filename") or srcstore.name_of(key)}
            if with_sources and key.startswith("sha256:"):
                path = srcstore.ensure(key, urls=entry["urls"], name=entry["filename"])
                entry["file"] = f"sources/sha256/{parse_key(key)[1]}"
                files.append((entry["file"], path))
            elif with_sources:
                say(f"note: {key} ({node['id']}) is a git source: the bundle carries its"
                    " repository URL, not its objects")
            node_sources.append({k: v for k, v in entry.items() if v is not None})
        if node_sources:
            node["sources"] = node_sources
        nodes[h] = node
    manifest = {"format": FORMAT, "hdenv_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "roots": [root],
                "nodes": nodes, "host": host}
    out.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: as the source store above

    with tempfile.TemporaryDirectory(prefix=".hdenv-export-", dir=out.parent) as work:
        result = ExportResult(out, root, nodes=len(specs))
        if with_artifacts:
            result.artifacts = _pack_runtime(store, root, nodes, Path(work), files, say)
        files = list(dict.fromkeys(files))
        result.sources = sum(1 for a, _ in files if a.startswith("sources/"))
        tmp = Path(work) / "bundle.tar"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
            for h in sorted(specs):
                _add_bytes(tar, f"specs/{h}.json", store.spec_path(h).read_bytes())
            for arcname, path in files:
                with open(path, "rb") as f:
                    tar.addfile(_info(arcname, os.fstat(f.fileno()).st_size), f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    result.size = out.stat().st_size
    return result


def _pack_runtime(store: Store, root: dict[str, Any], nodes: dict[str, Any], work: Path,
                  files: list[tuple[str, Path]], say: Log) -> int:
    """Pack every built artifact the root needs at run time (host software is captured)."""
    from .pack import archive_name, pack_artifact

    if root["kind"] == "profile":
        wanted = list(store.read_spec(root["hash"]).get("artifacts", []))
    else:
        wanted = runtime_closure(store, [root["id"]])
    count = 0
    for aid in sorted(wanted):
        h = aid.rsplit("/", 1)[-1]
        if nodes[h]["kind"] == "host":
            continue
        if not store.has_artifact(aid):
            raise UserError(f"{aid} is not built in this store: cannot export it"
                            " --with-artifacts (build it, or export without)")
        say(f"packing {aid}")
        description = pack_artifact(store, aid, work)
        arcname = f"artifacts/{archive_name(description)}"
        nodes[h]["artifact"] = {"description": description, "archive": arcname}
        files.append((arcname, work / archive_name(description)))
        count += 1
    return count


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tar.addfile(_info(name, len(data)), io.BytesIO(data))


# -- reading ------------------------------------------------------------------------

@dataclass
class Bundle:
    """A checked set of specs with what came along (sources, packed artifacts).

    `specs` holds only specs that hash to their names and form a complete
    graph from the roots; the rest of the manifest is hints.
    """

    label: str
    roots: list[dict[str, Any]]
    specs: dict[str, dict[str, Any]]
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    origin: Store | None = None  # the store it is read from (`--from STORE`), if any
    # a binary cache (`--from CACHE`): artifacts come through its checks, never `archive`
    substituter: Substituter | None = None

    @contextlib.contextmanager
    def open_source(self, hex_: str) -> Iterator[IO[bytes] | None]:
        yield None

    @contextlib.contextmanager
    def archive(self, hash_: str, work: Path) -> Iterator[tuple[dict[str, Any], Path] | None]:
        """(description, archive path) of a packed artifact, if the bundle has one."""
        yield None

    def source_hints(self, hash_: str) -> list[dict[str, Any]]:
        return [s for s in self.nodes.get(hash_, {}).get("sources", []) if isinstance(s, dict)]

    def close(self) -> None:
        """Release what reading needed (an open tar)."""


def verify_spec(data: bytes, hash_: str, label: str, where: str) -> dict[str, Any]:
    """Parse a stored spec and check that it hashes to its name; UserError naming it if not."""
    try:
        spec = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        spec = None
    if not isinstance(spec, dict) or spec_hash(spec) != hash_:
        raise UserError(f"{where}: spec {label} (specs/{hash_}.json) does not hash to {hash_}:"
                        " it was changed or damaged; refusing the bundle")
    return spec


class TarBundle(Bundle):
    """A bundle file. Members are read by name; only regular files are ever read."""

    def __init__(self, path: Path):
        where = str(path)
        try:
            tar = tarfile.open(path, "r:*")  # noqa: SIM115 - kept open: closed by close()
        except OSError as e:
            raise UserError(f"{where}: cannot read it ({e.strerror or e})") from None
        except tarfile.TarError:
            raise UserError(f"{where}: not a readable bundle (not a tar file)") from None
        self.tar = tar
        try:
            self.members: dict[str, tarfile.TarInfo] = {}
            try:
                for member in tar:
                    if not member.isfile():
                        continue
                    if member.name in self.members:
                        raise UserError(f"{where}: {member.name} appears twice;"
                                        " refusing the bundle")
                    self.members[member.name] = member
            except (tarfile.TarError, EOFError, OSError) as e:
                raise UserError(f"{where}: damaged or truncated tar ({e})") from None
            manifest = read_manifest(self._read(MANIFEST, MAX_MANIFEST, where), where)
            raw_nodes = manifest.get("nodes")
            nodes: dict[str, Any] = raw_nodes if isinstance(raw_nodes, dict) else {}
            specs = {}
            for name in self.members:
                m = SPEC_RE.match(name)
                if m:
                    h = m.group(1)
                    label = _label(nodes.get(h), h)
                    specs[h] = verify_spec(self._read(name, MAX_SPEC, where), h, label, where)
        except BaseException:
            tar.close()
            raise
        roots = _roots(manifest, where)
        check_graph(specs, [r["hash"] for r in roots], where)
        super().__init__(where, roots, specs, nodes, manifest.get("host") or {})

    def _read(self, name: str, limit: int, where: str) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise UserError(f"{where}: not an hdenv bundle (no {name})")
        if member.size > limit:
            raise UserError(f"{where}: {name} is implausibly large ({member.size} bytes)")
        try:
            f = self.tar.extractfile(member)
            assert f is not None
            return f.read()
        except (tarfile.TarError, OSError) as e:
            raise UserError(f"{where}: {name} is damaged or truncated ({e})") from None

    @contextlib.contextmanager
    def open_source(self, hex_: str) -> Iterator[IO[bytes] | None]:
        member = self.members.get(f"sources/sha256/{hex_}")
        if member is None:
            yield None
            return
        f = self.tar.extractfile(member)
        assert f is not None
        with f:
            yield f

    @contextlib.contextmanager
    def archive(self, hash_: str, work: Path) -> Iterator[tuple[dict[str, Any], Path] | None]:
        entry = self.nodes.get(hash_, {}).get("artifact")
        if not isinstance(entry, dict) or not isinstance(entry.get("description"), dict):
            yield None
            return
        member = self.members.get(str(entry.get("archive")))
        if member is None or not ARCHIVE_RE.match(member.name):
            yield None
            return
        work.mkdir(parents=True, exist_ok=True)
        path = work / os.path.basename(member.name)
        f = self.tar.extractfile(member)
        assert f is not None
        with f, open(path, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        try:
            yield entry["description"], path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        self.tar.close()


class StoreBundle(Bundle):
    """Another store used as a bundle (`--from /other/store`): its specs, sources, artifacts."""

    def __init__(self, other: Store, hash_: str):
        where = f"store {other.root}"

        def read(h: str) -> dict[str, Any]:
            try:
                data = other.spec_path(h).read_bytes()
            except FileNotFoundError:
                raise UserError(f"{where}: has no spec {h}") from None
            return verify_spec(data, h, h, where)

        specs = build_closure(read, [hash_])
        spec = specs[hash_]
        kind = "profile" if spec.get("kind") == "profile" else "artifact"
        root: dict[str, Any] = {"kind": kind, "hash": hash_}
        if kind == "artifact":
            root["id"] = node_id(hash_, spec)
        check_graph(specs, [hash_], where)
        nodes = {}
        for h, s in specs.items():
            hints = _hints(other, h)
            nodes[h] = {"sources": [{"key": k, **hints.get(k, {})} for k in spec_source_keys(s)]}
        super().__init__(where, [root], specs, nodes, {}, other)
        self.other = other

    @contextlib.contextmanager
    def open_source(self, hex_: str) -> Iterator[IO[bytes] | None]:
        path = self.other.src / "sha256" / hex_
        if not path.is_file():
            yield None
            return
        with open(path, "rb") as f:
            yield f

    @contextlib.contextmanager
    def archive(self, hash_: str, work: Path) -> Iterator[tuple[dict[str, Any], Path] | None]:
        from .pack import archive_name, pack_artifact

        aid = node_id(hash_, self.specs[hash_])
        if self.specs[hash_].get("kind") != "build" or not self.other.has_artifact(aid):
            yield None
            return
        description = pack_artifact(self.other, aid, work)
        path = work / archive_name(description)
        try:
            yield description, path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _label(node: Any, hash_: str) -> str:
    if isinstance(node, dict) and isinstance(node.get("id"), str):
        return node["id"]
    if isinstance(node, dict) and node.get("kind") == "profile":
        return f"profile {hash_}"
    return hash_


def read_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UserError(f"{where}: {MANIFEST} is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{where}: {MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise UserError(f"{where}: bundle format {manifest.get('format')!r} is not supported"
                        f" (this hdenv reads format {FORMAT}; hdenv {__version__})")
    return manifest


def _roots(manifest: dict[str, Any], where: str) -> list[dict[str, Any]]:
    roots = manifest.get("roots")
    if not isinstance(roots, list) or not roots:
        raise UserError(f"{where}: {MANIFEST} names no roots")
    out = []
    for root in roots:
        if not (isinstance(root, dict) and isinstance(root.get("hash"), str)
                and is_hash_like(root["hash"]) and root.get("kind") in ("profile", "artifact")):
            raise UserError(f"{where}: {MANIFEST} has a malformed root: {root!r}")
        out.append(root)
    return out


def store_sources(bundle: Bundle, srcstore: SourceStore,
                  keys: dict[str, str | None]) -> list[str]:
    """Copy the sources the bundle carries (hash-checked) into the store; returns what it got.

    `keys`: source key -> file name (kept for `hdenv mirror`).
    """
    from ..store.sources import parse_key  # here: see write_bundle

    got = []
    for key, filename in keys.items():
        kind, value = parse_key(key)
        if kind != "sha256" or srcstore.has(key):
            continue
        with bundle.open_source(value) as f:
            if f is None:
                continue
            try:
                srcstore.add_stream(f, value, filename)
            except BuildError as e:
                raise UserError(f"{bundle.label}: source {key} {e.message}") from None
            got.append(key)
    return got

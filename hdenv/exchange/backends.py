"""Where a binary cache lives: a directory, a static HTTP(S) server, or an OCI registry.

Directory layout (also what an HTTP(S) cache serves, e.g. `python -m
http.server` or an S3 bucket in front of a pushed directory):

    hdenv-cache.json             {"hdenv-cache": 1}: marks the cache (Nix's nix-cache-info)
    artifacts/HASH.json          one signed description per artifact (HASH: its id's hash)
    archives/SHA256.tar.zst      archives by content hash, shared by every description
    profiles/HASH.json           profile definitions, and the specs no description
                                 carries (host software, build-only tools) that
                                 `reproduce --from` needs: a spec, HASH checks it
    index.json                   what `cache list` shows over HTTP (no directory listing there)

An entry becomes visible when its description is written, after its archive,
each by temp file + rename: a reader never sees a description whose archive
is still on its way (as Nix uploads `.narinfo` last).

An OCI registry (`oci://HOST[:PORT]/REPO`) holds one tag per artifact (its
hash): a manifest (artifactType: the description's media type) whose one layer
is the archive, by digest, and whose annotation `org.hdenv.description` is the
signed description; its config is OCI's empty descriptor, one blob the whole
repository shares. So an artifact costs one blob upload and one manifest, and a
reader gets its description with one request; a description over
MAX_ANNOTATED bytes is the config blob instead, as every entry was before (read
still). A blob already in the repository is never uploaded again. Profiles (and
the other specs kept with them) are tags `profile-HASH` with the spec as config
and no layers. The registry is spoken to with the OCI distribution API over
plain HTTP for loopback hosts, HTTPS otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import io
import json
import os
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import HdenvError, UserError
from ..store.fsutil import atomic_write, file_lock, pending_file
from ..store.hashing import canonical_json
from ..validate import looks_like_hash
from . import keepalive
from .pack import ARCHIVE_SUFFIX
from .transfer import (
    Meter,
    MeteredReader,
    Sink,
    TransferRefused,
    cancellable,
    copy_stream,
    low_speed,
)

MARKER = "hdenv-cache.json"
INDEX = "index.json"
TIMEOUT = 30
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_DESCRIPTION = "application/vnd.hdenv.artifact.description.v1+json"
OCI_PROFILE = "application/vnd.hdenv.profile.v1+json"
OCI_ARCHIVE = "application/vnd.hdenv.artifact.archive.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
DESCRIPTION_ANNOTATION = "org.hdenv.description"
MAX_ANNOTATED = 256 << 10
"""Most bytes of a description carried in its manifest (registries refuse manifests over
a few MB; distribution's limit is 4 MiB); a bigger one is the manifest's config blob."""
LOOPBACK = ("localhost", "127.0.0.1", "::1")
MAX_METADATA = 16 << 20
"""Most bytes read of any unverified document (description, profile, index, manifest):
a cache answering 600 MB for a description must not cost gigabytes of memory."""


UPLOAD_PREFIX, UPLOAD_SUFFIX = ".upload-", ".tmp"
"""An archive a push is writing into a directory cache: `archives/.upload-XXXXXXXX.tmp`,
flocked by its push for as long as it lives (`_remove_stale_uploads`)."""
MAKING_SUFFIX = ".new"
"""The same file in the moment between its making and its locking: a sweep leaves it
alone unless it is older than MAKING_STALE_SECONDS (a push killed in that moment)."""
MAKING_STALE_SECONDS = 3600


class CacheUnavailable(HdenvError):
    """The cache cannot be used (unreachable, not a cache, garbled); `reason` is short."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class Cache:
    """What pull, push and list need from a cache."""

    url: str

    def check_writable(self) -> None:
        """Raise UserError if this kind of cache cannot be pushed to."""

    def is_cache(self) -> bool:
        """Whether the URL has a cache's layout (never raises): `reproduce --from` asks."""
        return True

    def description(self, hash_: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def described(self, hashes: list[str]) -> set[str]:
        """The hashes of `hashes` the cache has a description for (what a push skips)."""
        return {h for h in hashes if self.description(h) is not None}

    def fetch_archive(self, sha: str, out: Sink, meter: Meter, limit: int | None = None
                      ) -> tuple[int, str]:
        """Write the archive into `out`; returns (size, sha256) of what arrived.

        More than `limit` bytes (the signed archive_size) raise CacheUnavailable
        before they reach the disk.
        """
        raise NotImplementedError

    def has_archive(self, sha: str) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Entries put inside are listed together when it ends (where a cache keeps a list
        of them): a push of 200 artifacts rewrites index.json once, not 200 times."""
        yield

    def put_entry(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        """Upload archive (unless present) then description; True if the archive was sent."""
        sent = self.put_archive(description, archive, meter)
        self.put_description(description)
        return sent

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        """The first half of `put_entry`: the archive, unless the cache holds it (True if
        it was sent). Nobody reads it before its description is put: a push packs the
        next archive meanwhile (push.py)."""
        raise NotImplementedError

    def put_description(self, description: dict[str, Any]) -> None:
        """The second half of `put_entry`, once its archive is there: the entry exists."""
        raise NotImplementedError

    def profile(self, hash_: str) -> Any:
        raise NotImplementedError

    def put_profile(self, hash_: str, spec: Any) -> None:
        raise NotImplementedError

    def spec(self, hash_: str) -> Any:
        """A spec by hash, kept where profile definitions are (unchecked: the reader hashes it)."""
        return self.profile(hash_)

    def put_spec(self, hash_: str, spec: Any) -> None:
        self.put_profile(hash_, spec)

    def entries(self) -> list[dict[str, Any]]:
        """Every description in the cache (for `cache list`)."""
        raise NotImplementedError

    def spec_hashes(self) -> list[str]:
        """The hashes kept where profile definitions are (profiles and other specs)."""
        raise NotImplementedError

    def profile_entries(self) -> list[tuple[str, dict[str, Any]]]:
        """(hash, signed envelope) of every profile definition (for `cache list`).

        Specs kept beside them (host software, build-only tools) are left
        out by their kind; nothing here is verified: the listing names the
        signers, `reproduce --from` checks them.
        """
        out = []
        for hash_ in sorted(self.spec_hashes()):
            doc = self.profile(hash_)
            spec = doc.get("spec") if isinstance(doc, dict) else None
            if isinstance(spec, dict) and spec.get("kind") == "profile":
                out.append((hash_, doc))
        return out


def _json(data: bytes, url: str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CacheUnavailable(url, f"{what} is not valid JSON") from None


def _bounded(src: Any, url: str, what: str, network: bool) -> bytes:
    """At most MAX_METADATA bytes of `src`; more is a one-line refusal naming the cache."""
    buf = io.BytesIO()
    try:
        copy_stream(src, buf, limit=MAX_METADATA, network=network)
    except TransferRefused as e:
        if e.reason.startswith("sent more"):
            raise CacheUnavailable(url, f"{what} is larger than {MAX_METADATA} bytes;"
                                   " refused unread") from None
        raise CacheUnavailable(url, f"{what}: {e.reason}") from None
    return buf.getvalue()


def _read_file(path: Path, url: str, what: str) -> bytes:
    """A directory cache's metadata file, bounded like a download; FileNotFoundError passes."""
    with open(path, "rb") as f:
        return _bounded(f, url, what, network=False)


def _archive(src: Any, out: Sink, meter: Meter, limit: int | None, url: str,
             network: bool) -> tuple[int, str]:
    try:
        with cancellable(src):
            return copy_stream(src, out, meter, limit=limit, network=network)
    except TransferRefused as e:
        raise CacheUnavailable(url, f"archive: {e.reason}") from None


def _description_doc(description: dict[str, Any]) -> bytes:
    return json.dumps(description, indent=1, sort_keys=True).encode() + b"\n"


# -- a directory ------------------------------------------------------------


class DirectoryCache(Cache):
    def __init__(self, url: str, root: Path):
        self.url = url
        self.root = root
        self._unlisted: list[tuple[str, dict[str, Any]]] | None = None  # inside batch()
        self._swept = False

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self._unlisted = []
        try:
            yield
        finally:  # what was put before a failure is there, so it is listed
            unlisted, self._unlisted = self._unlisted, None
            if unlisted:
                self._index(lambda index: index["artifacts"].update(unlisted))

    def check_writable(self) -> None:
        self._check(True)

    def _check(self, creating: bool) -> None:
        marker = self.root / MARKER
        if marker.is_file():
            return
        if not creating:
            raise CacheUnavailable(self.url, f"not an hdenv cache (no {MARKER})")
        if self.root.exists() and any(self.root.iterdir()):
            raise UserError(f"{self.root} is not empty and not an hdenv cache (no {MARKER}):"
                            " push to a new or empty directory")
        atomic_write(marker, canonical_json({"hdenv-cache": 1}) + b"\n")

    def is_cache(self) -> bool:
        return (self.root / MARKER).is_file()

    def description(self, hash_: str) -> dict[str, Any] | None:
        self._check(False)
        path = self.root / "artifacts" / f"{hash_}.json"
        try:
            data = _read_file(path, self.url, f"artifacts/{hash_}.json")
        except FileNotFoundError:
            return None
        found: dict[str, Any] = _json(data, self.url, f"artifacts/{hash_}.json")
        return found

    def fetch_archive(self, sha: str, out: Sink, meter: Meter, limit: int | None = None
                      ) -> tuple[int, str]:
        try:
            with open(self.root / "archives" / f"{sha}{ARCHIVE_SUFFIX}", "rb") as f:
                return _archive(f, out, meter, limit, self.url, network=False)
        except FileNotFoundError:
            return 0, ""

    def has_archive(self, sha: str) -> bool:
        return (self.root / "archives" / f"{sha}{ARCHIVE_SUFFIX}").is_file()

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        self._check(True)
        sha = description["archive_sha256"]
        (self.root / "archives").mkdir(parents=True, exist_ok=True)
        if not self._swept:  # once a push: the folder holds every archive
            _remove_stale_uploads(self.root / "archives")
            self._swept = True
        if self.has_archive(sha):
            return False
        _upload(archive, self.root / "archives" / f"{sha}{ARCHIVE_SUFFIX}", meter)
        return True

    def put_description(self, description: dict[str, Any]) -> None:
        self._check(True)
        hash_ = description["id"].split("/")[2]
        atomic_write(self.root / "artifacts" / f"{hash_}.json", _description_doc(description))
        if self._unlisted is not None:
            self._unlisted.append((hash_, _summary(description)))
        else:
            self._index(lambda index: index["artifacts"].__setitem__(hash_, _summary(description)))

    def profile(self, hash_: str) -> Any:
        self._check(False)
        path = self.root / "profiles" / f"{hash_}.json"
        try:
            return _json(_read_file(path, self.url, f"profiles/{hash_}.json"), self.url,
                         f"profiles/{hash_}.json")
        except FileNotFoundError:
            return None

    def put_profile(self, hash_: str, spec: Any) -> None:
        self._check(True)
        atomic_write(self.root / "profiles" / f"{hash_}.json", canonical_json(spec) + b"\n")
        self._index(lambda index: index["profiles"].__setitem__(hash_, {}))

    def _index(self, change: Any) -> None:
        """Keep index.json (for HTTP readers) current; concurrent pushers take turns."""
        with file_lock(self.root / ".index.lock"):
            try:
                index = json.loads((self.root / INDEX).read_bytes())
            except (FileNotFoundError, ValueError):
                index = {}
            index.setdefault("artifacts", {})
            index.setdefault("profiles", {})
            change(index)
            atomic_write(self.root / INDEX, json.dumps(index, indent=1, sort_keys=True).encode())

    def spec_hashes(self) -> list[str]:
        self._check(False)
        folder = self.root / "profiles"
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        return [n[:-len(".json")] for n in names
                if n.endswith(".json") and looks_like_hash(n[:-len(".json")])]

    def entries(self) -> list[dict[str, Any]]:
        self._check(False)
        out = []
        folder = self.root / "artifacts"
        for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
            if name.endswith(".json") and not name.startswith("."):
                out.append(_json(_read_file(folder / name, self.url, f"artifacts/{name}"),
                                 self.url, f"artifacts/{name}"))
        return out


def _upload(archive: Path, dest: Path, meter: Meter) -> None:
    """Copy `archive` to `dest` through an upload file its lock marks as alive.

    The file is made as `.upload-X.new`, locked, and only then renamed to
    `.upload-X.tmp`, the name a sweep (`_remove_stale_uploads`, which every push
    runs first) removes once it can take the lock: made and locked in one step
    by name, a sweep in between (another push starting, or this push's other
    thread) took the unlocked file away and the push failed writing into it.
    The lock is held until the file is `dest`.
    """
    with pending_file(dest.parent, UPLOAD_PREFIX, MAKING_SUFFIX) as (out, making):
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)  # held while alive: not stale
        tmp = making.with_name(making.name[:-len(MAKING_SUFFIX)] + UPLOAD_SUFFIX)
        os.rename(making, tmp)
        try:
            with open(archive, "rb") as src:
                copy_stream(src, out, meter)
            out.flush()
            os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _remove_stale_uploads(folder: Path) -> None:
    """Remove the upload files of pushes that were killed (kill -9 runs no cleanup).

    A live push holds an exclusive flock on its upload file; the kernel drops
    it when the process dies, so a `.upload-*.tmp` whose lock we can take is
    stale. A `.upload-*.new` is one in the moment before its lock (`_upload`):
    it goes only once older than MAKING_STALE_SECONDS. The directory is opened
    once and every name is used relative to it, without following symlinks.
    """
    try:
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        for name in os.listdir(dfd):
            if not name.startswith(UPLOAD_PREFIX):
                continue
            if name.endswith(MAKING_SUFFIX):
                with contextlib.suppress(OSError):
                    made = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mtime
                    if time.time() - made < MAKING_STALE_SECONDS:
                        continue
            elif not name.endswith(UPLOAD_SUFFIX):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a push still writing it
            try:
                st = os.fstat(fd)
                with contextlib.suppress(OSError):
                    now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                        os.unlink(name, dir_fd=dfd)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)


def _summary(description: dict[str, Any]) -> dict[str, Any]:
    sigs = description.get("signatures", [])
    return {"id": description["id"], "archive_size": description["archive_size"],
            "signers": [s.get("key") for s in sigs]}


# -- static HTTP(S) ----------------------------------------------------------


def _open(method: str, target: str, url: str, data: Any = None,
          headers: dict[str, str] | None = None) -> Any:
    """The response to `method target` (on a kept-alive connection) with one-line errors
    naming the cache `url`; a 404 returns None."""
    try:
        return keepalive.request(method, target, data=data, headers=headers,
                                 timeout=min(TIMEOUT, low_speed()[1]))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise CacheUnavailable(url, f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise CacheUnavailable(url, f"unreachable ({reason})") from None


class HttpCache(Cache):
    """A directory cache served by any static web server: read-only, GET only."""

    def __init__(self, url: str):
        self.url = url
        self.base = url.rstrip("/") + "/"
        self._checked = False

    def _get(self, rel: str) -> bytes | None:
        resp = _open("GET", self.base + rel, self.url)
        if resp is None:
            return None
        with resp, cancellable(resp):
            return _bounded(resp, self.url, rel, network=True)

    def _check(self) -> None:
        if not self._checked:
            if self._get(MARKER) is None:
                raise CacheUnavailable(self.url, f"not an hdenv cache (no {MARKER})")
            self._checked = True

    def is_cache(self) -> bool:
        try:
            self._check()
        except CacheUnavailable:
            return False
        return True

    def description(self, hash_: str) -> dict[str, Any] | None:
        self._check()
        data = self._get(f"artifacts/{hash_}.json")
        return None if data is None else _json(data, self.url, f"artifacts/{hash_}.json")

    def fetch_archive(self, sha: str, out: Sink, meter: Meter, limit: int | None = None
                      ) -> tuple[int, str]:
        resp = _open("GET", f"{self.base}archives/{sha}{ARCHIVE_SUFFIX}", self.url)
        if resp is None:
            return 0, ""
        with resp:
            return _archive(resp, out, meter, limit, self.url, network=True)

    def has_archive(self, sha: str) -> bool:
        resp = _open("HEAD", f"{self.base}archives/{sha}{ARCHIVE_SUFFIX}", self.url)
        if resp is not None:
            resp.close()
        return resp is not None

    def check_writable(self) -> None:
        raise UserError(f"cannot push to {self.url}: HTTP caches are read-only; push to the"
                        " directory your web server serves, or to an oci:// registry")

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        self.check_writable()
        return False

    def put_description(self, description: dict[str, Any]) -> None:
        self.check_writable()

    def put_profile(self, hash_: str, spec: Any) -> None:
        self.check_writable()

    def spec_hashes(self) -> list[str]:
        self._check()
        data = self._get(INDEX)
        if data is None:
            raise CacheUnavailable(self.url, f"no {INDEX} to list")
        index = _json(data, self.url, INDEX)
        profiles = index.get("profiles") if isinstance(index, dict) else None
        return [h for h in profiles if isinstance(h, str) and looks_like_hash(h)] \
            if isinstance(profiles, dict) else []

    def profile(self, hash_: str) -> Any:
        self._check()
        data = self._get(f"profiles/{hash_}.json")
        return None if data is None else _json(data, self.url, f"profiles/{hash_}.json")

    def entries(self) -> list[dict[str, Any]]:
        self._check()
        data = self._get(INDEX)
        if data is None:
            raise CacheUnavailable(self.url, f"no {INDEX} to list")
        index = _json(data, self.url, INDEX)
        out = []
        if not isinstance(index, dict) or not isinstance(index.get("artifacts", {}), dict):
            raise CacheUnavailable(self.url, f"{INDEX} is not an index")
        for hash_ in sorted(index.get("artifacts", {})):
            found = self.description(hash_)
            if found is not None:
                out.append(found)
        return out


# -- OCI registry --------------------------------------------------------------


class OciCache(Cache):
    """The OCI distribution API: blobs by digest, one manifest per artifact tag."""

    def __init__(self, url: str, host: str, repo: str):
        self.url = url
        self.repo = repo
        hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
        scheme = "http" if hostname in LOOPBACK else "https"
        self.base = f"{scheme}://{host}/v2/{repo}"
        self._present: set[str] = set()  # blob digests known to be in the repository
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _blob_lock(self, digest: str) -> threading.Lock:
        """One lock per blob: threads pushing the same bytes (the empty config, two
        artifacts that pack alike) upload them once; two uploads of one digest at once
        got HTTP 400 from the registry."""
        with self._locks_lock:
            return self._locks.setdefault(digest, threading.Lock())

    def _request(self, method: str, url: str, data: Any = None,
                 headers: dict[str, str] | None = None) -> Any:
        return _open(method, url, self.url, data, headers)

    def _read(self, method: str, url: str, **kw: Any) -> tuple[bytes | None, Any]:
        resp = self._request(method, url, **kw)
        if resp is None:
            return None, None
        with resp, cancellable(resp):
            return _bounded(resp, self.url, url.removeprefix(self.base + "/"), network=True), \
                resp.headers

    def _manifest(self, tag: str) -> dict[str, Any] | None:
        data, _ = self._read("GET", f"{self.base}/manifests/{tag}",
                             headers={"Accept": OCI_MANIFEST})
        return None if data is None else _json(data, self.url, f"manifest {tag}")

    def _config(self, tag: str) -> Any:
        manifest = self._manifest(tag)
        return None if manifest is None else self._config_of(manifest, tag)

    def _config_of(self, manifest: dict[str, Any], tag: str) -> Any:
        try:
            digest = manifest["config"]["digest"]
        except (KeyError, TypeError):
            raise CacheUnavailable(self.url, f"manifest {tag} has no config") from None
        data, _ = self._read("GET", f"{self.base}/blobs/{digest}")
        if data is None:
            return None
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise CacheUnavailable(self.url, f"blob {digest} does not match its digest")
        return _json(data, self.url, f"blob {digest}")

    def description(self, hash_: str) -> dict[str, Any] | None:
        manifest = self._manifest(hash_)
        if manifest is None:
            return None
        annotations = manifest.get("annotations") if isinstance(manifest, dict) else None
        carried = annotations.get(DESCRIPTION_ANNOTATION) if isinstance(annotations, dict) \
            else None
        if isinstance(carried, str):  # checked as any description is: by its signature
            found: dict[str, Any] | None = _json(carried.encode(), self.url, f"manifest {hash_}")
        else:  # pushed before descriptions moved into the manifest, or too big for it
            found = self._config_of(manifest, hash_)
        return found

    def described(self, hashes: list[str]) -> set[str]:
        """One listing of the repository's tags instead of a request per artifact (a push
        of 200 to a new repository asked 200 times for nothing); a tagged one is still
        read, so an entry whose manifest is broken is pushed again."""
        tagged = set(self.tags())
        return super().described([h for h in hashes if h in tagged])

    def fetch_archive(self, sha: str, out: Sink, meter: Meter, limit: int | None = None
                      ) -> tuple[int, str]:
        resp = self._request("GET", f"{self.base}/blobs/sha256:{sha}")
        if resp is None:
            return 0, ""
        with resp:
            return _archive(resp, out, meter, limit, self.url, network=True)

    def has_archive(self, sha: str) -> bool:
        return self._has_blob(f"sha256:{sha}")

    def _has_blob(self, digest: str) -> bool:
        resp = self._request("HEAD", f"{self.base}/blobs/{digest}")
        if resp is not None:
            resp.close()
        return resp is not None

    def put_blob(self, digest: str, size: int, body: Callable[[], Any]) -> bool:
        """Upload a blob unless the repository holds it; whether it was sent.

        One request asks both: a POST that asks to mount the blob from this very
        repository is answered 201 when the blob is there and 202 with an upload
        session when it is not (a HEAD first was one request more per artifact). A
        registry that cannot mount answers 202 too: the bytes are sent again. Then the
        bytes (`body()`, opened only now) go in one PUT with their digest.
        """
        with self._blob_lock(digest):
            if digest in self._present:
                return False
            query = urllib.parse.urlencode({"mount": digest, "from": self.repo})
            resp = self._request("POST", f"{self.base}/blobs/uploads/?{query}", data=b"")
            if resp is None:
                raise CacheUnavailable(self.url, "the registry has no such repository")
            with resp, cancellable(resp):
                _bounded(resp, self.url, "blobs/uploads/", network=True)
                status, location = resp.status, resp.headers.get("Location")
            if status != 201:
                if not location:
                    raise CacheUnavailable(self.url, "the registry gave no upload location")
                location = urllib.parse.urljoin(self.base + "/", location)
                sep = "&" if "?" in location else "?"
                self._read("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}",
                           data=body(), headers={"Content-Type": "application/octet-stream",
                                                 "Content-Length": str(size)})
            self._present.add(digest)
            return status != 201

    def _put_manifest(self, tag: str, config: bytes, media: str,
                      layers: list[dict[str, Any]], annotations: dict[str, str],
                      artifact_type: str | None = None) -> None:
        digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
        self.put_blob(digest, len(config), lambda: config)  # the empty config: once a push
        manifest: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": media, "digest": digest, "size": len(config)},
            "layers": layers, "annotations": annotations}
        if artifact_type is not None:
            manifest["artifactType"] = artifact_type
        self._read("PUT", f"{self.base}/manifests/{tag}", data=canonical_json(manifest),
                   headers={"Content-Type": OCI_MANIFEST})

    def put_archive(self, description: dict[str, Any], archive: Path, meter: Meter) -> bool:
        with contextlib.ExitStack() as opened:
            return self.put_blob(f"sha256:{description['archive_sha256']}",
                                 os.stat(archive).st_size, lambda: MeteredReader(
                                     opened.enter_context(open(archive, "rb")), meter))

    def put_description(self, description: dict[str, Any]) -> None:
        """The artifact's tag: a manifest of its archive, carrying its description."""
        layer = {"mediaType": OCI_ARCHIVE, "digest": f"sha256:{description['archive_sha256']}",
                 "size": description["archive_size"]}
        doc = _description_doc(description)
        annotations = {"org.opencontainers.image.title": description["id"]}
        if len(doc) <= MAX_ANNOTATED:
            annotations[DESCRIPTION_ANNOTATION] = doc.decode()
            config, media = EMPTY_CONFIG, OCI_EMPTY
        else:
            config, media = doc, OCI_DESCRIPTION
        self._put_manifest(description["id"].split("/")[2], config, media, [layer], annotations,
                           artifact_type=OCI_DESCRIPTION)

    def profile(self, hash_: str) -> Any:
        return self._config(f"profile-{hash_}")

    def put_profile(self, hash_: str, spec: Any) -> None:
        self._put_manifest(f"profile-{hash_}", canonical_json(spec), OCI_PROFILE, [],
                           {"org.opencontainers.image.title": f"profile {hash_}"})

    def tags(self) -> list[str]:
        out: list[str] = []
        url: str | None = f"{self.base}/tags/list?n=1000"
        while url:
            data, headers = self._read("GET", url)
            if data is None:
                return out  # no repository yet: nothing pushed
            out += _json(data, self.url, "tag list").get("tags") or []
            link = headers.get("Link", "") if headers is not None else ""
            url = None
            if 'rel="next"' in link:
                url = urllib.parse.urljoin(self.base, link.split(";")[0].strip("<> "))
        return out

    def spec_hashes(self) -> list[str]:
        return [t[len("profile-"):] for t in self.tags()
                if t.startswith("profile-") and looks_like_hash(t[len("profile-"):])]

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for tag in sorted(self.tags()):
            if not tag.startswith("profile-"):
                found = self.description(tag)
                if found is not None:
                    out.append(found)
        return out


def open_cache(url: str) -> Cache:
    """A cache from its URL: a path or file://, http(s)://, or oci://HOST[:PORT]/REPO."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
        return HttpCache(url)
    if parts.scheme == "oci":
        repo = parts.path.strip("/")
        if not parts.netloc or not repo:
            raise UserError(f"cache URL {url!r}: expected oci://HOST[:PORT]/REPOSITORY")
        return OciCache(url, parts.netloc, repo)
    if parts.scheme == "file":
        return DirectoryCache(url, Path(urllib.parse.unquote(parts.path)))
    if parts.scheme and len(parts.scheme) > 1:
        raise UserError(f"cache URL {url!r}: unsupported scheme {parts.scheme!r}"
                        " (a directory, file://, http(s):// or oci://)")
    return DirectoryCache(url, Path(url).expanduser().absolute())

"""The travelling form of an artifact: one compressed archive plus a description.

Binary caches and bundles (`export --with-artifacts`) move artifacts between
stores in this one form, so a cache entry and a bundle entry are the same
bytes. The archive is a zstd-compressed tar of the artifact directory, named
by the sha256 of its compressed bytes (content-addressed: an archive is stored
and uploaded once, whatever refers to it). The description says what it is:

    {"format": 1, "id": "zlib/1.2.13/HASH", "spec": {...},
     "store_root": "/home/a/.local/share/hdenv",   # where it was built: relocation
     "references": ["ID", ...],                    # runtime deps, installed first
     "archive_sha256": "HEX", "archive_size": N, "compression": "zstd",
     "meta": {...},                                # artifact.json's own facts
     "verbatim": {"lib/libz.a": "HEX", ...},       # files relocation leaves alone
     "regular_files": N,                           # in the archive
     "unpacked_size": N,                           # bytes of the tar in the archive
     "hdenv_version": "0.1.0"}

`verbatim` lists the regular files of VERBATIM_MIN bytes or more in which the
packer found no mention of its store root, each with the sha256 its store's
manifest records: relocation leaves them as they are, so the installer
writes their bytes straight from the archive, without searching them for the
root or hashing them again (of a 54 MB install's time, the search and the
hashing were a quarter). What it records is what the signer says of bytes
the archive's hash already pins down: a signer can only lie about files it
ships anyway, and `verify` finds a digest that does not match. Small files
are left out (a quarter of the files of gcc and Python over 16 KiB hold 93%
of their bytes), and past VERBATIM_MAX the smallest: a profile's envelope
carries its artifacts' descriptions (push.py), and a reader takes 16 MiB of
one. A description without the field (an older hdenv, a container image)
gets every file searched and hashed. `regular_files` lets a puller judge
whether its installs are mostly bytes (substitute.py). `unpacked_size` bounds
what the archive may decompress to: with it, a download is installed as it
arrives and checked at the end (arriving.py); without it, checked first.

Nothing in a description is trusted until `install_packed` has checked it:
the spec must hash to the id, the archive to `archive_sha256`; whoever checks
signatures (caches, bundles) does so before calling it. An archive still
arriving is checked once its last member is written: until then its bytes
are only parsed (zstd, the strict tar reading below, Python's relocation of
text and strings) and written into the unregistered artifact directory;
patchelf runs, and the artifact is registered, only after. Installation follows
the store's rules (`install_artifact`: lock, leftover removal, metadata last,
read-only), so a kill at any moment leaves no half-installed artifact, and the
manifest records the installed, relocated files, so `verify` checks what is
really on disk. The extraction writes each file once with its final,
read-only mode and hashes the bytes as it writes them (a file patchelf
changed is read back): no second walk over the tree and its data. Nobody
else can change what it wrote meanwhile: every directory and file is the
installer's, and none lets the group write.

Extraction is streaming and strict: only directories, regular files and
symlinks, no `..` or absolute member names, no duplicates, no `.hdenv/`
metadata that the store writes itself, and every symlink is created after
every file is written, so a link in the archive can never redirect a write.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .. import __version__
from ..errors import UserError
from ..store import fdtree
from ..store.artifacts import dir_entry, file_entry, install_artifact, split_manifest_entry
from ..store.fsutil import pending_file
from ..store.hashing import CHUNK, sha256_fd, spec_hash
from ..store.layout import META_DIR, Store, split_id
from ..store.sharing import current_umask, read_only_mode
from .arriving import Arriving, Streamed
from .inflate import Inflating, TooLong
from .relocate import CannotRelocate, Relocator

FORMAT = 1
VERBATIM = "verbatim"  # the description field (see above)
VERBATIM_MIN = 16 << 10
VERBATIM_MAX = 20_000  # ~2.7 MB of description at most
REGULAR_FILES = "regular_files"
UNPACKED_SIZE = "unpacked_size"
COMPRESSION = "zstd"
ARCHIVE_SUFFIX = ".tar.zst"
ZSTD_LEVEL = 3  # zstd's own default: `tar | zstd` is what users compare with
# Metadata the store writes itself on install: never taken from an archive.
STORE_WRITTEN_META = frozenset({"artifact.json", "manifest.json", "spec.json"})
# artifact.json fields that describe this store's copy, not the artifact.
LOCAL_META = frozenset({"id", "kind", "runtime_deps", "created", "installed_from"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int], None]
"""progress(nbytes): called as bytes are read or written."""


class ArchiveRefused(UserError):
    """An archive or description that must not be installed; `reason` is short.

    Callers that have another way to get the artifact (a build from source,
    the next cache) print the reason and carry on.
    """

    def __init__(self, artifact: str, reason: str):
        self.artifact = artifact
        self.reason = reason
        super().__init__(f"{artifact}: {reason}")

    def __reduce__(self) -> tuple[type[ArchiveRefused], tuple[str, str]]:
        """As it was made: an install in a worker process raises it in the puller's."""
        return type(self), (self.artifact, self.reason)


def archive_name(description: dict[str, Any]) -> str:
    """File name of the archive a description refers to (content-addressed)."""
    return f"{description['archive_sha256']}{ARCHIVE_SUFFIX}"


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes], progress: Progress | None = None):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self.progress = progress

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.raw.write(data)
        if self.progress is not None:
            self.progress(len(data))
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


class _Counting:
    """What tarfile writes into the compressor, counted: the archive's unpacked size."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return int(self.raw.write(data))

    def tell(self) -> int:
        return self.size


# -- packing ----------------------------------------------------------------


def pack_artifact(store: Store, artifact_id: str, out_dir: Path,
                  progress: Progress | None = None, side_by_side: bool = False
                  ) -> dict[str, Any]:
    """Write `out_dir/<sha256>.tar.zst` for an artifact; return its unsigned description.

    zstd compresses with a thread per core, unless `side_by_side`: other artifacts are
    packed at the same time, so the cores are busy already and zstd's threads only cost
    their start (a third of the time of a small artifact's packing).

    Host artifacts are refused: they are links into one machine's system and
    are captured again on each machine, never shipped.
    """
    import zstandard

    meta = store.artifact_meta(artifact_id)
    if meta.get("kind") == "host":
        raise UserError(f"{artifact_id} is host software: it is captured on each machine,"
                        " never packed")
    spec = store.read_spec(split_id(artifact_id)[2])
    prefix = store.artifact_dir(artifact_id)
    recorded = _recorded_digests(prefix)
    root = (str(store.root).rstrip("/") or "/").encode("utf-8", "surrogateescape")
    verbatim: list[tuple[int, str, str]] = []  # (size, path, digest)
    regular_files = 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with pending_file(out_dir, ".pack-") as (raw, tmp):
        hashing: Any = _HashingWriter(raw, progress)
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0 if side_by_side else -1)
        # plain `w`, not the stream mode `w|`: that one appends each 16 KiB read to a buffer
        # it then slices (copying the buffer each time), a fifth of a big artifact's
        # packing; `w` writes straight to the compressor (the same bytes: tarfile asks
        # the file where it starts, once, and the compressor says 0)
        with cctx.stream_writer(hashing, closefd=False) as zst:
            unpacked: Any = _Counting(zst)  # a file to tarfile
            with tarfile.TarFile(fileobj=unpacked, mode="w", format=tarfile.PAX_FORMAT,
                                 copybufsize=CHUNK) as tar:
                for info, path in _members(prefix):
                    if info.isreg():
                        regular_files += 1
                        with open(path, "rb") as f:
                            scanned = _Mentions(f, root)
                            tar.addfile(info, scanned)
                        digest = recorded.get(info.name)
                        if digest is not None and not scanned.found and info.size >= VERBATIM_MIN:
                            verbatim.append((info.size, info.name, digest))
                    else:
                        tar.addfile(info)
        # not synced: every caller packs into a temporary directory, and what keeps the
        # archive (a directory cache, a bundle) writes and syncs a copy of its own
        raw.flush()
        digest = hashing.sha.hexdigest()
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_dir / f"{digest}{ARCHIVE_SUFFIX}")
    return {
        "format": FORMAT,
        "id": artifact_id,
        "spec": spec,
        "store_root": str(store.root),
        "references": sorted(meta.get("runtime_deps", [])),
        "archive_sha256": digest,
        "archive_size": hashing.size,
        "compression": COMPRESSION,
        "meta": {k: v for k, v in meta.items() if k not in LOCAL_META},
        VERBATIM: {rel: digest for _, rel, digest in sorted(verbatim, reverse=True)
                   [:VERBATIM_MAX]},
        REGULAR_FILES: regular_files,
        UNPACKED_SIZE: unpacked.size,
        "hdenv_version": __version__,
    }


class _Mentions:
    """A file read through to tar, noting whether `needle` occurs in it (across reads)."""

    def __init__(self, raw: IO[bytes], needle: bytes):
        self.raw = raw
        self.needle = needle
        self.found = False
        self._tail = b""  # the end of the last read, for a mention split between two

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if not self.found and data:
            keep = len(self.needle) - 1
            self.found = (self.needle in data
                          or (keep > 0 and self.needle in self._tail + data[:keep]))
            self._tail = data[-keep:] if keep else b""
        return data


def _recorded_digests(prefix: Path) -> dict[str, str]:
    """{relative path: sha256 hex} of the regular files the artifact's manifest records
    (none if it cannot be read: then the installer hashes every file itself)."""
    try:
        manifest = json.loads((prefix / META_DIR / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    out = {}
    for rel, entry in manifest.items():
        kind = split_manifest_entry(entry)[0] if isinstance(entry, str) else ""
        if kind.startswith("sha256:") and _HEX64.match(kind[7:]):
            out[rel] = kind[7:]
    return out


def _members(prefix: Path) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """Tar headers for an artifact tree, sorted, owner-neutral, hardlinks as files.

    Ownership and hardlinks are properties of one machine's copy, not of the
    artifact; leaving them out makes the same tree pack to the same bytes.
    """
    for dirpath, dirnames, filenames in fdtree.walk(prefix):
        rel_dir = os.path.relpath(dirpath, prefix)
        real_dirs = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        leaves = sorted([*filenames, *(d for d in dirnames if d not in real_dirs)])
        dirnames[:] = real_dirs  # a link to a directory is a leaf, never followed
        for name in leaves + real_dirs:
            path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel_dir == META_DIR and name in STORE_WRITTEN_META:
                continue
            st = os.lstat(path)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISREG(st.st_mode):
                info.type = tarfile.REGTYPE
                info.size = st.st_size
            else:
                raise UserError(f"{path}: cannot pack a device, fifo or socket")
            yield info, path


# -- checking ---------------------------------------------------------------


def check_description(description: Any) -> str:
    """Validate a description's shape before any of it is used; return the id.

    The spec must hash to the id, and every string that will become part of a
    path (name, version, references, archive name) must be a plain component.
    """
    if not isinstance(description, dict):
        raise ArchiveRefused("?", "description is not a JSON object")
    aid = description.get("id")
    if not isinstance(aid, str):
        raise ArchiveRefused("?", "description has no id")
    for key, kind in (("spec", dict), ("store_root", str), ("references", list),
                      ("archive_sha256", str), ("archive_size", int), ("format", int)):
        if not isinstance(description.get(key), kind):
            raise ArchiveRefused(aid, f"description field {key!r} is missing or malformed")
    if description["format"] != FORMAT:
        raise ArchiveRefused(aid, f"description format {description['format']} is not"
                                  f" {FORMAT} (made by a newer hdenv?)")
    if description.get("compression", COMPRESSION) != COMPRESSION:
        raise ArchiveRefused(aid, f"unsupported compression {description['compression']!r}")
    _check_id(aid, aid)
    for ref in description["references"]:
        if not isinstance(ref, str):
            raise ArchiveRefused(aid, "a reference is not a string")
        _check_id(aid, ref)
    spec = description["spec"]
    name, version, hash_ = split_id(aid)
    if spec_hash(spec) != hash_ or spec.get("name") != name or spec.get("version") != version:
        raise ArchiveRefused(aid, "its spec does not hash to its id")
    if not _HEX64.match(description["archive_sha256"]):
        raise ArchiveRefused(aid, "archive hash is not 64 hex digits")
    root = description["store_root"]
    if not root.startswith("/") or "\0" in root:
        raise ArchiveRefused(aid, f"store root {root!r} is not an absolute path")
    verbatim = description.get(VERBATIM, {})
    if not isinstance(verbatim, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and _HEX64.match(v)
            for k, v in verbatim.items()):
        raise ArchiveRefused(aid, f"description field {VERBATIM!r} is malformed")
    for key in (REGULAR_FILES, UNPACKED_SIZE):
        count = description.get(key, 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ArchiveRefused(aid, f"description field {key!r} is malformed")
    return aid


def _check_id(owner: str, aid: str) -> None:
    parts = aid.split("/")
    if len(parts) != 3 or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ArchiveRefused(owner, f"{aid!r} is not an artifact id")


def check_archive(description: dict[str, Any], archive: Path | bytes,
                  progress: Progress | None = None) -> None:
    """The archive (a file, or its bytes) must have exactly the described size and sha256."""
    size = len(archive) if isinstance(archive, bytes) else os.stat(archive).st_size
    _check_arrived(description, size, None)
    h = hashlib.sha256()
    with _reader(archive) as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    _check_arrived(description, size, h.hexdigest())


def _check_arrived(description: dict[str, Any], size: int, sha: str | None) -> None:
    """Refuse an archive of another size or (when known) sha256 than described."""
    aid = description["id"]
    if size != description["archive_size"]:
        raise ArchiveRefused(aid, f"hash mismatch: archive has {size} bytes,"
                                  f" {description['archive_size']} described")
    if sha is not None and sha != description["archive_sha256"]:
        raise ArchiveRefused(aid, f"hash mismatch: archive is sha256:{sha[:16]}...,"
                                  f" described sha256:{description['archive_sha256'][:16]}...")


Archive = Path | bytes | Streamed
"""An archive to install: its file, its bytes (a small download), or one still arriving."""


def _reader(archive: Path | bytes) -> IO[bytes]:
    return io.BytesIO(archive) if isinstance(archive, bytes) else open(archive, "rb")


def streams(description: dict[str, Any]) -> bool:
    """Whether the archive may be installed as it arrives: its unpacked size is signed."""
    return isinstance(description.get(UNPACKED_SIZE), int)


# -- installing -------------------------------------------------------------


def install_packed(store: Store, description: dict[str, Any], archive_path: Archive, *,
                   on_wait: Callable[[], None] | None = None,
                   source: str | None = None,
                   hashed: tuple[int, str] | None = None, ensured: bool = False) -> bool:
    """Check, relocate and install a packed artifact; True if it was installed now.

    `archive_path` is the archive's file, its bytes (a small download kept in
    memory), or a download still arriving (arriving.py: only for a description
    that `streams`; checked once it has all arrived, before patchelf runs on any
    file and before the artifact is registered). Raises ArchiveRefused (nothing
    written) for a description or archive that fails a check, a runtime reference
    this store lacks, or content that cannot be relocated into this store's root.
    `source` (a cache URL, a bundle) is recorded in artifact.json as where the
    artifact came from.
    `hashed` is the (size, sha256) the caller measured while it wrote
    `archive_path` (a download into the private tmp dir, which nobody else can
    change): when it is what the description says, the archive is not read a
    second time to check it. `ensured`: as `install_artifact`'s.
    """
    aid = check_description(description)
    if store.has_artifact(aid):
        return False
    missing = [r for r in description["references"] if not store.has_artifact(r)]
    if missing:
        raise ArchiveRefused(aid, f"needs {missing[0]}, which this store lacks")
    streamed: Streamed | None = None
    if isinstance(archive_path, Streamed):
        streamed = archive_path
        if not streams(description):
            raise ArchiveRefused(aid, f"its description has no {UNPACKED_SIZE!r} to stream it")
    elif hashed != (description["archive_size"], description["archive_sha256"]):
        check_archive(description, archive_path)
    old_root = description["store_root"].rstrip("/")
    moves = {}  # references this store takes from an upstream store live under its root
    for ref in description["references"]:
        where = store.artifact_store(ref)
        if where is not None and where is not store:
            moves[f"{old_root}/artifacts/{ref}"] = str(where.own_artifact_dir(ref))
    relocator = Relocator(old_root, str(store.root), moves)
    if not ensured:
        store.ensure()  # first: in a group store it sets the group's umask
    umask = current_umask()  # once, for the extraction and install_artifact alike

    def arrived() -> None:
        """The streamed archive's check: every byte of it, as signed."""
        assert streamed is not None
        streamed.pipe.drop()  # what is left (the tar's padding) is only hashed
        _check_arrived(description, *streamed.arrived())

    def populate(_prefix: Path, _lock_fd: int, prefix_fd: int) -> dict[str, str]:
        try:
            return _extract(archive_path, prefix_fd, relocator, aid, store.shared, umask,
                            description.get(VERBATIM, {}), description.get(UNPACKED_SIZE),
                            arrived if streamed is not None else None)
        except Exception:
            if streamed is not None:
                arrived()  # a failed download or a mismatch is the reason, if there was one
            raise

    meta = description.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    extra = {k: relocator.json_value(v) for k, v in meta.items() if k not in LOCAL_META}
    # where it came from, but not the root it was built in: that root is a path on
    # someone else's machine, and after relocation no byte of it is left in the store
    extra["installed_from"] = {"source": source, "archive_sha256": description["archive_sha256"]}
    _, installed = install_artifact(store, description["spec"], populate,
                                    runtime_deps=list(description["references"]),
                                    extra_meta=extra, on_wait=on_wait, ensured=True,
                                    umask=umask, spawns=False)
    return installed


def _member_parts(aid: str, name: str) -> tuple[str, ...]:
    path = PurePosixPath(name)
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if path.is_absolute() or not parts or ".." in parts or any("\0" in p for p in parts):
        raise ArchiveRefused(aid, f"archive member {name!r} is not a plain relative path")
    if len(parts) == 2 and parts[0] == META_DIR and parts[1] in STORE_WRITTEN_META:
        raise ArchiveRefused(aid, f"archive member {name!r} is metadata the store writes")
    return parts


class _Dirs:
    """Descriptors of the directories an extraction makes below the artifact's own (open
    as `top`), each reached from the nearest one already open, one name at a time,
    without following a link. Up to KEPT stay open (an archive lists a directory's
    entries together, and the directories are visited again to close them)."""

    KEPT = 64

    def __init__(self, top: int):
        self.top = top
        self.fds: dict[tuple[str, ...], int] = {}

    def at(self, parts: tuple[str, ...]) -> int:
        if not parts:
            return self.top
        found = self.fds.get(parts)
        if found is not None:
            return found
        fd = fdtree.open_dir(parts[-1], dir_fd=self.at(parts[:-1]))
        if len(self.fds) >= self.KEPT:  # the oldest goes: never a parent still in use here
            os.close(self.fds.pop(next(iter(self.fds))))
        self.fds[parts] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _extract(archive_path: Archive, prefix_fd: int, relocator: Relocator, aid: str,
             shared: bool, umask: int, verbatim: dict[str, str], unpacked: int | None,
             arrived: Callable[[], None] | None) -> dict[str, str]:
    """Stream the archive into the artifact directory open as `prefix_fd` (empty, ours,
    under the artifact lock), through descriptors: in a group store a member may rename
    `artifacts/NAME/VERSION` away and plant links, and nothing written here may follow
    them (`install_artifact` then refuses to register it). Returns the manifest
    (`manifest_at`'s form) of what it wrote, every entry below the top already read-only
    but `.hdenv/`, which `install_artifact` fills and closes.

    `unpacked`: the signed size of the tar, which the stream may not pass.
    `arrived`: for an archive still arriving, its check, called once every member is
    written; files patchelf must change wait for it (patchelf is not run on bytes
    that are not checked yet)."""
    import zstandard

    dirs: set[tuple[str, ...]] = {()}
    seen: set[tuple[str, ...]] = set()
    links: list[tuple[tuple[str, ...], str]] = []
    unpatched: list[tuple[tuple[str, ...], tarfile.TarInfo]] = []  # for after `arrived`
    opened = _Dirs(prefix_fd)
    manifest: dict[str, str] = {}

    def record(parts: tuple[str, ...], entry: str) -> None:
        if parts[0] != META_DIR:  # the store's own metadata: never in the manifest
            manifest["/".join(parts)] = entry

    def parent_of(parts: tuple[str, ...]) -> int:
        # Parents are directories we made in this extraction, never anything else:
        # symlinks do not exist yet and a regular file cannot become a directory.
        for i in range(1, len(parts)):
            sub = parts[:i]
            if sub not in dirs:
                if sub in seen:
                    raise ArchiveRefused(aid, f"archive member {'/'.join(parts)!r} goes"
                                              " through a file or link")
                os.mkdir(sub[-1], 0o755, dir_fd=opened.at(sub[:-1]))
                dirs.add(sub)
        return opened.at(parts[:-1])

    try:
        with _tar_of(archive_path, unpacked) as tar:
            for member in tar:
                parts = _member_parts(aid, member.name)
                if parts in seen or parts in dirs:
                    raise ArchiveRefused(aid, f"archive member {member.name!r} appears twice")
                parent = parent_of(parts)
                if member.isdir():
                    # never the group's to write while it is filled (a group store's
                    # archive says 0775: a member could swap it for a link meanwhile);
                    # its group bits come when it is made read-only
                    os.mkdir(parts[-1], (member.mode & 0o755) | 0o700, dir_fd=parent)
                    dirs.add(parts)
                    continue
                seen.add(parts)
                if member.issym():
                    links.append((parts, member.linkname))
                elif member.isreg() and member.sparse is None:
                    entry = _write_member(parent, parts, _data_of(tar, member, aid), member,
                                          relocator, umask, shared,
                                          verbatim.get("/".join(parts)), arrived is None)
                    if entry is None:
                        unpatched.append((parts, member))
                    else:
                        record(parts, entry)
                else:
                    raise ArchiveRefused(aid, f"archive member {member.name!r} is a hardlink,"
                                              " device, fifo or sparse file")
            if arrived is not None:
                arrived()
            for parts, member in unpatched:
                record(parts, _patch_member(opened.at(parts[:-1]), parts, member, relocator,
                                            umask, shared))
            for parts, target in links:
                moved = relocator.link_target(target)
                os.symlink(moved, parts[-1], dir_fd=opened.at(parts[:-1]))
                record(parts, f"link:{moved}")
            # read-only last, deepest first: a directory is closed once all in it is written
            for parts in sorted(dirs - {(), (META_DIR,)}, key=lambda p: (-len(p), p)):
                record(parts, dir_entry(_close_dir(opened.at(parts[:-1]), parts[-1], shared)))
    except (tarfile.TarError, zstandard.ZstdError, EOFError, TooLong) as e:
        raise ArchiveRefused(aid, f"corrupt archive: {e}") from None
    except CannotRelocate as e:
        raise ArchiveRefused(aid, f"cannot relocate: {e}") from None
    finally:
        opened.close()
    return manifest


@contextlib.contextmanager
def _tar_of(archive: Archive, unpacked: int | None) -> Iterator[tarfile.TarFile]:
    """The archive's tar, decompressed in a thread as it is read (inflate.py), read as a
    whole tar (`r:`): tarfile's streaming mode copies every block through its buffer."""
    with contextlib.ExitStack() as stack:
        raw: Any = archive.pipe if isinstance(archive, Streamed) else stack.enter_context(
            _reader(archive))
        inflating = stack.enter_context(contextlib.closing(Inflating(raw, unpacked)))
        if isinstance(raw, Arriving):  # first, so that a decompressor waiting for bytes ends
            stack.callback(raw.drop)
        yield stack.enter_context(tarfile.open(fileobj=inflating, mode="r:"))


def _data_of(tar: tarfile.TarFile, member: tarfile.TarInfo, aid: str) -> list[memoryview]:
    """A file's bytes, straight from the decompressed stream (tarfile's `extractfile`
    copies them once more through a buffered reader, a tenth of a big install), as
    views of the chunks they span."""
    stream = tar.fileobj
    assert isinstance(stream, Inflating)
    stream.seek(member.offset_data)
    parts = stream.read_parts(member.size)
    if sum(len(p) for p in parts) != member.size:
        raise ArchiveRefused(aid, f"corrupt archive: {member.name!r} is cut short")
    return parts


def _write_member(parent: int, parts: tuple[str, ...], content: list[memoryview],
                  member: tarfile.TarInfo, relocator: Relocator, umask: int, shared: bool,
                  verbatim_digest: str | None, patch_now: bool) -> str | None:
    """Write one file, read-only from the start (an open descriptor writes whatever the
    mode says); its manifest entry. The mode is what `install_artifact` would give the
    file made with the archive's bits and this umask, so the manifest is the same.
    A file the description lists as verbatim (`verbatim_digest`) is written as it
    came, with that digest; any other is relocated and hashed. Unless `patch_now`, a
    file patchelf must change is left writable and None returned: `_patch_member`
    finishes it once the archive is checked."""
    rel = "/".join(parts)
    digest = verbatim_digest
    if digest is None:
        data = relocator.file_data(rel, b"".join(content))
        content = [memoryview(data)]
        if not relocator.needs_patch(rel):
            digest = hashlib.sha256(data).hexdigest()
    made, final = _member_modes(member, umask, shared)
    patched = relocator.needs_patch(rel)  # patchelf opens it by path: writable until then
    fd = os.open(parts[-1], (os.O_RDWR if patched else os.O_WRONLY) | os.O_CREAT | os.O_EXCL
                 | os.O_NOFOLLOW | os.O_CLOEXEC, made if patched else final, dir_fd=parent)
    try:
        _write_all(fd, content)
        if patched and not patch_now:
            return None
        return _finish_member(fd, rel, digest, member, relocator, final, patched, umask)
    finally:
        os.close(fd)


def _patch_member(parent: int, parts: tuple[str, ...], member: tarfile.TarInfo,
                  relocator: Relocator, umask: int, shared: bool) -> str:
    """Finish a file `_write_member` left for patchelf; its manifest entry."""
    fd = os.open(parts[-1], os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        return _finish_member(fd, "/".join(parts), None, member, relocator,
                              _member_modes(member, umask, shared)[1], True, umask)
    finally:
        os.close(fd)


def _member_modes(member: tarfile.TarInfo, umask: int, shared: bool) -> tuple[int, int]:
    """(the mode a file is made with, the read-only one it ends with): what
    `install_artifact` gives a file a build made with the archive's bits and this umask,
    so that the manifest is the one the pushing store wrote."""
    made = ((member.mode & 0o777) | 0o600) & ~umask
    return made, read_only_mode(made, False, shared)


def _finish_member(fd: int, rel: str, digest: str | None, member: tarfile.TarInfo,
                   relocator: Relocator, final: int, patched: bool, umask: int) -> str:
    # patchelf is another process and takes a path: the file just written, by descriptor
    relocator.after_write(rel, Path(f"/proc/{os.getpid()}/fd/{fd}"))
    if digest is None:  # as patchelf left it
        digest = sha256_fd(fd)
    os.utime(fd, (member.mtime, member.mtime))
    if patched or (final & ~umask) != final:  # the umask took bits the mode needs
        os.fchmod(fd, final)
    return file_entry(digest, final)


_IOV_MAX = 1024  # Linux's limit on the buffers one writev takes


def _write_all(fd: int, parts: list[memoryview]) -> None:
    """Every byte of `parts`, in order, in as few system calls as the kernel allows."""
    pending = [p for p in parts if len(p)]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        while written:
            if written >= len(pending[0]):
                written -= len(pending.pop(0))
            else:
                pending[0] = pending[0][written:]
                written = 0


def _close_dir(parent: int, name: str, shared: bool) -> int:
    """Make the directory `name` (made by this extraction) read-only as `install_artifact`
    would; its mode as it is now."""
    fd = fdtree.open_dir(name, dir_fd=parent)
    try:
        mode = read_only_mode(os.fstat(fd).st_mode, True, shared)
        os.fchmod(fd, mode)
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)

"""Safe unpacking of source archives (tar.gz, tar.bz2, tar.xz, tar, zip, single files).

Source archives come from the internet, so every member is checked before a
single byte is written: absolute paths, `..` components, links that resolve
outside the tree, device and fifo members are refused with a UserError that
names the archive and the member. The whole member list is validated first,
then extracted in two phases: directories, files and hardlinks, and symlinks
last. Because no symlink exists while files are written, and a member whose
path passes through a symlink member is refused, extraction can never be
redirected outside `dest` by a link planted earlier in the same archive.
If extraction fails half-way, everything it created is removed again.

The stdlib `tarfile`/`zipfile` are used for parsing only; the checks here do
not rely on the `data` extraction filter of Python 3.12+.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import lzma
import os
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import UserError

COPY_CHUNK = 1 << 20
_SNIFF_BYTES = 1 << 16  # enough compressed input for the first tar header
_SNIFF_OUT = 1 << 20  # decompressed bytes looked at, at most
MAX_LINK_HOPS = 40

_MAGIC_GZIP = b"\x1f\x8b"
_MAGIC_BZIP2 = b"BZh"
_MAGIC_XZ = b"\xfd7zXZ\x00"
_MAGIC_ZIP = (b"PK\x03\x04", b"PK\x05\x06")

Opener = Callable[[], IO[bytes]]
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, zlib.error)


@dataclass
class _Entry:
    """One member, format-independent, with its path after `strip`."""

    kind: str  # "dir", "file", "symlink", "hardlink"
    name: str  # the member name as in the archive (for messages)
    parts: tuple[str, ...]  # output path components
    mode: int = 0o644
    mtime: float = 0.0
    link: str = ""  # symlink target, or hardlink target path (stripped, "/"-joined)
    opener: Opener | None = None


@dataclass
class _Plan:
    entries: list[_Entry] = field(default_factory=list)


def detect_format(path: Path) -> str:
    """One of "tar.gz", "tar.bz2", "tar.xz", "tar", "zip", "file", by magic bytes.

    A compressed stream that does not hold a tar (e.g. `patch.gz`) counts as a
    single file, copied as-is: the user asked for that exact file.
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(_MAGIC_ZIP):
        return "zip"
    for magic, decompressor, fmt in (
        (_MAGIC_GZIP, lambda: zlib.decompressobj(wbits=31), "tar.gz"),
        (_MAGIC_BZIP2, bz2.BZ2Decompressor, "tar.bz2"),
        (_MAGIC_XZ, lzma.LZMADecompressor, "tar.xz"),
    ):
        if head.startswith(magic):
            inner = _first_block(path, decompressor, fmt)
            return fmt if _looks_like_tar(inner) else "file"
    return "tar" if _looks_like_tar(head) else "file"


def _first_block(path: Path, decompressor: Callable[[], Any], fmt: str) -> bytes:
    """The first 512 decompressed bytes (fewer for a short stream).

    Read with a decompressor object, not gzip.open: a truncated archive is an
    error saying so (or its first header still shows it is a tar, and
    extraction reports the truncation), never a plain file. bzip2 needs a
    whole block (up to 900 kB) before it yields anything, hence the loop.
    """
    kind = {"tar.gz": "gzip", "tar.bz2": "bzip2", "tar.xz": "xz"}[fmt]
    d = decompressor()
    out = b""
    with open(path, "rb") as f:
        while len(out) < 512 and not d.eof:
            chunk = f.read(_SNIFF_BYTES)
            if not chunk:
                raise UserError(f"{path}: truncated {kind} data (the file ends before the"
                                " compressed stream does)")
            try:
                out += d.decompress(chunk, _SNIFF_OUT)
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as e:
                raise UserError(f"{path}: corrupt {kind} data: {e}") from None
    return out[:512]


def _looks_like_tar(block: bytes) -> bool:
    """A tar header: the ustar magic, or (old v7 tars) a header with a valid checksum."""
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def unpack(archive: Path, dest: Path, *, strip: int = 0, filename: str | None = None) -> None:
    """Unpack `archive` into `dest` (created if missing), refusing anything unsafe.

    A non-archive is copied to `dest/<filename>` (default: the archive's own
    name). `strip` drops that many leading path components; members with no
    components left are skipped, like `tar --strip-components`.
    """
    archive = Path(archive)
    dest = Path(dest)
    if strip < 0:
        raise UserError(f"strip must be >= 0, got {strip}")
    fmt = detect_format(archive)
    dest.mkdir(parents=True, exist_ok=True)
    if fmt == "file":
        _copy_single(archive, dest, filename or archive.name)
        return
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                _extract(archive, dest, _zip_plan(archive, zf, strip))
        else:
            mode = {"tar.gz": "r:gz", "tar.bz2": "r:bz2", "tar.xz": "r:xz", "tar": "r:"}[fmt]
            with tarfile.open(archive, mode) as tf:  # type: ignore[call-overload]
                _extract(archive, dest, _tar_plan(archive, tf, strip))
    except _CORRUPT as e:
        raise UserError(f"{archive}: corrupt {fmt} archive: {e}") from None


def keep_file(archive: Path, dest: Path, filename: str) -> None:
    """Copy `archive` as the single file `dest/filename`, unpacking nothing."""
    dest.mkdir(parents=True, exist_ok=True)
    _copy_single(archive, dest, filename)


def _copy_single(archive: Path, dest: Path, filename: str) -> None:
    if not filename or "/" in filename or filename in (".", ".."):
        raise UserError(f"{archive}: bad file name for a single-file source: {filename!r}")
    target = dest / filename
    if target.is_symlink() or target.is_dir():
        raise UserError(f"{archive}: {target} already exists and is not a regular file")
    exec_bits = os.stat(archive).st_mode & 0o111
    with open(archive, "rb") as src, _open_new(target, 0o644 | exec_bits) as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)


# -- building the plan ------------------------------------------------------


def _split(archive: Path, name: str, member: str | None = None) -> tuple[str, ...]:
    """Path components of a member name (or of `member`'s hardlink target `name`);
    refuses absolute names and `..`."""
    what = repr(name) if member is None else f"{member!r}: hardlink target {name!r}"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise UserError(f"{archive}: refusing member {what}: absolute path")
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if ".." in parts:
        raise UserError(f"{archive}: refusing member {what}: '..' in path")
    return parts


def _strip(parts: tuple[str, ...], strip: int) -> tuple[str, ...]:
    return parts[strip:] if len(parts) > strip else ()


def _tar_plan(archive: Path, tf: tarfile.TarFile, strip: int) -> _Plan:
    plan = _Plan()
    for m in tf.getmembers():
        parts = _strip(_split(archive, m.name), strip)
        if m.isdir():
            kind = "dir"
        elif m.isreg():
            kind = "file"
        elif m.issym():
            kind = "symlink"
        elif m.islnk():
            kind = "hardlink"
        else:
            raise UserError(f"{archive}: refusing member {m.name!r}: device, fifo or special file")
        if not parts:
            continue
        entry = _Entry(kind, m.name, parts, mode=m.mode, mtime=float(m.mtime))
        if kind == "symlink":
            entry.link = m.linkname
        elif kind == "hardlink":
            target = _strip(_split(archive, m.linkname, m.name), strip)
            if not target:
                raise UserError(
                    f"{archive}: refusing member {m.name!r}: hardlink to {m.linkname!r} "
                    "outside the unpacked tree"
                )
            entry.link = "/".join(target)
        elif kind == "file":
            entry.opener = _tar_opener(tf, m)
        plan.entries.append(entry)
    return plan


def _tar_opener(tf: tarfile.TarFile, m: tarfile.TarInfo) -> Opener:
    def open_member() -> IO[bytes]:
        f = tf.extractfile(m)
        assert f is not None  # regular files always have data
        return f

    return open_member


def _zip_plan(archive: Path, zf: zipfile.ZipFile, strip: int) -> _Plan:
    plan = _Plan()
    for info in zf.infolist():
        parts = _strip(_split(archive, info.filename), strip)
        unix_mode = info.external_attr >> 16
        fmt = stat.S_IFMT(unix_mode)
        if info.is_dir() or fmt == stat.S_IFDIR:
            kind = "dir"
        elif fmt == stat.S_IFLNK:
            kind = "symlink"
        elif fmt in (0, stat.S_IFREG):
            kind = "file"
        else:
            raise UserError(
                f"{archive}: refusing member {info.filename!r}: device, fifo or special file"
            )
        if not parts:
            continue
        # Zips made on Windows carry no unix mode: fall back to plain defaults.
        perm = stat.S_IMODE(unix_mode) or (0o755 if kind == "dir" else 0o644)
        try:
            mtime = time.mktime((*info.date_time, 0, 0, -1))
        except (OverflowError, ValueError):
            mtime = 0.0
        entry = _Entry(kind, info.filename, parts, mode=perm, mtime=mtime)
        if kind == "symlink":
            entry.link = zf.read(info).decode("utf-8", "surrogateescape")
        elif kind == "file":
            entry.opener = _zip_opener(zf, info)
        plan.entries.append(entry)
    return plan


def _zip_opener(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Opener:
    return lambda: zf.open(info)


# -- validating the plan ----------------------------------------------------


def _validate(archive: Path, plan: _Plan) -> list[_Entry]:
    """Check every member against the others; return the entries to extract.

    Later members replace earlier ones with the same path (tar semantics), so
    a symlink that is overwritten by a file never gets created.
    """
    links: dict[tuple[str, ...], _Entry] = {}
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    for e in plan.entries:
        for i in range(1, len(e.parts)):
            prefix = e.parts[:i]
            if prefix in links:
                raise UserError(
                    f"{archive}: refusing member {e.name!r}: its path goes through the "
                    f"symlink {links[prefix].name!r}"
                )
            if prefix in files:
                raise UserError(f"{archive}: refusing member {e.name!r}: a parent is a file")
            dirs.add(prefix)
        if e.kind == "symlink":
            if e.parts in dirs:
                raise UserError(
                    f"{archive}: refusing member {e.name!r}: symlink would replace a directory"
                )
            files.discard(e.parts)
            links[e.parts] = e
            continue
        links.pop(e.parts, None)
        if e.kind == "dir":
            if e.parts in files:
                raise UserError(f"{archive}: refusing member {e.name!r}: directory replaces a file")
            dirs.add(e.parts)
        else:
            if e.parts in dirs:
                raise UserError(f"{archive}: refusing member {e.name!r}: file replaces a directory")
            if e.kind == "hardlink" and tuple(e.link.split("/")) not in files:
                raise UserError(
                    f"{archive}: refusing member {e.name!r}: hardlink target {e.link!r} "
                    "is not a regular file earlier in the archive"
                )
            files.add(e.parts)
    targets = {parts: e.link for parts, e in links.items()}
    for parts, e in links.items():
        if not _stays_inside(parts[:-1], e.link, targets):
            raise UserError(
                f"{archive}: refusing member {e.name!r}: symlink to {e.link!r} "
                "points outside the unpacked tree"
            )
    final_links = set(map(id, links.values()))
    return [e for e in plan.entries if e.kind != "symlink" or id(e) in final_links]


def _stays_inside(
    start: tuple[str, ...], target: str, links: dict[tuple[str, ...], str]
) -> bool:
    """Resolve `target` from directory `start` as the kernel would, through the
    archive's own symlinks, and tell whether it ever climbs above the root.

    A purely lexical check is not enough: `d/up -> ..` is harmless alone, but
    `d/x -> up/../..` then leaves the tree. A loop never resolves, so it cannot
    escape and is accepted (the kernel reports ELOOP if it is ever used).
    """
    if target.startswith("/"):
        return False
    stack = list(start)
    queue = target.split("/")
    hops = 0
    while queue:
        part = queue.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return False
            stack.pop()
            continue
        stack.append(part)
        link = links.get(tuple(stack))
        if link is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return True
            if link.startswith("/"):
                return False
            stack.pop()
            queue = link.split("/") + queue
    return True


# -- extracting -------------------------------------------------------------


class _Extractor:
    """Writes a validated plan; remembers what it created to undo it on failure."""

    def __init__(self, archive: Path, dest: Path):
        self.archive = archive
        self.dest = dest
        self.created: list[Path] = []
        self.real_dirs: set[Path] = {dest}
        self.dir_times: list[tuple[Path, float]] = []

    def run(self, entries: list[_Entry]) -> None:
        steps = {"dir": self._dir, "file": self._file, "hardlink": self._hardlink,
                 "symlink": self._symlink}
        symlinks_last = [e for e in entries if e.kind != "symlink"] + \
            [e for e in entries if e.kind == "symlink"]
        for e in symlinks_last:
            try:
                steps[e.kind](e)
            except OSError as err:
                if err.errno != errno.ENAMETOOLONG:
                    raise
                raise UserError(f"{self.archive}: cannot unpack member {e.name!r}: its name is"
                                " too long for this file system") from None
        for path, mtime in reversed(self.dir_times):
            with contextlib.suppress(OSError):
                os.utime(path, (mtime, mtime))

    def undo(self) -> None:
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    os.rmdir(path)
                else:
                    path.unlink()

    def _parent(self, e: _Entry) -> Path:
        """Create the parent directories, refusing any that exists as a non-directory
        (including a symlink that was already in `dest`)."""
        path = self.dest
        for part in e.parts[:-1]:
            path = path / part
            if path not in self.real_dirs:
                self._ensure_dir(e, path)
        return path

    def _ensure_dir(self, e: _Entry, path: Path) -> None:
        """Create `path` as a real directory, or accept one that exists; refuse anything else."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            self.created.append(path)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise UserError(
                    f"{self.archive}: refusing member {e.name!r}: {path} exists and is not "
                    "a directory"
                )
        self.real_dirs.add(path)

    def _clear(self, e: _Entry, path: Path) -> None:
        """Remove a previous non-directory at `path` (an earlier duplicate member)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise UserError(
                f"{self.archive}: refusing member {e.name!r}: {path} exists and is a directory"
            )
        path.unlink()

    def _dir(self, e: _Entry) -> None:
        path = self._parent(e) / e.parts[-1]
        self._ensure_dir(e, path)
        # Keep the owner able to write, so later members and cleanup work.
        os.chmod(path, (e.mode & 0o777) | 0o700)
        self.dir_times.append((path, e.mtime))

    def _file(self, e: _Entry) -> None:
        path = self._parent(e) / e.parts[-1]
        self._clear(e, path)
        assert e.opener is not None
        with e.opener() as src, _open_new(path, (e.mode & 0o777) | 0o600) as out:
            self.created.append(path)
            shutil.copyfileobj(src, out, COPY_CHUNK)
        # Build systems compare mtimes (configure vs configure.ac): keep them.
        os.utime(path, (e.mtime, e.mtime), follow_symlinks=False)

    def _hardlink(self, e: _Entry) -> None:
        path = self._parent(e) / e.parts[-1]
        self._clear(e, path)
        target = self.dest.joinpath(*e.link.split("/"))
        try:
            os.link(target, path, follow_symlinks=False)
        except OSError:
            shutil.copy2(target, path, follow_symlinks=False)
        self.created.append(path)

    def _symlink(self, e: _Entry) -> None:
        path = self._parent(e) / e.parts[-1]
        self._clear(e, path)
        os.symlink(e.link, path)
        self.created.append(path)


@contextlib.contextmanager
def _open_new(path: Path, mode: int) -> Iterator[IO[bytes]]:
    """Open for writing without following a symlink at `path`, with `mode` exactly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as f:
        yield f


def _extract(archive: Path, dest: Path, plan: _Plan) -> None:
    entries = _validate(archive, plan)
    ex = _Extractor(archive, dest)
    try:
        ex.run(entries)
    except BaseException:
        ex.undo()
        raise

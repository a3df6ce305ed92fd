"""Reproducible tar layers: sorted entries, fixed owners and times, normalised modes.

A layer's bytes depend only on the paths, link targets, contents and the
executable bit of what it holds: owners are root, every time is 0, and modes
are 0755 (directories, executables) or 0644, whatever the store's umask or
sharing mode was. Two stores holding the same artifact at the same path
therefore give byte-identical layers, so registries share them and packing
the same profile twice gives the same digest. Parent directories are added
as entries so a layer unpacks on its own; the digest is computed as the tar
is written.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DIR_MODE = 0o755
EXEC_MODE = 0o755
FILE_MODE = 0o644
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One member: `name` is the path in the image without the leading '/'."""

    name: str
    kind: str  # "dir", "file" or "link"
    mode: int = DIR_MODE
    target: str = ""  # a link's target
    source: Path | None = None  # a file's content, read when the tar is written
    beneath: Path | None = None  # if set, `source` is relative to this tree, opened without
    #                              following any symlink on the way (see open_beneath)
    data: bytes | None = None  # or its content in memory
    transform: Callable[[bytes], bytes] | None = None  # applied to `source`'s bytes (relocation)


def file_mode(st_mode: int) -> int:
    """0755 when anyone may execute the file, else 0644."""
    return EXEC_MODE if st_mode & 0o111 else FILE_MODE


def directory(name: str, mode: int = DIR_MODE) -> Entry:
    return Entry(name.strip("/"), "dir", mode)


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """The entries plus a directory entry for every missing parent, sorted by path.

    The first entry of a name wins, so a caller's own mode for a directory
    (such as /tmp's 1777) is kept.
    """
    out: dict[str, Entry] = {}
    for e in entries:
        if e.name and e.name not in out:
            out[e.name] = e
    for name in list(out):
        parent = os.path.dirname(name)
        while parent and parent not in out:
            out[parent] = directory(parent)
            parent = os.path.dirname(parent)
    return [out[n] for n in sorted(out)]


def _info(e: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = e.mode
    if e.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif e.kind == "link":
        info.type = tarfile.SYMTYPE
        info.linkname = e.target
    return info


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path, rel: str, *, directory: bool) -> int:
    """An fd on `root/rel`, every component opened with O_NOFOLLOW relative to the last.

    In a group-shared store another member may rename entries inside artifact
    directories: a directory swapped for a symlink to /root between the walk
    and the read must not make hdenv read (and put into an image) what the
    link points at. A component that is a symlink fails with ELOOP/ENOTDIR.
    """
    fd = os.open(root, DIR_FLAGS)
    parts = [p for p in rel.split("/") if p]
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = DIR_FLAGS if (directory or not last) else (
                os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_source(e: Entry) -> IO[bytes]:
    """Open a file to copy without following a symlink swapped in at its place."""
    assert e.source is not None
    if e.beneath is not None:
        fd = open_beneath(e.beneath, str(e.source), directory=False)
    else:
        fd = os.open(e.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file any more", str(e.source))
    return os.fdopen(fd, "rb")


def write_layer(entries: Iterable[Entry], out: IO[bytes]) -> tuple[str, int]:
    """Write the entries (and their parents) as a tar to `out`; returns (sha256 hex, size)."""
    sink = _Hashing(out)
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      encoding="utf-8") as tar:
        for e in with_parents(entries):
            info = _info(e)
            if e.kind != "file":
                tar.addfile(info)
            elif e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, _BytesReader(e.data))
            elif e.transform is not None:
                with _read_source(e) as f:
                    data = e.transform(f.read())
                info.size = len(data)
                tar.addfile(info, _BytesReader(data))
            else:
                with _read_source(e) as f:
                    info.size = os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)
    return sink.sha.hexdigest(), sink.size


class _BytesReader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        chunk = bytes(self.data[self.pos:end])
        self.pos = end
        return chunk

"""Moving bytes: streaming copies that hash as they go, and progress on a terminal.

Everything a cache sends or receives passes through `copy_stream`, so a
download is hashed while it is written (no second read to check it) and the
user sees bytes and rate on a terminal. Off a terminal nothing is drawn: logs
get one line per artifact from the caller instead.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import IO, Protocol, TextIO

CHUNK = 1 << 20


class Meter(Protocol):
    def update(self, nbytes: int) -> None: ...

    def close(self) -> None: ...


class NullMeter:
    def update(self, nbytes: int) -> None:
        pass

    def close(self) -> None:
        pass


def human_size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} GB"  # pragma: no cover - loop always returns


class TerminalMeter:
    """`label  12.3 MB / 50.0 MB  41.2 MB/s` redrawn in place, at most 10 times a second."""

    def __init__(self, label: str, total: int | None, stream: TextIO = sys.stderr):
        self.label = label
        self.total = total
        self.stream = stream
        self.done = 0
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self.drawn >= 0.1:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-6)
        total = f" / {human_size(self.total)}" if self.total else ""
        line = f"{self.label}  {human_size(self.done)}{total}  {human_size(rate)}/s"
        self.stream.write("\r\033[K" + line[:100])
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()


def meter_for(label: str, total: int | None, stream: TextIO = sys.stderr) -> Meter:
    """A live meter on a terminal, nothing elsewhere."""
    return TerminalMeter(label, total, stream) if stream.isatty() else NullMeter()


def copy_stream(src: IO[bytes], dst: IO[bytes], meter: Meter | None = None) -> tuple[int, str]:
    """Copy everything; returns (bytes, sha256 hex) of what was copied."""
    sha = hashlib.sha256()
    size = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            break
        sha.update(chunk)
        dst.write(chunk)
        size += len(chunk)
        if meter is not None:
            meter.update(len(chunk))
    return size, sha.hexdigest()


class MeteredReader:
    """A file wrapper that reports reads, so an upload body shows its progress."""

    def __init__(self, raw: IO[bytes], meter: Meter):
        self.raw = raw
        self.meter = meter

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.meter.update(len(data))
        return data

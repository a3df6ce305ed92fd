"""Moving bytes: streaming copies that hash as they go, and progress on a terminal.

Everything a cache sends or receives passes through `copy_stream`, so a
download is hashed while it is written (no second read to check it) and the
user sees bytes and rate on a terminal. Off a terminal nothing is drawn: logs
get one line per artifact from the caller instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any, Protocol, TextIO

CHUNK = 1 << 20
LOW_SPEED_TIME = 30.0
"""Seconds over which a download must average LOW_SPEED_LIMIT bytes/s (curl's --speed-time)."""
LOW_SPEED_LIMIT = 1024
"""Bytes per second below which a download is abandoned (curl's --speed-limit)."""


class TransferRefused(Exception):
    """A download was abandoned: too slow, stalled, too big, or cancelled; `reason` is short."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def low_speed() -> tuple[int, float]:
    """(bytes/s, seconds): HDENV_CACHE_LOW_SPEED_LIMIT / HDENV_CACHE_LOW_SPEED_TIME or defaults.

    A cache that trickles a byte every few seconds never trips a socket
    timeout, so a download also needs an average-rate deadline.
    """
    try:
        limit = int(os.environ.get("HDENV_CACHE_LOW_SPEED_LIMIT", LOW_SPEED_LIMIT))
        seconds = float(os.environ.get("HDENV_CACHE_LOW_SPEED_TIME", LOW_SPEED_TIME))
    except ValueError:
        return LOW_SPEED_LIMIT, LOW_SPEED_TIME
    return max(0, limit), max(0.1, seconds)


_cancelled = threading.Event()
_active: set[socket.socket] = set()
_active_lock = threading.Lock()


def cancel_all() -> None:
    """Stop every download now (a signal arrived): shut their sockets so blocked reads return.

    Called from the main thread by the build's signal handling; download
    threads then raise TransferRefused("cancelled") instead of waiting on.
    """
    _cancelled.set()
    with _active_lock:
        socks = list(_active)
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def reset_cancel() -> None:
    _cancelled.clear()


def _socket_of(resp: Any) -> socket.socket | None:
    """The socket under an http.client response (None for anything else)."""
    raw = getattr(getattr(resp, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


@contextlib.contextmanager
def cancellable(resp: Any) -> Iterator[None]:
    """While the block runs, `cancel_all()` can interrupt reads from `resp`."""
    sock = _socket_of(resp)
    if sock is None:
        yield
        return
    with _active_lock:
        _active.add(sock)
    try:
        if _cancelled.is_set():
            raise TransferRefused("cancelled")
        yield
    finally:
        with _active_lock:
            _active.discard(sock)


class Sink(Protocol):
    """Where a download writes: a file, a buffer, or the pipe to an install (arriving.py)."""

    def write(self, data: bytes, /) -> int: ...


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


class SharedLine:
    """One terminal line for several downloads in flight: artifacts done of all, bytes
    (of the sizes known so far), rate and time left, instead of lines drawn over each
    other by threads."""

    def __init__(self, count: int, stream: TextIO = sys.stderr, verb: str = "fetching"):
        self.count = count
        self.verb = verb
        self.finished = 0
        self.expected = 0
        self.lock = threading.Lock()
        self.line = TerminalMeter("", None, stream)

    def part(self, total: int) -> Meter:
        with self.lock:
            self.expected += total
        return _Part(self)

    def update(self, nbytes: int) -> None:
        with self.lock:
            line = self.line
            rate = line.done / max(time.monotonic() - line.started, 1e-6)
            left = max(self.expected - line.done - nbytes, 0) / rate if rate > 0 else 0
            line.label = (f"{self.verb} {self.finished}/{self.count} artifacts"
                          f" of {human_size(self.expected)}, {left:.0f}s left")
            line.update(nbytes)

    def finish_one(self) -> None:
        with self.lock:
            self.finished += 1
            if self.finished == self.count:
                self.line.close()


class _Part:
    def __init__(self, shared: SharedLine):
        self.shared = shared

    def update(self, nbytes: int) -> None:
        self.shared.update(nbytes)

    def close(self) -> None:
        self.shared.finish_one()


def meter_for(label: str, total: int | None, stream: TextIO = sys.stderr) -> Meter:
    """A live meter on a terminal, nothing elsewhere."""
    return TerminalMeter(label, total, stream) if stream.isatty() else NullMeter()


def copy_stream(src: IO[bytes] | Any, dst: Sink, meter: Meter | None = None, *,
                limit: int | None = None, network: bool = False) -> tuple[int, str]:
    """Copy everything; returns (bytes, sha256 hex) of what was copied.

    `limit`: more bytes than this raise TransferRefused before they are
    written (a signed size, or a bound on unverified metadata). `network`:
    reads return what has arrived (read1), and a download averaging less than
    the low-speed limit over the low-speed time, or cancelled, is abandoned.
    """
    sha = hashlib.sha256()
    size = 0
    speed, window = low_speed()
    started = time.monotonic()
    window_bytes = 0
    read = getattr(src, "read1", src.read) if network else src.read
    while True:
        try:
            chunk = read(CHUNK if limit is None else max(1, min(CHUNK, limit + 1 - size)))
        except (TimeoutError, OSError) as e:
            if _cancelled.is_set():
                raise TransferRefused("cancelled") from None
            if isinstance(e, TimeoutError):
                raise TransferRefused(f"stalled: nothing arrived for {window:g}s") from None
            raise
        if network and _cancelled.is_set():
            raise TransferRefused("cancelled")
        if not chunk:
            break
        if limit is not None and size + len(chunk) > limit:
            raise TransferRefused(f"sent more than the {limit} bytes expected; stopped reading")
        if network:
            window_bytes += len(chunk)
            now = time.monotonic()
            if now - started >= window:
                if window_bytes < speed * window:
                    raise TransferRefused(f"too slow: {window_bytes} bytes in {now - started:.0f}s"
                                          f" (under {speed} bytes/s)")
                started, window_bytes = now, 0
        sha.update(chunk)
        if network:
            before = time.monotonic()
            dst.write(chunk)
            started += time.monotonic() - before  # a reader slow to take it is no slow server
        else:
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

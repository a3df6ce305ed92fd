"""Streaming copies and the terminal progress meter (exchange/transfer.py)."""

from __future__ import annotations

import hashlib
import io
import time

import pytest

from hdenv.exchange.transfer import (
    MeteredReader,
    NullMeter,
    SharedLine,
    TerminalMeter,
    TransferRefused,
    copy_stream,
    human_size,
    meter_for,
)


def test_copy_hashes_what_it_copies_and_reports_progress() -> None:
    data = bytes(range(256)) * 10_000
    out = io.BytesIO()
    seen: list[int] = []

    class Record(NullMeter):
        def update(self, nbytes: int) -> None:
            seen.append(nbytes)

    assert copy_stream(io.BytesIO(data), out, Record()) == (len(data),
                                                            hashlib.sha256(data).hexdigest())
    assert out.getvalue() == data and sum(seen) == len(data)
    reader = MeteredReader(io.BytesIO(b"abcdef"), Record())
    assert reader.read(4) == b"abcd" and reader.read() == b"ef"


def test_the_meter_shows_bytes_and_rate_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    meter = meter_for("downloading zlib", 2_000_000, tty)
    assert isinstance(meter, TerminalMeter)
    meter.update(1_500_000)
    time.sleep(0.11)
    meter.update(10)
    meter.close()
    text = tty.getvalue()
    assert "\r\033[Kdownloading zlib  1.5 MB / 2.0 MB  " in text and "MB/s" in text
    assert text.endswith("\r\033[K")
    assert isinstance(meter_for("x", 1, io.StringIO()), NullMeter)  # a log file gets nothing
    assert [human_size(n) for n in (5, 1500, 2_500_000, 3e9)] == ["5 B", "1.5 kB", "2.5 MB",
                                                                   "3.0 GB"]


def test_one_line_for_several_transfers_shows_artifacts_bytes_rate_and_time_left() -> None:
    tty = io.StringIO()
    line = SharedLine(2, tty, "pushing")
    first, second = line.part(1_000_000), line.part(3_000_000)
    first.update(1_000_000)
    first.close()
    time.sleep(0.11)
    second.update(1_000_000)  # 2 of 4 MB done: as long again to go
    text = tty.getvalue()
    last = text.rsplit("\r\033[K", 1)[-1]
    assert last.startswith("pushing 1/2 artifacts of 4.0 MB, ") and "s left" in last, last
    assert "2.0 MB" in last and "MB/s" in last, last
    second.close()
    assert tty.getvalue().endswith("\r\033[K")  # all done: the line is cleared


class Trickle(io.BytesIO):
    """A source that hands out 1 KiB a read, each after `pause` seconds, as a slow socket."""

    def __init__(self, data: bytes, pause: float):
        super().__init__(data)
        self.pause = pause

    def read1(self, size: int | None = -1) -> bytes:
        time.sleep(self.pause)
        return self.read(1024 if size is None or size < 0 else min(1024, size))


class SlowReader(io.BytesIO):
    """A destination that takes 0.2 s a write, as the pipe to an install that is busy."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        time.sleep(0.2)
        return super().write(data)


def test_time_spent_waiting_for_the_reader_is_not_held_against_the_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The low-speed limit judges the server: 8 KiB/s asked for over 0.3 s windows. A
    server sending 1 KiB a millisecond passes even when the pipe takes 0.2 s a write;
    one sending 1 KiB every 0.2 s does not."""
    monkeypatch.setenv("HDENV_CACHE_LOW_SPEED_LIMIT", "8192")
    monkeypatch.setenv("HDENV_CACHE_LOW_SPEED_TIME", "0.3")
    data = b"x" * 8192
    assert copy_stream(Trickle(data, 0.001), SlowReader(), network=True)[0] == len(data)
    with pytest.raises(TransferRefused, match="too slow"):
        copy_stream(Trickle(data, 0.2), io.BytesIO(), network=True)

"""inflate.Inflating: a zstd stream decompressed in a thread, read front to back."""

from __future__ import annotations

import io
import os
import random
import threading
import time

import pytest
import zstandard

from hdenv.exchange import inflate
from hdenv.exchange.inflate import Inflating


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inflate, "CHUNK", 1000)
    monkeypatch.setattr(inflate, "AHEAD", 3000)


def test_reads_of_any_size_and_forward_seeks_give_the_original_bytes(small_window: None
                                                                      ) -> None:
    data = os.urandom(50_000) + b"\0" * 50_000
    rng = random.Random(7)
    with Inflating(io.BytesIO(zstandard.ZstdCompressor().compress(data))) as f:
        pos, got = 0, []
        while pos < len(data):
            if rng.random() < 0.2:  # skip ahead, as tarfile does past what it does not read
                pos = f.seek(pos + rng.randrange(1, 5000))
                if pos >= len(data):
                    break
                got.append((pos, b""))
            size = rng.choice([1, 512, 999, 1000, 1001, 7000])
            piece = f.read(size)
            got.append((pos, piece))
            assert piece == data[pos:pos + size]
            pos += len(piece)
            assert f.tell() == pos
        assert f.read(10) == b""  # the end
    assert sum(len(p) for _, p in got) > 50_000



def test_read_parts_hands_out_views_of_the_chunks_a_read_spans(small_window: None) -> None:
    data = os.urandom(20_000)
    with Inflating(io.BytesIO(zstandard.ZstdCompressor().compress(data))) as f:
        assert b"".join(f.read_parts(1500)) == data[:1500]
        parts = f.read_parts(4700)  # from the middle of one chunk into the sixth
        assert all(isinstance(p, memoryview) for p in parts) and len(parts) == 6
        assert b"".join(parts) == data[1500:6200]
        f.read(10_000)  # the window moves on: views handed out before stay whole
        assert b"".join(parts) == data[1500:6200]
        assert b"".join(f.read_parts(-1)) == data[16_200:]
        assert f.read_parts(5) == []


def test_seeking_back_within_the_held_chunks_works_further_back_is_refused(
        small_window: None) -> None:
    data = bytes(range(256)) * 100
    with Inflating(io.BytesIO(zstandard.ZstdCompressor().compress(data))) as f:
        f.seek(10_000)
        assert f.read(600) == data[10_000:10_600]
        f.seek(10_000 - 512)  # a block back: still held
        assert f.read(512) == data[10_000 - 512:10_000]
        with pytest.raises(io.UnsupportedOperation, match="gone past it"):
            f.seek(0)


def test_a_corrupt_stream_raises_where_the_reader_reaches_it(small_window: None) -> None:
    good = zstandard.ZstdCompressor().compress(b"".join(b"line %d\n" % i for i in range(20000)))
    bad = good[:len(good) // 2] + bytes(b ^ 0xFF for b in good[len(good) // 2:])
    with Inflating(io.BytesIO(bad)) as f, pytest.raises(zstandard.ZstdError, match="corrupt"):
        while f.read(1000):
            pass


def test_memory_stays_within_the_window_and_close_stops_the_thread(small_window: None
                                                                    ) -> None:
    """The thread stops AHEAD bytes past the reader (so a stream of any size takes a
    window of memory), and close() ends it even while it waits for the reader."""
    data = b"x" * 10_000_000  # compresses to almost nothing
    f = Inflating(io.BytesIO(zstandard.ZstdCompressor().compress(data)))
    time.sleep(0.2)
    held = sum(len(c) for c in f._chunks)
    assert 3000 <= held <= 3000 + 2 * inflate.CHUNK
    assert f.read(5) == b"xxxxx"
    before = {t.name for t in threading.enumerate()}
    assert "hdenv-inflate" in before
    f.close()
    assert not f._thread.is_alive()

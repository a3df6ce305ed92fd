"""A zstd archive decompressed in a thread while the tar in it is read and written out.

`zstd -d | tar -x` is two processes: one decompresses while the other writes
files. An install did both in turn (of 0.225 s for 54 MB, 0.072 s was zstd),
and zstd leaves the GIL, so a thread decompresses here ahead of the reader.

The reader is tarfile's random-access mode (`r:`; its streaming mode copies
every block through its buffer), but the extraction reads the tar front to
back: headers, then each file's data, in order. So only a window of what was
decompressed is kept: what lies before the reader's position is dropped, and
the thread waits while it is `AHEAD` bytes ahead. Memory stays bounded
whatever the archive decompresses to, and nothing is read twice.

`limit` bounds what an archive not yet checked may decompress to (arriving.py):
a stream that goes past it fails as a corrupt one does.
"""

from __future__ import annotations

import bisect
import io
import threading
from typing import IO

CHUNK = 1 << 20
AHEAD = 32 << 20
"""Decompressed bytes the thread may hold beyond the reader's position."""


class TooLong(ValueError):
    """The stream decompresses to more than its limit."""


class Inflating(io.RawIOBase):
    """A forward-only, seekable view of `source` decompressed by zstd in a thread.

    `seek` may go forward, or back within what is still held (tarfile steps back
    over a header block now and then); further back is an error, as is any
    decompression error, raised in the reader's thread at the position it hit.
    """

    def __init__(self, source: IO[bytes], limit: int | None = None):
        import zstandard

        super().__init__()
        self._reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=CHUNK)
        self._starts: list[int] = []  # offset of each held chunk
        self._chunks: list[bytes] = []
        self._end = 0  # offset just past the last chunk decompressed
        self._pos = 0
        self._wanted = 0  # the end of what the reader waits for (a read may pass AHEAD)
        self._done = False
        self._error: BaseException | None = None
        self._stop = False
        self._limit = limit
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._inflate, name="hdenv-inflate",
                                        daemon=True)
        self._thread.start()

    def _inflate(self) -> None:
        try:
            while True:
                with self._changed:
                    while (self._end - self._pos > AHEAD and self._end >= self._wanted
                           and not self._stop):
                        self._changed.wait()
                    if self._stop:
                        return
                data = self._reader.read(CHUNK)  # without the lock: zstd leaves the GIL
                with self._changed:
                    if not data:
                        self._done = True
                        self._changed.notify_all()
                        return
                    if self._limit is not None and self._end + len(data) > self._limit:
                        raise TooLong(f"decompresses to more than the {self._limit}"
                                      " bytes described")
                    self._starts.append(self._end)
                    self._chunks.append(data)
                    self._end += len(data)
                    self._changed.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the reader, raised there
            with self._changed:
                self._error = e
                self._done = True
                self._changed.notify_all()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("an inflating archive has no known end")
        with self._changed:
            held = self._starts[0] if self._starts else self._end
            if offset < held:
                raise io.UnsupportedOperation(f"cannot seek back to {offset}: gone past it")
            self._pos = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        parts = self.read_parts(size)
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    def read_parts(self, size: int | None = -1) -> list[memoryview]:
        """`read`, as views of the decompressed chunks it spans: a file's bytes go to
        `os.writev` without being joined into one copy first (a tenth of a big
        install's time went to that join)."""
        with self._changed:
            if size is None or size < 0:
                self._wanted = 1 << 62
                self._changed.notify_all()
                while not self._done:
                    self._changed.wait()
                size = max(0, self._end - self._pos)
            self._wanted = self._pos + size
            self._changed.notify_all()
            while self._end < self._wanted and not self._done:
                self._changed.wait()
            if self._end < self._wanted and self._error is not None:
                raise self._error
            parts = self._views(self._pos, min(self._pos + size, self._end))
            self._pos += sum(len(p) for p in parts)
            self._forget_before(self._pos)
            self._changed.notify_all()
        return parts

    def _views(self, start: int, stop: int) -> list[memoryview]:
        """Views, not copies: a chunk dropped from the window lives on in its views."""
        if stop <= start:
            return []
        i = bisect.bisect_right(self._starts, start) - 1
        parts = []
        while start < stop:
            chunk, base = self._chunks[i], self._starts[i]
            piece = memoryview(chunk)[start - base:min(stop - base, len(chunk))]
            parts.append(piece)
            start += len(piece)
            i += 1
        return parts

    def _forget_before(self, offset: int) -> None:
        """Drop chunks that end before `offset`, but the last one: tarfile may step back
        over a block it just read."""
        keep = bisect.bisect_right(self._starts, offset) - 1
        if keep > 1:
            del self._starts[:keep - 1], self._chunks[:keep - 1]

    def close(self) -> None:
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        self._chunks.clear()
        self._starts.clear()
        super().close()

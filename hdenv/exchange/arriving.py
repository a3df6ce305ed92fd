"""An archive installed while it downloads, registered only once its hash matched.

A pull of a few big archives waited for each to arrive whole before it began
to decompress it, while the baseline (`curl | zstd -d | tar -x`) does all three
at once. Here a download thread writes into an `Arriving` pipe and the
installer reads from it as the bytes come, into the private, not yet
registered artifact directory that `install_artifact` gives it, exactly as
Nix unpacks a NAR while it hashes it.

What makes that safe is the order of the end: `Streamed.arrived` is called
(by pack.py's check) after the last file is written and before anything is run
on the files or the artifact is registered. It waits for the download, and a
size or sha256 that is not the signed one refuses the install (the directory is removed as after
any failed install). Until then the bytes are only parsed by zstd and the
strict tar reader (pack.py), and relocated by Python's byte replacement: patchelf
runs after the check. What they can make us write is bounded by the signed
`unpacked_size` (inflate.py stops beyond it), and the pipe holds at most HOLD
bytes: the download waits for the installer, not the other way round.

When the install fails, the download's own failure (a dead server, a hash
mismatch) is the reason given, if it had one: a cut stream first shows up as
a corrupt tar.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

HOLD = 8 << 20
"""Bytes downloaded but not yet read by the installer, at most: then the download waits."""


class Abandoned(Exception):
    """Raised in the download by `Arriving.stop`: nobody wants the rest."""


class Arriving:
    """A one-way pipe of bytes between two threads: `write` and `end` from the download,
    `read` from the decompressor. `drop` (the reader gave up) makes every later write
    succeed at once and keep nothing, so the download still runs to its end and its
    hash says whether the bytes were what was signed; after `stop` a write raises
    Abandoned, which ends the download."""

    def __init__(self, hold: int = HOLD):
        self._hold = hold
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._ended = False
        self._dropped = False
        self._stopped = False
        self._changed = threading.Condition()

    def write(self, data: bytes) -> int:
        with self._changed:
            while self._held >= self._hold and not self._dropped:
                self._changed.wait()
            if self._stopped:
                raise Abandoned("the install ended before the download")
            if not self._dropped and data:
                self._chunks.append(bytes(data))
                self._held += len(data)
                self._changed.notify_all()
        return len(data)

    def end(self) -> None:
        """No more bytes: the reader sees the end of the stream once it has the rest."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
        self.drop()

    def drop(self) -> None:
        with self._changed:
            self._dropped = True
            self._chunks.clear()
            self._held = 0
            self._changed.notify_all()

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all until the end if negative), fewer only at the end."""
        with self._changed:
            while not self._chunks and not self._ended and not self._dropped:
                self._changed.wait()
            if not self._chunks:
                return b""
            if size < 0:
                while not self._ended and not self._dropped:
                    self._changed.wait()
                size = self._held
            parts = []
            wanted = size
            while self._chunks and wanted > 0:
                chunk = self._chunks.popleft()
                if len(chunk) > wanted:
                    self._chunks.appendleft(chunk[wanted:])
                    chunk = chunk[:wanted]
                parts.append(chunk)
                wanted -= len(chunk)
            got = size - wanted
            self._held -= got
            self._changed.notify_all()
        return parts[0] if len(parts) == 1 else b"".join(parts)


class Streamed:
    """An archive on its way: `pipe` to read it from, `download` the thread writing it,
    which leaves its (size, sha256) in `result`, or the exception it raised in `error`."""

    def __init__(self, fetch: Callable[[Arriving], tuple[int, str]], name: str):
        """`fetch(pipe)` writes the archive into `pipe`, in `download` once it is started."""
        self.pipe = Arriving()
        self.result: tuple[int, str] | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = fetch(self.pipe)
            except BaseException as e:  # noqa: BLE001 - raised again in the installer
                self.error = e
            finally:
                self.pipe.end()

        self.download = threading.Thread(target=run, name=f"hdenv-download-{name}",
                                         daemon=True)

    @classmethod
    def start(cls, fetch: Callable[[Arriving], tuple[int, str]], name: str) -> Streamed:
        """`fetch(pipe)` in a thread of its own, started now."""
        streamed = cls(fetch, name)
        streamed.download.start()
        return streamed

    def arrived(self) -> tuple[int, str]:
        """Wait for the download to end; its (size, sha256), or the exception it raised."""
        self.download.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def abandon(self) -> None:
        """Nobody reads any more (the install ended, or never started: the artifact was
        there already): end the download and wait for it."""
        self.pipe.stop()
        self.download.join()

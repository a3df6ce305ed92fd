"""Taking an artifact from a binary cache instead of building it (Nix's substituters).

For each artifact a build or reproduce is missing, the configured caches are
asked in order. A cache's copy is installed only if its description is
well-formed, describes exactly the wanted id, is signed by a trusted key, and
its archive arrives with the described size and sha256; relocation into this
store's root must be possible too. Anything else is one line saying why
("not found", "untrusted key", "bad signature", "hash mismatch", "cannot
relocate", "unreachable") and the caller builds from source.

An archive whose description signs its unpacked size is installed as it
arrives, into the artifact's unregistered directory, and checked at its end,
before patchelf runs and before it is registered (arriving.py); any other
goes to memory or a private temporary file in the store's `tmp/<uid>/`
(removed by the next build if this run is killed) and is checked there. The
artifact directory is only touched by `install_packed`, under the store's
install rules, so a kill during a download leaves no artifact.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..store.layout import Store, split_id
from ..store.tmpdirs import temp_file
from . import workers
from .arriving import Streamed
from .backends import Cache, CacheUnavailable, open_cache
from .inorder import run_in_order
from .pack import REGULAR_FILES, Archive, ArchiveRefused, check_description, install_packed, streams
from .signing import PublicKey, SignatureRefused, check, parse_trusted
from .transfer import Meter, NullMeter, SharedLine, Sink, cancel_all, human_size, meter_for
from .workers import ForkedPool

MeterFactory = Callable[[str, str, int], Meter]
"""meter(artifact id, label, total bytes) -> a progress meter for one download."""


def terminal_meter(aid: str, label: str, total: int) -> Meter:
    return meter_for(label, total)


def shared_meter(count: int, stream: TextIO = sys.stderr) -> MeterFactory:
    """Meters for `count` downloads at once that draw one line together on a terminal."""
    if not stream.isatty():
        return lambda _aid, _label, _total: NullMeter()
    line = SharedLine(count, stream)
    return lambda _aid, _label, total: line.part(total)


@dataclass
class Fetched:
    cache: str
    size: int
    seconds: float
    signer: str

    def describe(self) -> str:
        return (f"from {self.cache} ({human_size(self.size)}, signed by {self.signer},"
                f" {self.seconds:.1f}s)")


@dataclass(frozen=True)
class Checked:
    """A description this process has checked already (`check_entry`) for `aid`, signed
    by `signer`: reproduce --from checks a profile's closure before the store is written
    to, and its installs reuse the verdict instead of verifying 200 signatures again."""

    aid: str
    description: dict[str, Any]
    signer: str


class NotHere(Exception):
    """This cache has no usable copy; `reason` is the short why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def check_entry(description: Any, aid: str, trusted: list[PublicKey]) -> str:
    """The trusted key that signed `aid`'s description, which must be well-formed and for `aid`.

    Raises NotHere (no entry, or one filed under another id), ArchiveRefused
    (malformed) or SignatureRefused. `reproduce --from CACHE` calls this too,
    to refuse a cache before the store is written to.
    """
    if description is None:
        raise NotHere("not found")
    if check_description(description) != aid:
        raise NotHere(f"hash mismatch: its description is for {description.get('id')}")
    return check(description, trusted)


IN_MEMORY = 8 << 20
"""Archives up to this size (signed) are downloaded into memory, larger ones to a file."""
IN_PIPE = 1 << 20
"""The same limit when installs run in worker processes (fetch_many): the bytes reach the
worker through the pool's pipe, a 64 KiB buffer at a time, pickled at both ends. Five
archives of 1.6-7.5 MB pulled at -j 2 took 225 ms that way and 193 ms as files the
worker reads from the page cache (tmpfs, medians of 5; limits from 64 KiB to 1 MiB
measured the same)."""


BYTES_PER_FILE = 32 << 10
ARTIFACT_AS_FILES = 16
"""Above BYTES_PER_FILE compressed bytes per file (an artifact counting as
ARTIFACT_AS_FILES files: its lock, metadata and sync), a pull installs in threads, not
in worker processes. Measured at -j 2 on tmpfs, medians of 10 (threads / processes):
50 MB of libraries and programs in 5 artifacts 87 / 126 ms, in 10 99 / 137, in 20
126 / 143, in 40 173 / 163, in 200 577 / 342; 15 MB of headers and docs (849 files) in
5 artifacts 115 / 89. The rule puts each on its faster side."""


def mostly_bytes(descriptions: list[dict[str, Any]]) -> bool:
    """Whether installing these archives is mostly decompressing and writing (which leave
    the GIL) rather than Python per file and per artifact: then worker processes cost
    more than they save, and threads install. A description packed by an older hdenv
    (its files not counted) says no."""
    packed = files = 0
    for description in descriptions:
        count = description.get(REGULAR_FILES)
        if not isinstance(count, int):
            return False
        packed += description["archive_size"]
        files += count + ARTIFACT_AS_FILES
    return packed >= BYTES_PER_FILE * files


@dataclass
class Substituter:
    store: Store
    caches: list[Cache]
    trusted: list[PublicKey]
    dead: dict[str, str] = field(default_factory=dict)  # cache url -> why it is skipped
    prefetched: dict[tuple[str, str], Checked] = field(default_factory=dict)
    """(cache url, hash) -> the description a caller read and checked already (reproduce
    --from), used for the id it was checked for."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _batch: bool = False  # inside fetch_many, which ran store.ensure() for all its installs
    _installer: ForkedPool | None = None  # inside fetch_many: installs in processes
    _transfers: threading.Semaphore | None = None  # inside fetch_many: transfers in flight

    @classmethod
    def from_settings(cls, store: Store, caches: list[str], trusted_keys: list[str]
                      ) -> Substituter | None:
        """None when no cache is configured (then nothing is looked up)."""
        if not caches:
            return None
        return cls(store, [open_cache(u) for u in caches], parse_trusted(trusted_keys))

    def fetch(self, aid: str, meter: MeterFactory = terminal_meter) -> Fetched | str:
        """Install `aid` from the first cache with a good copy, or say why none had one."""
        return self._fetch(aid, meter, frozenset())

    def _fetch(self, aid: str, meter: MeterFactory, busy: frozenset[str]) -> Fetched | str:
        reasons = []
        for cache in self.caches:
            with self._lock:
                dead = self.dead.get(cache.url)
            if dead is not None:
                reasons.append(f"{cache.url}: {dead}")
                continue
            try:
                return self._from(cache, aid, meter, busy | {aid})
            except CacheUnavailable as e:
                with self._lock:
                    self.dead[cache.url] = e.reason
                reasons.append(f"{cache.url}: {e.reason}")
            except (ArchiveRefused, NotHere) as e:
                reasons.append(f"{cache.url}: {e.reason}")
            except SignatureRefused as e:
                reasons.append(f"{cache.url}: {e}")
        return "; ".join(reasons)

    def _from(self, cache: Cache, aid: str, meter: MeterFactory, busy: frozenset[str]
              ) -> Fetched:
        started = time.monotonic()
        with self._lock:
            known = self.prefetched.pop((cache.url, split_id(aid)[2]), None)
        description: dict[str, Any] | None
        if known is not None and known.aid == aid:
            description, signer = known.description, known.signer
        else:
            with self._transfer():
                description = cache.description(split_id(aid)[2])
            signer = check_entry(description, aid, self.trusted)
        assert description is not None
        for ref in description["references"]:
            if self.store.has_artifact(ref):
                continue
            if ref in busy:
                raise NotHere(f"its references loop back to {ref}")
            got = self._fetch(ref, meter, busy)
            if not isinstance(got, Fetched):
                raise NotHere(f"needs {ref}, which no cache provides")
        label = f"downloading {aid.split('/')[0]}"
        if self._installer is None and streams(description):
            # decompressed and written as it arrives, checked at its end (arriving.py)
            progress = meter(aid, label, description["archive_size"])
            streamed = Streamed.start(
                lambda pipe: self._download(cache, description, pipe, progress),
                aid.split("/")[0])
            try:
                self._install_here(description, streamed, cache.url, None)
            finally:
                streamed.abandon()  # when it was installed already: the rest is not wanted
            return Fetched(cache.url, description["archive_size"], time.monotonic() - started,
                           signer)
        if description["archive_size"] <= (IN_MEMORY if self._installer is None else IN_PIPE):
            # a small archive is held in memory: a temporary file to make, write, read back
            # and remove was a tenth of such an install (the signed size caps what arrives)
            buffer = io.BytesIO()
            progress = meter(aid, label, description["archive_size"])
            with self._transfer():
                size, sha = self._download(cache, description, buffer, progress)
            self._install(description, buffer.getvalue(), cache.url, (size, sha))
            return Fetched(cache.url, size, time.monotonic() - started, signer)
        fd, tmp = temp_file(self.store, "fetch-", ".tar.zst")  # private, cleaned if we die
        try:
            with os.fdopen(fd, "wb") as out:
                progress = meter(aid, label, description["archive_size"])
                with self._transfer():
                    size, sha = self._download(cache, description, out, progress)
            # hashed as it arrived: a mismatch is refused there, a match not read again
            self._install(description, tmp, cache.url, (size, sha))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return Fetched(cache.url, size, time.monotonic() - started, signer)

    def _install(self, description: dict[str, Any], archive: Path | bytes, source: str,
                 hashed: tuple[int, str] | None) -> None:
        """install_packed, in a worker process inside fetch_many (workers.py)."""
        if self._installer is not None:
            self._installer(description, archive, source, hashed)
        else:
            self._install_here(description, archive, source, hashed)

    def _install_here(self, description: dict[str, Any], archive: Archive, source: str,
                      hashed: tuple[int, str] | None) -> None:
        install_packed(self.store, description, archive, source=source, hashed=hashed,
                       ensured=self._batch)

    def _transfer(self) -> contextlib.AbstractContextManager[object]:
        """Held while bytes come from a cache: `jobs` transfers at once inside fetch_many."""
        return self._transfers if self._transfers is not None else contextlib.nullcontext()

    @staticmethod
    def _download(cache: Cache, description: dict[str, Any], out: Sink, progress: Meter
                  ) -> tuple[int, str]:
        """The archive into `out`, hashed as it arrives; (size, sha256)."""
        try:
            size, sha = cache.fetch_archive(description["archive_sha256"], out, progress,
                                            limit=description["archive_size"])
        finally:
            progress.close()
        if not sha:
            raise NotHere(f"not found: archive {description['archive_sha256'][:16]}...")
        return size, sha

    def fetch_many(self, wanted: list[str], references: Callable[[str], list[str]], jobs: int,
                   meter: MeterFactory = terminal_meter,
                   arrived: Callable[[str], None] = lambda _aid: None
                   ) -> dict[str, Fetched | str]:
        """`fetch` each id of `wanted` with up to `jobs` transfers in flight; {id: result}.

        An id starts once the ids of `wanted` it references have arrived (its
        archive is installed only after theirs, as `install_packed` needs), so
        a profile's leaves download side by side; one whose reference failed is
        not tried (inorder.py). `arrived(id)` is called in this thread as each one
        is installed, while the others go on (reproduce grows its profile's farm).
        """
        def settle(aid: str, refs: list[str], results: dict[str, Fetched | str]
                   ) -> Fetched | str | None:
            failed = [r for r in refs if not isinstance(results[r], Fetched)]
            return f"needs {failed[0]}, which no cache provided" if failed else None

        self.store.ensure()  # once for the batch, not once per install
        self._batch = True
        try:
            threads = jobs
            if workers.available(jobs, len(wanted)) and not self._mostly_bytes(wanted):
                # one install process more than transfers: an install waits for the disk
                # a quarter of its time (the fsync that makes it exist), and meanwhile
                # another can use the core (200 artifacts at -j 2 on ext4: 0.95 s
                # instead of 1.04, median of 8; the same on tmpfs)
                installers = jobs + 1
                self._installer = ForkedPool(installers, self._install_here)
                # twice as many artifacts under way as installs: while one waits for its
                # install, another downloads, so neither the connections nor the
                # installing processes wait for each other
                threads = 2 * installers
                self._transfers = threading.Semaphore(jobs)
            # references in a loop: no cache can describe that
            return run_in_order(wanted, references, threads, lambda aid: self.fetch(aid, meter),
                                settle=settle, loop=lambda _aid: "its references loop back to it",
                                done=lambda aid, got: arrived(aid) if isinstance(got, Fetched)
                                else None,
                                interrupted=cancel_all)  # Ctrl-C: stop waiting for servers
        finally:
            self._batch = False
            self._transfers = None
            if self._installer is not None:
                self._installer.close()
                self._installer = None

    def _mostly_bytes(self, wanted: list[str]) -> bool:
        """`mostly_bytes` of the descriptions a caller checked already (reproduce --from:
        all of them); False when one of `wanted` has none."""
        known = {c.aid: c.description for c in self.prefetched.values()}
        return all(aid in known for aid in wanted) and mostly_bytes(
            [known[aid] for aid in wanted])

    def realise(self, aid: str, say: Callable[[str], None], meter: MeterFactory) -> bool:
        """The build's hook: True if `aid` came from a cache; one line either way."""
        got = self.fetch(aid, meter)
        if isinstance(got, Fetched):
            say(f"fetched {aid} {got.describe()}")
            return True
        say(f"{aid}: no usable cache copy ({got}); building from source")
        return False

"""What a build shows while it runs: one status line on a terminal, plain lines otherwise.

Everything a build says goes through `Progress.say`, so on a terminal a
message (a source being fetched, a failed download, a finished package)
clears the status line, prints on its own line, and the status line is drawn
again below it: nothing is ever glued onto it. Packages are named by
`labels()`, which tells matrix variants of one package apart (`zstd [gcc]`,
`zstd [clang]`). When a build starts, its live log's path is said once, so
`tail -f` can follow it.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO


def labels(nodes: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """Artifact id -> how the user sees it: the name, and what sets same-named ones apart.

    `nodes` gives each id with the matrix values of the variant that made it.
    Ids sharing a name get the values that differ between them (`zstd [gcc]`);
    when no value tells them apart (a parameter set with --set, say), a short
    hash does.
    """
    by_name: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for nid, values in nodes:
        by_name.setdefault(nid.split("/")[0], []).append((nid, values))
    out = {}
    for name, group in by_name.items():
        if len(group) == 1:
            out[group[0][0]] = name
            continue
        keys = sorted({k for _, v in group for k in v})
        differ = [k for k in keys if len({str(v.get(k)) for _, v in group}) > 1]
        tags = {nid: ", ".join(str(values.get(k)) for k in differ) for nid, values in group}
        unique = len(set(tags.values())) == len(group) and all(tags.values())
        for nid, _ in group:
            tag = tags[nid] if unique else nid.rsplit("/", 1)[1][:7]
            out[nid] = f"{name} [{tag}]"
    return out


class Progress:
    """Live status line on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self, total: int = 0, stream: TextIO = sys.stderr, live: bool | None = None,
                 names: Mapping[str, str] | None = None):
        self.total = total
        self.done = 0
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.names: dict[str, str] = dict(names or {})
        self.running: dict[str, float] = {}
        self.details: dict[str, str] = {}  # e.g. download progress, shown on the live line
        self.started = time.monotonic()
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._drawn = False
        if total:  # the total known up front (the Slurm executor): start at once
            self.begin(total)

    def label(self, nid: str) -> str:
        return self.names.get(nid, nid)

    def begin(self, total: int, names: Mapping[str, str] | None = None) -> None:
        """The number of packages to build is known: start the status line."""
        with self.lock:
            self.total = total
            self.names.update(names or {})
            self.started = time.monotonic()
        if self.live and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                self._draw()

    def _width(self) -> int:
        return max(20, shutil.get_terminal_size((100, 24)).columns - 1)

    def _draw(self) -> None:
        if not self.running:
            self._clear()
            return
        names = ", ".join(self.label(n) + (f" [{self.details[n]}]" if n in self.details else "")
                          for n in self.running)
        elapsed = time.monotonic() - self.started
        line = f"[{self.done}/{self.total}] building: {names} ({elapsed:.0f}s)"
        self.stream.write("\r\033[K" + line[:self._width()])
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def say(self, message: str) -> None:
        """One message on its own line, above the status line."""
        with self.lock:
            if self.live:
                self._clear()
            self.stream.write(message.rstrip("\n") + "\n")
            if self.live and self._ticker is not None:
                self._draw()
            self.stream.flush()

    def start(self, nid: str, verb: str = "building") -> None:
        with self.lock:
            self.running[nid] = time.monotonic()
        if not self.live:
            self.say(f"{verb} {self.label(nid)} ({nid})")

    def meter(self, nid: str, label: str, total: int) -> DetailMeter:
        """A transfer meter drawn into the live line (nothing off a terminal)."""
        return DetailMeter(self, nid, label, total)

    def log_at(self, nid: str, path: Path) -> None:
        """A build's live log is at `path` (said once, so it can be followed)."""
        self.say(f"  {self.label(nid)}: live log {path}")

    def waiting(self, nid: str) -> None:
        self.say(f"waiting for another hdenv building {self.label(nid)}")

    def finish(self, nid: str, outcome: str) -> None:
        with self.lock:
            began = self.running.pop(nid, time.monotonic())
            self.done += 1
        if outcome not in ("present", "fetched"):  # a fetch has said where from already
            self.say(f"{outcome} {self.label(nid)} ({time.monotonic() - began:.1f}s)")

    def fail(self, nid: str, message: str) -> None:
        with self.lock:
            self.running.pop(nid, None)
            self.done += 1
        variant = self.label(nid)
        named = f" ({variant})" if "[" in variant else ""  # the id first: it is exact
        self.say(f"FAILED {nid}{named}: {message}")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self.lock:
            self._clear()
            self.stream.flush()


class DetailMeter:
    """Bytes moved so far for one package, shown beside its name on the status line."""

    def __init__(self, progress: Progress, nid: str, label: str, total: int):
        self.progress, self.nid, self.label, self.total = progress, nid, label, total
        self.done = 0

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        if self.progress.live:
            with self.progress.lock:
                self.progress.details[self.nid] = (
                    f"{self.label} {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB")

    def close(self) -> None:
        with self.progress.lock:
            self.progress.details.pop(self.nid, None)

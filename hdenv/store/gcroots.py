"""GC roots: pins, and what running builds use; the GC lock that orders them against gc.

Roots are every generation of every named profile (`names/*/<N>`), explicit pins
(`pins/HASH`, a symlink to the pinned profile or artifact so `ls -l pins` says
what it is) and the ids that running hdenv processes registered.

Running builds register, as Nix's temporary roots do, instead of holding the
GC lock for their whole run: a build of a large stack can take hours and a gc
beside it (often run because the disk is full) must not wait for it. A
process writes one file `locks/roots/PID.TOKEN`, one id per line, and holds an
exclusive lock on it while it lives; gc reads the files whose lock it cannot
take and deletes the others (their owner died). Every registration happens
under the shared GC lock and gc marks and sweeps under the exclusive one, so a
registration either happens before gc looks (gc keeps those ids) or after gc
has finished (the build then sees what is missing and builds it again). That
is why a build registers an id *before* it checks whether the artifact exists.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ..errors import UserError
from .fsutil import file_lock, lock_fd
from .layout import Store
from .storedirs import symlink_at

GC_LOCK = "gc"
ROOTS_DIR = "roots"


def pins_dir(store: Store) -> Path:
    return store.root / "pins"


def roots_dir(store: Store) -> Path:
    return store.locks / ROOTS_DIR


@contextlib.contextmanager
def gc_lock(store: Store, *, shared: bool, blocking: bool = True) -> Iterator[int]:
    """The store's GC lock: shared for builds registering roots, exclusive for gc."""
    with file_lock(store.lock_path(GC_LOCK), shared=shared, blocking=blocking) as fd:
        yield fd


# -- pins ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    hash: str
    kind: str  # "profile", "artifact" or "missing" (the pinned thing was deleted by hand)
    ident: str  # profile hash or artifact id


def pin(store: Store, ref: str) -> Pin:
    """Pin what REF resolves to (a name pins its current profile, not the name).

    The link is made in pins/ through its descriptor (storedirs): a symlink
    a member planted as pins/ is refused, never written through.
    """
    store.ensure()  # a write: the store must be the user's to trust (safeio.check_owned)
    resolved = store.resolve(ref)
    hash_ = resolved.ident.rsplit("/", 1)[-1]
    target = os.path.relpath(resolved.path, pins_dir(store))
    with store.opened("pins") as fd:
        symlink_at(fd, target, hash_)
    return Pin(hash_, resolved.kind, resolved.ident)


def unpin(store: Store, ref: str) -> Pin:
    """Remove the pin of what REF resolves to, or of a pinned hash whose target is gone."""
    store.ensure()
    pinned = {p.hash: p for p in list_pins(store)}
    if ref in pinned:
        found = pinned[ref]
    else:
        resolved = store.resolve(ref)
        hash_ = resolved.ident.rsplit("/", 1)[-1]
        if hash_ not in pinned:
            raise UserError(f"{ref} ({resolved.ident}) is not pinned")
        found = pinned[hash_]
    with store.opened("pins", create=False) as fd:
        os.unlink(found.hash, dir_fd=fd)
    return found


def list_pins(store: Store) -> list[Pin]:
    out: list[Pin] = []
    try:
        entries = sorted(os.listdir(pins_dir(store)))
    except FileNotFoundError:
        return out
    for hash_ in entries:
        if hash_.startswith("."):
            continue
        try:
            target = os.readlink(pins_dir(store) / hash_)
        except OSError:
            continue
        parts = Path(target).parts
        if "artifacts" in parts and len(parts) >= 3:
            ident, kind = "/".join(parts[-3:]), "artifact"
            present = store.has_artifact(ident)
        else:
            ident, kind = hash_, "profile"
            present = store.has_profile(hash_)
        out.append(Pin(hash_, kind if present else "missing", ident))
    return out


# -- roots of running processes ----------------------------------------------------------

class BuildRoots:
    """This process's temporary GC roots (see the module docstring).

    Use as a context manager around a build; `add` ids (artifact ids, profile
    hashes, source keys) before using them, and wrap steps that write into the
    store before they can name what they wrote (planning stores local sources)
    in `holding()`.
    """

    def __init__(self, store: Store):
        self.store = store
        self.path: Path | None = None
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._held = 0
        self._known: set[str] = set()

    def __enter__(self) -> BuildRoots:
        # locks/ and locks/roots/ from the root through descriptors (storedirs): a symlink
        # planted as either is refused before anything is made in what it points at
        dfd = self.store.dir_fd("locks", ROOTS_DIR)
        try:
            with self.holding():
                name = f"{os.getpid()}.{os.urandom(6).hex()}"  # as secrets.token_hex(6)
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                             | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
                lock_fd(fd)
        except BaseException:
            os.close(dfd)
            raise
        self.path, self._fd, self._dir_fd = roots_dir(self.store) / name, fd, dfd
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.path is not None and self._dir_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path.name, dir_fd=self._dir_fd)  # where it was made
        for fd in (self._fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        self.path = self._fd = self._dir_fd = None

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the shared GC lock (gc waits; other builds do not)."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        with gc_lock(self.store, shared=True):
            self._held = 1
            try:
                yield
            finally:
                self._held = 0

    def add(self, ids: Iterable[str]) -> None:
        new = sorted({i for i in ids if i and "\n" not in i} - self._known)
        if not new or self._fd is None:
            return
        with self.holding():
            os.write(self._fd, "".join(f"{i}\n" for i in new).encode("utf-8"))
        self._known.update(new)


@dataclass
class RunningRoots:
    ids: set[str] = field(default_factory=set)
    processes: int = 0


def running_roots(store: Store, *, clean: bool) -> RunningRoots:
    """Ids registered by live processes; with `clean`, delete the files of dead ones.

    Call it holding the exclusive GC lock when `clean` is set (gc does): no
    registration can then be half made.
    """
    out = RunningRoots()
    try:
        dfd = store.dir_fd("locks", ROOTS_DIR, create=False)
    except FileNotFoundError:
        return out
    try:
        _read_roots(dfd, out, clean)
    finally:
        os.close(dfd)
    return out


def _read_roots(dfd: int, out: RunningRoots, clean: bool) -> None:
    """`running_roots` in the open locks/roots/ (entries named relative to it)."""
    for entry in sorted(os.listdir(dfd)):
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=dfd)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                lock_fd(fd, shared=True, blocking=False)
            except BlockingIOError:
                alive = True
            else:
                alive = False
            if alive:
                data = _read_all(fd)
                lines = data.decode("utf-8", "replace").split("\n")
                out.ids.update(line for line in lines[:-1] if line)  # last: "" or partial
                out.processes += 1
            elif clean:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry, dir_fd=dfd)
        finally:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)

"""Private temporary files and directories in the store, and removal of dead runs' leftovers.

Everything hdenv writes before it lands (build directories, profile farms,
downloads) lives in `<store>/tmp/<uid>/`, a directory owned by the user with
mode 0700, created and checked through O_NOFOLLOW directory fds: in a store
that others can write to, nobody else can plant a symlink where hdenv writes
a build script, or swap a file in a build directory.

Each hdenv process that makes a temporary entry first takes a *run lock*,
`tmp/<uid>/run-TOKEN.lock` (made under another name, locked, then renamed, so
a visible run lock is always held), and names its entries `TOKEN.PREFIX...`.
`clean_stale` (called by every build) removes the entries of runs whose lock
is free: those processes are gone (killed, crashed, or the machine rebooted).
Entries of a live run are never touched. Other code that needs scratch space
in the store (gc renaming a tree before it removes it) uses `temp_dir` too,
so its leftovers are cleaned the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
import threading
import time
from pathlib import Path

from ..errors import StoreError
from .fsutil import lock_fd, open_lock_file, remove_tree
from .layout import Store
from .storedirs import open_below

PRIVATE_MODE = 0o700
RUN_PREFIX = "run-"
RUN_SUFFIX = ".lock"
LEGACY_PREFIXES = ("build-", "profile-", "src-")  # tmp/ entries of hdenv before tmp/<uid>/
STALE_SECONDS = 3600  # entries without a run lock (legacy ones) are left alone this long

_state = threading.Lock()
_runs: dict[Path, tuple[str, int]] = {}  # private dir -> (token, fd holding the run lock)


def private_tmp(store: Store) -> Path:
    """`<store>/tmp/<uid>/`, created if needed; StoreError unless it is safely ours."""
    uid = os.geteuid()
    tmp_fd = store.dir_fd("tmp")  # from the root, no link followed (storedirs)
    path = store.tmp / str(uid)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(str(uid), PRIVATE_MODE, dir_fd=tmp_fd)
        # by its name in tmp_fd: an absolute path would ignore the descriptor
        fd = open_below(tmp_fd, store.tmp, [str(uid)], create=False)
    finally:
        os.close(tmp_fd)
    try:
        st = os.fstat(fd)
        if st.st_uid != uid:
            raise StoreError(f"{path} belongs to uid {st.st_uid}, not to you (uid {uid}):"
                             " another user made it, perhaps to see or redirect your builds;"
                             " remove it and retry")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
    return path


def _run_token(tmp: Path) -> str:
    """This process's token in `tmp`, taking its run lock the first time."""
    with _state:
        known = _runs.get(tmp)
        if known is not None:
            return known[0]
        token = secrets.token_hex(6)
        making = tmp / f".{RUN_PREFIX}{token}{RUN_SUFFIX}"
        fd = open_lock_file(making)
        try:
            lock_fd(fd, blocking=False)
            os.rename(making, tmp / f"{RUN_PREFIX}{token}{RUN_SUFFIX}")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(making)
            raise
        _runs[tmp] = (token, fd)
        return token


def temp_dir(store: Store, prefix: str) -> Path:
    """A new private directory (mode 0700) for this run; the caller removes it."""
    tmp = private_tmp(store)
    return Path(tempfile.mkdtemp(prefix=f"{_run_token(tmp)}.{prefix}", dir=tmp))


def temp_link(store: Store, prefix: str, target: str, length: int) -> Path | None:
    """A new symlink to `target` for this run whose path is exactly `length` bytes long
    (the name filled up with `_`); None when the private tmp dir leaves no room for it.
    The caller removes it."""
    tmp = private_tmp(store)
    base = f"{_run_token(tmp)}.{prefix}{secrets.token_hex(4)}-"
    fill = length - len(os.fsencode(tmp)) - 1 - len(base)
    if fill < 1 or len(base) + fill > 255:
        return None
    path = tmp / (base + "_" * fill)
    os.symlink(target, path)  # fails if the name exists: tmp/<uid>/ is ours alone anyway
    return path


def temp_file(store: Store, prefix: str, suffix: str = "") -> tuple[int, Path]:
    """A new private file (mode 0600, opened for writing) for this run; the caller removes it."""
    tmp = private_tmp(store)
    fd, name = tempfile.mkstemp(prefix=f"{_run_token(tmp)}.{prefix}", suffix=suffix, dir=tmp)
    return fd, Path(name)


def clean_stale(store: Store) -> list[Path]:
    """Remove what dead runs left in the user's tmp dir (and old-layout leftovers); say what."""
    if not store.tmp.is_dir():
        return []
    removed = _clean_legacy(store)
    tmp = private_tmp(store)
    dead: list[str] = []
    live: set[str] = set()
    for entry in os.listdir(tmp):
        if not (entry.startswith(RUN_PREFIX) and entry.endswith(RUN_SUFFIX)):
            continue
        token = entry[len(RUN_PREFIX):-len(RUN_SUFFIX)]
        if _run_alive(tmp / entry):
            live.add(token)
        else:
            dead.append(token)
    now = time.time()
    for entry in os.listdir(tmp):
        path = tmp / entry
        if entry.startswith((RUN_PREFIX, f".{RUN_PREFIX}")):
            continue
        token = entry.split(".", 1)[0]
        if token in live:
            continue
        if token in dead or _age(path, now) > STALE_SECONDS:
            _remove(path, removed)
    for token in dead:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp / f"{RUN_PREFIX}{token}{RUN_SUFFIX}")
    return removed


def _run_alive(lock: Path) -> bool:
    try:
        fd = open_lock_file(lock)
    except (StoreError, OSError):
        return True  # not ours to judge: leave it
    try:
        lock_fd(fd, blocking=False)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _clean_legacy(store: Store) -> list[Path]:
    """`tmp/build-*`, `tmp/profile-*`, `tmp/src-*` of older hdenv: ours and older than an hour."""
    removed: list[Path] = []
    uid, now = os.geteuid(), time.time()
    for entry in os.listdir(store.tmp):
        path = store.tmp / entry
        if not entry.startswith(LEGACY_PREFIXES):
            continue
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if st.st_uid == uid and now - st.st_mtime > STALE_SECONDS:
                _remove(path, removed)
    return removed


def _age(path: Path, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: Path, removed: list[Path]) -> None:
    try:
        remove_tree(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            return  # another cleaner, or a tree we cannot remove: try again next time
    removed.append(path)


def leftovers(store: Store) -> list[Path]:
    """Temporary entries now in the store (every user's, old layout too), run locks aside."""
    out: list[Path] = []
    if not store.tmp.is_dir():
        return out
    for entry in sorted(os.listdir(store.tmp)):
        path = store.tmp / entry
        if entry.isdigit() and path.is_dir() and not path.is_symlink():
            out += [path / e for e in sorted(os.listdir(path))
                    if not e.startswith((RUN_PREFIX, f".{RUN_PREFIX}"))]
        else:
            out.append(path)
    return out

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
import stat
import threading
import time
from pathlib import Path

from ..errors import StoreError
from . import fdtree
from .fsutil import lock_fd, open_lock_at
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
    fd, path = private_tmp_fd(store)
    os.close(fd)
    return path


def private_tmp_fd(store: Store) -> tuple[int, Path]:
    """A descriptor of `<store>/tmp/<uid>/` (created if needed, checked to be ours, 0700)
    and its path; the caller closes it. Work in it through the descriptor: the store
    root is the group's to rename in, so a member can exchange tmp/ for a link to a
    directory laid out the same way (another store's tmp/) between a check and a use
    by path."""
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
    except BaseException:
        os.close(fd)
        raise
    return fd, path


def _run_token(tmp: Path, tmp_fd: int) -> str:
    """This process's token in `tmp` (open as `tmp_fd`), taking its run lock the first time."""
    with _state:
        known = _runs.get(tmp)
        if known is not None:
            return known[0]
        token = os.urandom(6).hex()
        making = f".{RUN_PREFIX}{token}{RUN_SUFFIX}"
        fd = open_lock_at(tmp_fd, making, tmp)
        try:
            lock_fd(fd, blocking=False)
            os.rename(making, f"{RUN_PREFIX}{token}{RUN_SUFFIX}", src_dir_fd=tmp_fd,
                      dst_dir_fd=tmp_fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(making, dir_fd=tmp_fd)
            raise
        _runs[tmp] = (token, fd)
        return token


NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _new_name(token: str, prefix: str, suffix: str = "") -> str:
    """`TOKEN.PREFIXxxxxxxxx[SUFFIX]`, as tempfile names them (8 random characters)."""
    return f"{token}.{prefix}{_random_chars(8)}{suffix}"


def _random_chars(count: int) -> str:
    """`count` characters of NAME_CHARS, each equally likely, from os.urandom as the
    `secrets` module draws them (bytes past the last whole multiple of the alphabet are
    drawn again); not that module itself, whose import (hashlib, random) costs every
    command that makes a temporary entry, gc included, 4 ms of its start-up."""
    whole = 256 - 256 % len(NAME_CHARS)
    out: list[str] = []
    while len(out) < count:
        out += [NAME_CHARS[b % len(NAME_CHARS)] for b in os.urandom(count) if b < whole]
    return "".join(out[:count])


def temp_dir(store: Store, prefix: str) -> Path:
    """A new private directory (mode 0700) for this run; the caller removes it.

    Made through the descriptor of tmp/<uid>/ that was checked: a tmp/ exchanged
    meanwhile never gets it made in another directory. Its path is what the caller
    uses afterwards; nobody else can make its unpredictable name anywhere of the user's.
    """
    fd, tmp = private_tmp_fd(store)
    try:
        token = _run_token(tmp, fd)
        while True:
            name = _new_name(token, prefix)
            try:
                os.mkdir(name, PRIVATE_MODE, dir_fd=fd)
            except FileExistsError:
                continue
            return tmp / name
    finally:
        os.close(fd)


def temp_padded_dir(store: Store, prefix: str, length: int) -> Path:
    """A new private directory (mode 0700) for this run whose path is exactly `length`
    bytes long (the name filled up with `_`), or as short as it can be when the private
    tmp dir leaves no room for that. Made through tmp/<uid>/'s descriptor; the caller
    removes it."""
    fd, tmp = private_tmp_fd(store)
    try:
        base = f"{_run_token(tmp, fd)}.{prefix}{os.urandom(4).hex()}-"
        fill = length - len(os.fsencode(tmp)) - 1 - len(base)
        name = base + "_" * fill if fill > 0 and len(base) + fill <= 255 else base
        os.mkdir(name, PRIVATE_MODE, dir_fd=fd)  # fails if the name exists: it is ours alone
        return tmp / name
    finally:
        os.close(fd)


def temp_file(store: Store, prefix: str, suffix: str = "") -> tuple[int, Path]:
    """A new private file (mode 0600, opened for writing) for this run; the caller removes it."""
    fd, tmp = private_tmp_fd(store)
    try:
        token = _run_token(tmp, fd)
        while True:
            name = _new_name(token, prefix, suffix)
            try:
                out = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600, dir_fd=fd)
            except FileExistsError:
                continue
            return out, tmp / name
    finally:
        os.close(fd)


def clean_stale(store: Store) -> list[Path]:
    """Remove what dead runs left in the user's tmp dir (and old-layout leftovers); say what.

    Listed, judged and removed through the descriptors of tmp/ and tmp/<uid>/ that were
    checked (see `private_tmp_fd`): by path, an exchanged tmp/ made this remove another
    directory's entries older than an hour."""
    if not store.tmp.is_dir():
        return []
    removed = _clean_legacy(store)
    fd, tmp = private_tmp_fd(store)
    try:
        dead: list[str] = []
        live: set[str] = set()
        for entry in os.listdir(fd):
            if not (entry.startswith(RUN_PREFIX) and entry.endswith(RUN_SUFFIX)):
                continue
            token = entry[len(RUN_PREFIX):-len(RUN_SUFFIX)]
            if _run_alive(fd, entry, tmp):
                live.add(token)
            else:
                dead.append(token)
        now = time.time()
        for entry in os.listdir(fd):
            if entry.startswith((RUN_PREFIX, f".{RUN_PREFIX}")):
                continue
            token = entry.split(".", 1)[0]
            if token in live:
                continue
            if token in dead or _age(fd, entry, now) > STALE_SECONDS:
                _remove(fd, entry, tmp / entry, removed)
        for token in dead:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{RUN_PREFIX}{token}{RUN_SUFFIX}", dir_fd=fd)
    finally:
        os.close(fd)
    return removed


def _run_alive(dir_fd: int, name: str, where: Path) -> bool:
    try:
        fd = open_lock_at(dir_fd, name, where)
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
    with store.opened("tmp", create=False) as tmp_fd:
        for entry in os.listdir(tmp_fd):
            if not entry.startswith(LEGACY_PREFIXES):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(entry, dir_fd=tmp_fd, follow_symlinks=False)
                if st.st_uid == uid and now - st.st_mtime > STALE_SECONDS:
                    _remove(tmp_fd, entry, store.tmp / entry, removed)
    return removed


def _age(dir_fd: int, name: str, now: float) -> float:
    try:
        return now - os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _remove(dir_fd: int, name: str, path: Path, removed: list[Path]) -> None:
    try:
        fdtree.remove_at(dir_fd, name, path)
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

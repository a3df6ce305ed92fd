"""Whether a store is safe for root to write to: nobody else may redirect its writes.

A root build follows paths inside the store: `tmp/`, `locks/`, `artifacts/`.
If another user can rename or replace any directory on the way (the store
root is group-writable, or lies under a directory some user owns), that user
can swap a directory for a symlink between hdenv's check and its write, and
root then writes, or runs, whatever the symlink points at. O_NOFOLLOW cannot
close that race for every path a build script uses, so root refuses such a
store outright, with one line saying which directory is the problem (the
rule OpenSSH applies to the directories above `authorized_keys`).

Every directory from `/` to the store root, and the store's own top-level
directories, must belong to root (or to the user hdenv runs as) and must not
be writable by group or others unless the sticky bit stops them renaming
what is not theirs (as on /tmp). Ordinary users get no such check: members of
a group-writable store can already replace each other's artifacts, so they
have to trust each other (README, "Security model").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import StoreError


def _problem(path: Path, st: os.stat_result, uid: int) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if st.st_uid not in (0, uid):
        return f"belongs to uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        who = "others" if st.st_mode & stat.S_IWOTH else f"group {st.st_gid}"
        return f"is writable by {who}"
    return None


def check_root_may_write(root: Path, own_dirs: Iterable[Path]) -> None:
    """StoreError if hdenv runs as root and another user could redirect writes into `root`.

    `own_dirs` are the store's top-level directories that exist; the store
    root's ancestors are checked along its real path (symlinks on the way,
    like /home -> /usr/home, are judged by where they lead).
    """
    uid = os.geteuid()
    if uid != 0:
        return
    real = Path(os.path.realpath(root))
    chain = [*reversed(real.parents), real]
    for path in chain:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break  # not created yet: root will create it, owned by root
        problem = _problem(path, st, uid)
        if problem is not None:
            raise StoreError(_refusal(root, path, problem))
    for path in own_dirs:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        problem = _problem(path, st, uid)
        if problem is not None:
            raise StoreError(_refusal(root, path, problem))


def _refusal(root: Path, path: Path, problem: str) -> str:
    return (f"refusing to write to the store {root} as root: {path} {problem}, so another user"
            " could redirect root's writes there; build as an ordinary user (the store's"
            " owner), or make every directory on the way root's and not writable by others")

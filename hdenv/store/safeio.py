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
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import StoreError, UserError


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


def check_owned(root: Path, own_dirs: Iterable[Path]) -> None:
    """UserError unless the store and its top-level directories are this user's to trust.

    OpenSSH's StrictModes, for a store: another local user who created the
    store's directory (the README's first command once used a predictable path
    in /tmp) could have put a trojaned artifact in it, which a build would
    call "already present" and the next command would run. So the root and
    each top-level directory must belong to this user (or to root, not
    writable by others), or the store must be a group store (set-gid,
    group-writable) of a group this user is in; none may be writable by
    everyone, and no top-level directory may be a symlink.
    """
    uid = os.geteuid()
    if uid == 0:
        return  # root's stricter rule: check_root_may_write
    try:
        top = os.stat(root)
    except FileNotFoundError:
        return  # made now, by this user
    groups = {os.getegid(), *os.getgroups()}
    group_store = bool(top.st_mode & stat.S_ISGID) and bool(top.st_mode & stat.S_IWGRP) \
        and top.st_gid in groups
    for path, st in [(root, top), *_lstats(own_dirs)]:
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{path} is not a directory but a symlink; hdenv never made it:"
                             " remove it, or use a store of your own (--store, HDENV_STORE)")
        trusted = st.st_uid == uid or (st.st_uid == 0 and not st.st_mode & 0o002) or \
            (group_store and st.st_gid == top.st_gid)
        if not trusted:
            raise UserError(f"{path} belongs to {_user(st.st_uid)}, not to you, and is not a"
                            " store of a group you are in: another user could have put"
                            " anything in it; use a store of your own (--store, HDENV_STORE)")
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise UserError(f"{path} is writable by every user, so anyone could have put"
                            " software in it; use a store of your own (--store, HDENV_STORE),"
                            " or `chmod o-w` it if it is yours")


def _lstats(paths: Iterable[Path]) -> list[tuple[Path, os.stat_result]]:
    out = []
    for path in paths:
        try:
            out.append((path, os.lstat(path)))
        except FileNotFoundError:
            continue
    return out


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"

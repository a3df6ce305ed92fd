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

import grp
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
    group-writable) of a group this user is in, made by its members; none
    may be writable by everyone, and no top-level directory may be a symlink.
    The way there counts too: a symlink on the store's path that another
    user made (they chose where the store is: in a directory of theirs,
    where they can swap it for their own later), or a directory above the
    store that another user owns or everyone may write (not sticky, as /tmp
    is), is refused before anything is created. Called before writing; a
    store that is only read (an upstream, a site store) is not checked here.
    """
    uid = os.geteuid()
    if uid == 0:
        return  # root's stricter rule: check_root_may_write
    try:
        top: os.stat_result | None = os.stat(root)
    except FileNotFoundError:
        top = None  # made now, by this user: its way there still counts
    groups = {os.getegid(), *os.getgroups()}
    group_store = top is not None and bool(top.st_mode & stat.S_ISGID) \
        and bool(top.st_mode & stat.S_IWGRP) and top.st_gid in groups
    gid = top.st_gid if top is not None and group_store else None
    _check_way(root, uid, gid)
    if top is None:
        return
    for path, st in [(root, top), *_lstats(own_dirs)]:
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(f"{path} is not a directory but a symlink; hdenv never made it:"
                             " remove it, or use a store of your own (--store, HDENV_STORE)")
        trusted = st.st_uid == uid or (st.st_uid == 0 and not st.st_mode & 0o002) or \
            (gid is not None and st.st_gid == gid and _member(st.st_uid, gid))
        if not trusted:
            raise UserError(f"{path} belongs to {_user(st.st_uid)}, not to you, and is not a"
                            " store of a group you are in: another user could have put"
                            " anything in it; use a store of your own (--store, HDENV_STORE)")
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise UserError(f"{path} is writable by every user, so anyone could have put"
                            " software in it; use a store of your own (--store, HDENV_STORE),"
                            " or `chmod o-w` it if it is yours")


def _check_way(root: Path, uid: int, gid: int | None) -> None:
    """UserError for a symlink another user made on the store's path as written, or a
    directory above the store (on its real path) that another user owns or that
    everyone may write without the sticky bit: either can swap the store for theirs."""
    def trusted(owner: int) -> bool:
        return owner in (0, uid) or (gid is not None and _member(owner, gid))

    path = Path(os.path.abspath(root))
    for part in [*reversed(path.parents), path]:
        try:
            st = os.lstat(part)
        except OSError:
            break  # the rest is made now, by this user
        if stat.S_ISLNK(st.st_mode) and not trusted(st.st_uid):
            raise UserError(f"{part} is a symlink that {_user(st.st_uid)} made, not you: they"
                            " chose where your store is and could swap it for their own; use"
                            " a store of your own (--store, HDENV_STORE)")
    real = Path(os.path.realpath(root))
    for part in reversed(real.parents):
        try:
            st = os.stat(part)
        except OSError:
            break
        if not trusted(st.st_uid):
            raise UserError(f"{part} belongs to {_user(st.st_uid)}, not to you, and the store"
                            f" {root} is inside it: they could swap the store for their own;"
                            " use a store of your own (--store, HDENV_STORE)")
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise UserError(f"{part} is writable by every user and the store {root} is inside"
                            " it: anyone could swap the store for their own; use a store of"
                            " your own (--store, HDENV_STORE)")


def _member(uid: int, gid: int) -> bool:
    """Whether the user `uid` is in the group `gid` (as its primary group, or listed)."""
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    if user.pw_gid == gid:
        return True
    try:
        return user.pw_name in grp.getgrgid(gid).gr_mem
    except KeyError:
        return False


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

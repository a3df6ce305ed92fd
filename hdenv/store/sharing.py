"""Stores shared by a Unix group: how they are recognised and what modes they need.

A store is *shared* when its root directory is set-gid and group-writable
(`hdenv store fix-permissions --group G` makes it so). The mode of the root is
the whole configuration, so every member's hdenv agrees without any setting:

- Directories are set-gid, so everything created below them belongs to the
  store's group whoever creates it.
- While it writes to a shared store, hdenv clears the group bits of its umask
  (a member's `umask 022` or `077` would otherwise make new directories, lock
  files and build outputs closed to the other members). Only the group bits:
  what the world may do stays the user's choice.
- Artifacts are read-only once built, as in a private store: every file loses
  its write bits. Their *directories* keep the group's write bit (and only
  the group's), because removing a tree needs write access to each directory
  in it and only a file's owner may chmod it: without that bit, `gc` run by any
  member but the one who built an artifact could not delete it. The owner
  class has no write bit, so the builder cannot modify an artifact by accident,
  and no member can change a file in place.
- Lock files are created readable and writable by the group, so any member can
  take an exclusive lock on them (see `fsutil.file_lock`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

from ..errors import UserError
from . import fdtree
from .safeio import check_root_may_write

GROUP_RWX = 0o070
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_umask_lock = threading.Lock()
_adopted: set[str] = set()


def is_shared(root: Path) -> bool:
    """Set-gid and group-writable root: the store is meant for a whole group."""
    try:
        mode = os.stat(root).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_ISGID) and bool(mode & stat.S_IWGRP)


def current_umask() -> int:
    """The process umask, without the race of setting it to read it where possible."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o077)
    os.umask(old)
    return old


def adopt(root: Path) -> bool:
    """Before writing to the store at `root`: if it is shared, open the umask to the group.

    Returns whether the store is shared. The umask is process-wide and build
    processes inherit it, which is what makes their output group-readable.
    """
    if not is_shared(root):
        return False
    with _umask_lock:
        if str(root) not in _adopted:
            mask = current_umask()
            if mask & GROUP_RWX:
                os.umask(mask & ~GROUP_RWX)
            _adopted.add(str(root))
    return True


def read_only_mode(mode: int, is_dir: bool, shared: bool) -> int:
    """The mode a file or directory of a finished artifact gets (as Nix canonicalises).

    No write bits; no setuid, setgid or sticky bit (a directory of a shared
    store keeps its set-gid bit, which is how the group owns what is in it);
    the owner can read (and enter) everything, so the tree can be hashed.
    """
    keep = stat.S_ISGID if shared and is_dir else 0
    mode = (stat.S_IMODE(mode) & ~((SPECIAL_BITS & ~keep) | 0o222)) | (0o500 if is_dir else 0o400)
    if shared and is_dir:
        mode |= GROUP_RWX
    elif shared:
        mode |= 0o040 | (0o010 if mode & 0o100 else 0)
    return mode


def new_dir_mode(shared: bool) -> int:
    """A directory made aside (mkdtemp: 0700) and renamed into the store."""
    return 0o2775 if shared else 0o755


def read_only(root: Path) -> bool:
    """The store exists and this user may not write to it."""
    return root.is_dir() and not os.access(root, os.W_OK)


def check_writable(root: Path, *inside: Path) -> None:
    """A one-line UserError, before anything is written, if the store is read-only for us.

    The usual case is a user pointing at a site store they may only read: it
    can be their upstream instead. A member of a shared store's group who
    cannot write to it has met a store whose modes need repairing.
    """
    for path in (root, *inside):
        if os.path.isdir(path) and not os.access(path, os.W_OK):
            raise UserError(
                f"cannot write to the store {root}: {path} is read-only for you; to build on"
                f" top of it, use a store of your own with upstreams = [\"{root}\"] in"
                " config.toml (if it is your group's shared store: `hdenv store"
                " fix-permissions`)")


class Repair:
    """What `fix_permissions` did: paths changed, and those it was not allowed to change."""

    def __init__(self) -> None:
        self.changed = 0
        self.refused: list[str] = []


STICKY_DIRS = {("tmp",), ("logs",)}
"""Top-level directories whose entries belong to one member each (`tmp/<uid>/`, a
failed build's log): sticky, as /tmp is, so no other member can rename one away and
put a directory (or a link) of theirs in its place while its owner writes there.
The sticky bit spares the directory's owner, so these two are made by
`fix_permissions` (an administrator's, typically root's), not by whichever member
builds first."""


def _wanted_mode(mode: int, is_dir: bool, rel: tuple[str, ...]) -> int:
    """The mode a path `rel` (components under the store root) should have in a shared store."""
    if rel[0] == "artifacts" and len(rel) >= 4:  # artifacts/NAME/VERSION/HASH and below
        # set-gid as a directory built in the shared store has it (inherited from tmp/)
        return read_only_mode(mode | (stat.S_ISGID if is_dir else 0), is_dir, shared=True)
    mode = stat.S_IMODE(mode)
    if is_dir and rel in STICKY_DIRS:
        return mode | stat.S_ISGID | GROUP_RWX | stat.S_ISVTX
    if is_dir:
        return mode | stat.S_ISGID | GROUP_RWX
    if rel[0] == "locks":
        return mode | 0o060
    return mode | 0o040 | (0o010 if mode & 0o100 else 0)


def fix_permissions(root: Path, group: str | None = None) -> Repair:
    """Make the store at `root` shared by `group` (default: the root's group), or repair it.

    Every directory becomes set-gid and group-writable (artifact directories:
    group-writable only, see the module doc), every path gets the group, lock
    files become group-writable, everything else group-readable. In-progress
    build directories under tmp/ are left alone. Paths this user may not
    change (owned by others) are counted, not fatal: each owner runs it. Root
    refuses a store others can write to (one line, as for `build`).
    """
    import grp

    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise UserError(f"no group named {group!r}") from None
    else:
        gid = os.stat(root).st_gid if root.is_dir() else os.getgid()
    subs = ("src", "specs", "artifacts", "profiles", "names", "tmp", "locks", "logs")
    # root walking a tree others can write to is how a member makes root chmod a file
    # of root's: root refuses such a store, as `build` does (fdtree alone stops links,
    # not a member's own files hard-linked or renamed under root's feet)
    check_root_may_write(root, [root / s for s in subs])
    root.mkdir(parents=True, exist_ok=True)
    for sub in subs:
        (root / sub).mkdir(exist_ok=True)
    repair = Repair()

    def want(rel: str, st: os.stat_result) -> int:
        is_dir = stat.S_ISDIR(st.st_mode)
        if not rel:
            return stat.S_IMODE(st.st_mode) | stat.S_ISGID | GROUP_RWX
        return _wanted_mode(st.st_mode, is_dir, tuple(rel.split("/")))

    # through directory descriptors, each change to the inode that was listed, never
    # following a link a member swaps in; a directory is opened to the group only once
    # everything in it is done, so root (making its store shared) never works in a
    # directory a member can already change (fdtree.change_modes)
    changed: list[str] = []
    refused = fdtree.change_modes(root, want, skip=lambda rel: rel == "tmp", group=gid,
                                  changed=changed)
    repair.changed = len(changed)
    repair.refused = [str(root / r) if r != "." else str(root) for r in refused]
    return repair

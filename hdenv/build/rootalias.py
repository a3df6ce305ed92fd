"""Builds see the store through a path of a fixed length, so their binaries can move.

A build that compiles its prefix into a binary (`-DDATADIR="$PREFIX/share"`,
autotools' `sysconfdir`, a dependency's include directory in debug info)
leaves a C string of the store root's length there. Relocation rewrites such
a string in place, so without room it could only ever move into a shorter
root. Spack pads install paths (`padded_length`) and conda builds under a long
placeholder prefix for the same reason.

Here the build sees `$PREFIX`, its dependencies and their search paths through
an *alias* of the store root: a private directory in the user's `tmp/<uid>/`
whose own path is `PADDED_ROOT_LENGTH` bytes long, holding `artifacts/NAME`
links to the store's directories of the names the build uses and, for the
artifact being built, a real directory: the build writes there, not into the store, so a
member of a group store who exchanges the artifact's path meanwhile redirects
nothing. Compilers also map the real `<root>/artifacts` to the alias in debug
info and `__FILE__` (`-ffile-prefix-map`), for paths a dependency's `.pc` or
CMake file names by the real root. After the script, every file the build
wrote is rewritten from the alias to the real root (`unalias`): text to the
plain root, binary strings in place as slashes plus the root
(`////home/a/store/artifacts/...`, the same path to the kernel), so each keeps
`PADDED_ROOT_LENGTH` bytes of room that a later pull into another root uses
(`exchange/relocate.py`); then it is moved into the artifact directory by
descriptor (`move_into`).

The spec and so the id never see the alias: it only changes where a build
looks, not what it is. A store root too long to leave room for the alias
gets an alias as short as it can be (its binaries move only into roots no longer
than it, as before).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import BuildError
from ..exchange.relocate import PADDED_ROOT_LENGTH, CannotRelocate, Relocator
from ..store import fdtree
from ..store.layout import Store
from ..store.tmpdirs import temp_padded_dir

COMPILE_FLAG_VARS = ("CFLAGS", "CXXFLAGS", "FFLAGS", "FCFLAGS")


@contextlib.contextmanager
def root_alias(store: Store, used: Iterable[str] = (), own: str | None = None
               ) -> Iterator[Path]:
    """The alias of the store root for one build, removed after (without following a link).

    A private directory whose `artifacts/NAME` entries are links to this store's
    `artifacts/NAME` for the artifacts the build `used` (an upstream's are named by
    their own path), but for the NAME of `own`, the artifact being built: a real
    directory there, with a link for each used build of that name and, for `own`, a
    real directory, where the build writes, nowhere in the store (`move_into`).

    One link a name, not a directory pair and a link an artifact: at a closure of 460
    the alias took 140-170 ms to make and remove on ext4, 6-13 ms so. What a build
    sees of the store is unchanged: the sandbox binds the used artifacts' own
    directories only, and an unsandboxed build sees the real root anyway.
    """
    alias = temp_padded_dir(store, "root-", PADDED_ROOT_LENGTH)
    try:
        own_name = own.split("/")[0] if own is not None else None
        names: dict[str, None] = {}
        for aid in dict.fromkeys(used):
            where = store.artifact_dir(aid)
            if where != store.own_artifact_dir(aid) or aid == own:
                continue
            name = aid.split("/")[0]
            if name == own_name:
                _add(alias, aid, where)  # beside the build's own directory
            else:
                names[name] = None
        top = fdtree.make_dirs(alias, ["artifacts"])
        try:
            for name in names:
                os.symlink(store.artifacts / name, name, dir_fd=top)
        finally:
            os.close(top)
        if own is not None:
            _add(alias, own, None)
        yield alias
    finally:
        fdtree.remove_tree(alias)


def _add(alias: Path, aid: str, target: Path | None) -> None:
    """`artifacts/NAME/VERSION/HASH` in the alias: a link to `target`, or (None) a real
    directory; an entry already there (a dependency named twice) is left as it is."""
    *parents, hash_ = aid.split("/")
    parent = fdtree.make_dirs(alias, ["artifacts", *parents])
    try:
        if target is None:
            os.mkdir(hash_, 0o700, dir_fd=parent)
        else:
            with contextlib.suppress(FileExistsError):
                os.symlink(target, hash_, dir_fd=parent)
    finally:
        os.close(parent)


def own_dir(alias: Path, aid: str) -> Path:
    """Where the build of `aid` writes: its `$PREFIX` (see `root_alias`)."""
    return alias.joinpath("artifacts", *aid.split("/"))


def move_into(alias: Path, aid: str, prefix_fd: int, prefix: Path) -> None:
    """Move what the build of `aid` wrote in the alias into the artifact directory open as
    `prefix_fd` (renames between two descriptors: nothing follows a path a member of a
    group store could change), and leave a link to its real path in its place, for the
    checks that run `$PREFIX/bin/...` afterwards."""
    *parents, hash_ = aid.split("/")
    parent = fdtree.open_dirs(alias, ["artifacts", *parents])
    try:
        src = fdtree.open_dir(hash_, dir_fd=parent)
        try:
            for name in sorted(os.listdir(src)):
                _move(src, name, prefix_fd)
        finally:
            os.close(src)
        os.rmdir(hash_, dir_fd=parent)
        os.symlink(prefix, hash_, dir_fd=parent)
    finally:
        os.close(parent)


def _move(src: int, name: str, dest: int) -> None:
    """Rename `name` from `src` to `dest`; a directory needs u+w for that (its `..`
    changes), which a build may have taken away: given for the move, then taken back."""
    st = os.stat(name, dir_fd=src, follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    writable = not stat.S_ISDIR(st.st_mode) or mode & stat.S_IWUSR
    pinned = None if writable else fdtree.pin(src, name, st)
    try:
        if pinned is not None:
            fdtree.chmod_pinned(pinned, mode | stat.S_IWUSR)
        os.rename(name, name, src_dir_fd=src, dst_dir_fd=dest)
    finally:
        if pinned is not None:
            fdtree.chmod_pinned(pinned, mode)
            os.close(pinned)


def alias_environment(env: dict[str, str], root: Path, alias: Path) -> None:
    """Make every path into `<root>/artifacts` in `env` go through the alias, and have the
    compilers record the alias for such paths they meet by the real root."""
    artifacts, aliased = f"{root}/artifacts", f"{alias}/artifacts"
    relocator = Relocator(artifacts, aliased)
    for key, value in env.items():
        env[key] = relocator.text(value)
    mapping = f"-ffile-prefix-map={artifacts}={aliased}"
    for var in COMPILE_FLAG_VARS:
        if var in env:
            env[var] = f"{env[var]} {mapping}"


def unalias(prefix_fd: int, alias: Path, root: Path) -> int:
    """Rewrite every mention of the alias under the directory open as `prefix_fd` (the
    build's own `$PREFIX` in the alias) to the real root (binary strings padded in
    place); the number of files and links changed.

    Entries are reached from that descriptor and never through a link; patchelf,
    which takes a path, gets the open file's `/proc/PID/fd/N` path. What the build
    left unreadable or read-only is opened for the rewrite and gets its mode back.
    """
    relocator = Relocator(str(alias), str(root))
    changed = 0

    def restore(_rel: str, fd: int, st: os.stat_result) -> None:
        if stat.S_IMODE(os.fstat(fd).st_mode) != stat.S_IMODE(st.st_mode):
            os.fchmod(fd, stat.S_IMODE(st.st_mode))

    for dir_fd, name, rel, st in fdtree.walk_at(prefix_fd, add=stat.S_IRWXU, leave=restore):
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name, dir_fd=dir_fd)
            moved = relocator.link_target(target)
            if moved != target:
                os.unlink(name, dir_fd=dir_fd)
                os.symlink(moved, name, dir_fd=dir_fd)
                changed += 1
        elif stat.S_ISREG(st.st_mode):
            changed += _unalias_file(relocator, dir_fd, name, rel, st)
    return changed


def _unalias_file(relocator: Relocator, dir_fd: int, name: str, rel: str,
                  st: os.stat_result) -> int:
    pinned = fdtree.pin(dir_fd, name, st)  # the inode listed, never a link
    if pinned is None:
        raise BuildError(f"{rel} changed while its build was being finished")
    mode = stat.S_IMODE(st.st_mode)
    current = mode
    try:
        if not mode & stat.S_IRUSR:  # a build may leave a file write-only
            current = mode | stat.S_IRUSR
            fdtree.chmod_pinned(pinned, current)
        with open(fdtree.proc_path(pinned), "rb") as f:
            data = f.read()
        try:
            new = relocator.file_data(rel, data)
        except CannotRelocate as e:
            raise BuildError(f"cannot rewrite the build's root alias: {e}") from None
        if new == data:
            return 0  # most files: nothing written, no mode touched
        if not mode & stat.S_IWUSR:  # or read-only
            current |= stat.S_IWUSR
            fdtree.chmod_pinned(pinned, current)
        with open(fdtree.proc_path(pinned), "r+b") as f:
            f.write(new)
            f.truncate()
        # patchelf is another process: this process's descriptor, by its pid
        relocator.after_write(rel, Path(f"/proc/{os.getpid()}/fd/{pinned}"))
        return 1
    finally:
        try:
            if current != mode:
                fdtree.chmod_pinned(pinned, mode)
        finally:
            os.close(pinned)

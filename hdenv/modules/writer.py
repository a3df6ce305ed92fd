"""Replacing a modulefile tree in one step.

The new tree is written beside the old one (same parent, same file system)
and swapped in with `renameat2(RENAME_EXCHANGE)`, so someone running `module
avail` at that moment sees the old tree or the new one, never a mix and never
nothing. Where the kernel or file system cannot exchange (NFS, not Linux),
the old tree is renamed away and the new one renamed in: a gap of one rename.
Modules of artifacts that are gone simply are not in the new tree.

A directory is only ever replaced if an earlier run wrote it (it holds
`MARKER`), or if it is empty: a mistyped `--out $HOME` must not be deleted.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import BuildError, UserError
from ..store.fsutil import remove_tree

MARKER = ".hdenv-modulefiles.json"
CACHE_DIR = ".lmod-cache"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_target(out: Path) -> None:
    """Refuse to replace anything but an earlier tree or an empty directory."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"{out} exists and is not a directory written by hdenv modulefiles")
    if not (out / MARKER).is_file() and any(out.iterdir()):
        raise UserError(f"{out} is not empty and was not written by hdenv modulefiles;"
                        " give a new or empty directory")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories; False where that is not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _write(root: Path, files: dict[str, str], dirs: list[str], info: dict[str, object]) -> None:
    dir_mode = 0o777 & ~_umask()
    file_mode = 0o666 & ~_umask()
    os.chmod(root, dir_mode)
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, text in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.chmod(path, file_mode)
    (root / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.chmod(root / MARKER, file_mode)


def replace_tree(out: Path, files: dict[str, str], dirs: list[str],
                 info: dict[str, object]) -> None:
    """Make `out` hold exactly `files` (and the empty `dirs`), in one swap."""
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        _write(aside, files, dirs, {**info, "hdenv": __version__})
        if not os.path.lexists(out):
            try:
                os.rename(aside, out)
                return
            except OSError:
                check_target(out)  # someone made it meanwhile: replace it as below
        if not _exchange(aside, out):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
            os.rename(aside, out)
            aside = old
    finally:
        remove_tree(aside)


# -- Lmod's spider cache -------------------------------------------------------

LMOD_LIBEXEC = Path("/usr/share/lmod/lmod/libexec")
_UNSAFE_FOR_CACHE = set(" \t\n*?[]'\"\\$`;&|<>(){}")


def cache_tool() -> str | None:
    """Lmod's `update_lmod_system_cache_files`: beside $LMOD_DIR, on PATH, or Debian's."""
    candidates = []
    if os.environ.get("LMOD_DIR"):
        candidates.append(Path(os.environ["LMOD_DIR"]) / "update_lmod_system_cache_files")
    found = shutil.which("update_lmod_system_cache_files")
    if found:
        candidates.append(Path(found))
    candidates.append(LMOD_LIBEXEC / "update_lmod_system_cache_files")
    return next((str(c) for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def check_cache_path(out: Path, store_root: Path) -> str:
    """The tool to run; a UserError before anything is written if it cannot run.

    The tool splits unquoted paths, and Lmod writes the PATH entries of
    modules into the cache between plain double quotes: a tree or store path
    with such characters gives a broken cache.
    """
    tool = cache_tool()
    if tool is None:
        raise UserError("--spider-cache needs Lmod's update_lmod_system_cache_files"
                        " (not found beside $LMOD_DIR, on PATH or in /usr/share/lmod)")
    bad = sorted(set(str(out)) & _UNSAFE_FOR_CACHE)
    if bad:
        raise UserError(f"--spider-cache: Lmod's update_lmod_system_cache_files cannot handle"
                        f" {''.join(bad)!r} in the path {str(out)!r}; choose another --out")
    bad = sorted(set(str(store_root)) & set('"\\\n'))
    if bad:
        raise UserError(f"--spider-cache: Lmod's spider cache cannot hold paths with"
                        f" {''.join(bad)!r}, as the store path {str(store_root)!r} has")
    return tool


def build_spider_cache(tool: str, out: Path, modulepath: str) -> Path:
    """Run Lmod's own cache builder on the final tree; returns an lmodrc.lua naming it.

    Lmod uses a system cache only when an lmodrc lists it (`scDescriptT`), so
    the file written here is what a site adds to `LMOD_RC` (or copies into its
    own lmodrc.lua). The cache lives in the tree and goes with it on a re-run.
    """
    from .quote import lua_quote

    cache = out / CACHE_DIR
    stamp = cache / "timestamp"
    proc = subprocess.run([tool, "-d", str(cache), "-t", str(stamp), modulepath],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not (cache / "spiderT.lua").is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BuildError(f"modulefiles written, but update_lmod_system_cache_files failed:"
                         f" {tail[0]}")
    rc = cache / "lmodrc.lua"
    rc.write_text("-- Generated by hdenv modulefiles --spider-cache: add to LMOD_RC.\n"
                  f"scDescriptT = {{\n  {{ dir = {lua_quote(str(cache))},"
                  f" timestamp = {lua_quote(str(stamp))} }},\n}}\n")
    return rc

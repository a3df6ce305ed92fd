"""A tree's size as `du -sB1` counts it, with `os` only (for `hdenv show` on the
shell function's `python -I -S` path, where fdtree's `pathlib` costs 8 ms).

Walked as fdtree walks: without recursion, through directory descriptors opened
O_NOFOLLOW and checked to be the inode that was listed, only the current
branch's descriptors open. A directory that cannot be read as it is (mode 000)
counts its own blocks only: `show` never changes a mode.
"""

from __future__ import annotations

import os

_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = 0o040000
_FORMAT = 0o170000
_DEEP = 256


def _entries(fd: int) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(fd) as it:
            return list(it)
    except OSError:
        return []


def _enter(fd: int, name: str, listed: os.stat_result) -> int | None:
    try:
        child = os.open(name, _FLAGS, dir_fd=fd)
    except OSError:
        return None
    st = os.fstat(child)
    if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino):  # replaced since listed
        os.close(child)
        return None
    return child


def size(root: str) -> int:
    """Allocated bytes of everything below `root` (hard links once; the root's own
    blocks are the caller's); 0 when `root` is no directory (or a symlink)."""
    try:
        root_fd = os.open(root, _FLAGS)
    except OSError:
        return 0
    total = 0
    seen: set[tuple[int, int]] = set()
    frames = [(root_fd, iter(_entries(root_fd)))]
    try:
        while frames:
            fd, entries = frames[-1]
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                is_dir = st.st_mode & _FORMAT == _DIRECTORY
                if st.st_nlink > 1 and not is_dir:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
                if is_dir:
                    if len(frames) >= _DEEP:
                        from .fdtree import more_descriptors

                        more_descriptors()
                    child = _enter(fd, entry.name, st)
                    if child is not None:
                        frames.append((child, iter(_entries(child))))
                        break
            else:
                frames.pop()
                os.close(fd)
    finally:
        for fd, _entries_left in frames:
            os.close(fd)
    return total

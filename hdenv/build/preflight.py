"""Everything about a stack that can be wrong, checked before the store is touched.

Planning writes: local source directories are stored as tarballs to get their
keys, host programs are hashed into the host cache. So whatever can make
planning fail on the user's input (a `path` source that is missing or holds
a symlink out of its tree, a host program that is not installed) is looked
at here first, and reported with the stack file's FILE:LINE.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import hostpkgs
from ..errors import UserError
from ..store.sources import check_local_source
from . import host, hostlibs
from .stackfile import Stack


def preflight(stack: Stack) -> None:
    """Raise a UserError (FILE:LINE) for the first input problem planning would hit."""
    file = str(stack.path)
    host.basic_tool_programs()
    for decl in stack.hosts.values():
        lookups: list[tuple[str, Callable[[str], object]]] = [
            *((p, host.resolve_program) for p in decl.programs),
            *((lib, hostlibs.find_library) for lib in decl.libraries)]
        for wanted, find in lookups:
            try:
                find(wanted)
            except UserError as e:
                raise UserError(f"host.{decl.name}: {e.message}", file=file,
                                line=decl.line) from None
        modules = [m for m in decl.pkgconfig if not m.startswith("/")]
        if modules:  # `pkgconfig = ["yaml-0.1"]`: a .pc file of each on this host?
            try:
                hostlibs.find_pc_modules(modules, f"host.{decl.name}")
            except UserError as e:
                raise UserError(e.message, file=file, line=decl.line) from None
        if decl.packages:  # installed? (before the store is touched)
            try:
                hostpkgs.installed(decl.packages, f"host.{decl.name}")
            except UserError as e:
                raise UserError(e.message, file=file, line=decl.line) from None
    checked: set[Path] = set()
    for variant in stack.variants:
        for pkg in variant.packages.values():
            for source in [*pkg.sources, *pkg.patches]:
                if source.path is None:
                    continue
                local = stack.base_dir / source.path
                if local in checked:
                    continue
                checked.add(local)
                try:
                    if not source.unpack and local.is_dir():
                        raise UserError(f"source path {str(local)!r} is a directory:"
                                        " unpack = false keeps a single file")
                    check_local_source(local)
                except UserError as e:
                    raise UserError(f"packages.{pkg.name}: {e.message}", file=file,
                                    line=pkg.sources_line or pkg.line) from None

"""Can builds install into this store path?

Artifacts live at `<store>/artifacts/...` and that path ends up in PATH,
LD_LIBRARY_PATH-like variables, run paths, pkg-config files and Makefiles.
A `:` splits a PATH entry in two and a control character breaks every
line-oriented file, so such a store is refused before anything is written.
Whitespace and shell/make metacharacters are legal but most upstream build
systems mis-quote them (bzip2's Makefile cannot install into `/a b/`), so the
user is told once, at build time, rather than left to decode a failed build.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

SHELL_OR_MAKE_SPECIAL = frozenset(" \t$\"'\\`;&|<>()*?[]#~=%{}!")


def check_store_path(root: Path) -> str | None:
    """UserError for an unusable store path; a one-line warning (or None) for a risky one."""
    text = str(root)
    bad = sorted({c for c in text if c == ":" or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise UserError(f"store path {text!r} contains {shown}: it cannot be used in PATH-like "
                        "variables; choose another store (HDENV_STORE or --store)")
    risky = sorted({c for c in text if c in SHELL_OR_MAKE_SPECIAL or c.isspace()})
    if risky:
        return (f"warning: store path {text!r} contains {' '.join(repr(c) for c in risky)}; "
                "many build systems cannot install into such a path")
    return None

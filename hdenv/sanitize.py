"""Text from stack files and other stores, made safe to print on a terminal.

A description, a script line or an environment value may come from a stack
file someone else wrote or from another user's store; printed raw, an escape
sequence in it could write the clipboard (OSC 52), retitle the window (OSC 2)
or clear the screen (CSI 2J). Like ssh and git, hdenv shows every C0 and C1
control character but newline and tab as a visible `\\xNN` instead. Stdlib
only, no `re`: `avail` and `spider` on the fast path print through it.
"""

from __future__ import annotations

_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0b, 0x20),
                                        *range(0x7f, 0xa0))}


def printable(text: str) -> str:
    """`text` with control characters (not newline or tab) shown as `\\xNN`."""
    return text.translate(_VISIBLE)

"""String literals for Lua and Tcl modulefiles that read back exactly as the value.

Store paths, descriptions and profile variables end up inside modulefiles that
Lmod runs as Lua and Environment Modules runs as Tcl; a value that closes its
literal early would be code. Each function returns a complete literal.
"""

from __future__ import annotations

_TCL_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       "_-./,:=+@%^~")
_PLAIN = _TCL_PLAIN | {" "}
# Control characters other than tab and newline: `source` stops at \x1a (^Z).
_CONTROL = frozenset(chr(c) for c in (*range(32), 127)) - {"\t", "\n"}
_TCL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\f": "\\f", "\v": "\\v"}


def lua_quote(value: str) -> str:
    """A Lua long bracket `[==[...]==]` of a level whose closing the value lacks.

    Values of letters, digits, spaces and `_-./,:=+@%^~` only are plainly
    double-quoted, for readability.

    Long brackets keep quotes, backslashes and `$` as they are, but Lua drops
    a newline right after the opening bracket (so one more is added) and turns
    any carriage return into a newline: such values become a quoted string
    with decimal escapes instead. Levels start at 1 because Lua 5.1 refuses a
    nested `[[` inside a level-0 bracket.
    """
    if value and set(value) <= _PLAIN:
        return f'"{value}"'  # nothing to escape: the readable form
    if "\r" in value:
        return lua_escaped(value)
    level = 1
    while True:
        close = "]" + "=" * level + "]"
        if (value + close).find(close) == len(value):
            break
        level += 1
    lead = "\n" if value.startswith("\n") else ""
    return "[" + "=" * level + "[" + lead + value + close


def lua_escaped(value: str) -> str:
    """A double-quoted Lua string; everything but printable ASCII as `\\ddd` bytes."""
    out = ['"']
    for ch in value:
        if " " <= ch <= "~" and ch not in '"\\':
            out.append(ch)
        else:
            out.extend(f"\\{b:03d}" for b in ch.encode("utf-8", "surrogateescape"))
    out.append('"')
    return "".join(out)


def _braces_balanced(value: str) -> bool:
    depth = 0
    for ch in value:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def tcl_quote(value: str) -> str:
    """One Tcl word: `{value}` when braces keep it verbatim, else backslash-escaped.

    Inside braces Tcl substitutes nothing, except that a backslash still
    escapes a brace or a newline (and stays in the value), so braces are used
    only for values without backslashes whose braces balance, and without
    control characters (`source` takes ^Z for the end of the file). Other values
    escape every character that is not plainly literal; non-ASCII characters
    pass through as they are, so the file's encoding decides them both ways.
    """
    if value and set(value) <= _TCL_PLAIN:
        return value  # a bare word needs nothing
    if "\\" not in value and _braces_balanced(value) and not _CONTROL & set(value):
        return "{" + value + "}"
    out = []
    for ch in value:
        if ch in _TCL_PLAIN or ord(ch) > 127:
            out.append(ch)
        elif ch in _TCL_ESCAPES:
            out.append(_TCL_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append("\\" + ch)
    return "".join(out)

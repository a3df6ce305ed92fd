"""How catalog output reaches a person: width, colour, pager, `-t`, `--redirect`.

Module users expect `module avail` to fit their terminal, colour its markers,
page long output and stay plain when piped. This runs on the fast path
(`python -I -S`), so it imports only `posix` and `sys`: no `os`, `shutil` or
`subprocess` (each costs milliseconds on every `hdenv avail`).
"""

from __future__ import annotations

import posix
import sys

from ..errors import UserError
from ..sanitize import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_WIDTH = 78
COLORS = ("auto", "always", "never")
# the markers avail, spider and loaded print, and their colours (ANSI SGR)
MARKS = (("(D,L)", "1;32"), ("(D)", "1"), ("(L)", "32"), ("(sticky)", "36"))


class Output:
    """The output options a catalog command takes off its arguments."""

    def __init__(self, color: str = "auto"):
        self.color = color


def take_options(args: list[str]) -> tuple[list[str], Output]:
    """Remove `--redirect` (a no-op: hdenv writes to stdout already) and `--color[=X]`."""
    out, rest, i = Output(), [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        if a == "--redirect":
            pass
        elif a.startswith("--color="):
            out.color = a[len("--color="):]
        elif a == "--color":
            if i + 1 >= len(args):
                raise UserError("--color needs a value: auto, always or never")
            i += 1
            out.color = args[i]
        else:
            rest.append(a)
        i += 1
    if out.color not in COLORS:
        raise UserError(f"--color must be auto, always or never, not {out.color!r}")
    return rest, out


def isatty(fd: int = 1) -> bool:
    try:
        return posix.isatty(fd)
    except OSError:
        return False


def size(environ: Mapping[str, str], fd: int = 1) -> tuple[int, int] | None:
    """(columns, lines) of the terminal on `fd`, COLUMNS/LINES first; None when not one."""
    cols = lines = 0
    try:
        cols, lines = posix.get_terminal_size(fd)
    except (OSError, ValueError):
        if not (environ.get("COLUMNS") or "").isdigit():
            return None
    for var, value in (("COLUMNS", cols), ("LINES", lines)):
        text = environ.get(var) or ""
        if text.isascii() and text.isdigit() and int(text) > 0:
            value = int(text)
        if var == "COLUMNS":
            cols = value
        else:
            lines = value
    return (cols, lines) if cols > 0 else None


def width(environ: Mapping[str, str]) -> int:
    """How wide a header may be: one less than the terminal (never wraps); 0 when the
    output is not a terminal (a file or a pipe: nothing is cut, headers are 78 wide)."""
    found = size(environ)
    return max(8, found[0] - 1) if found else 0


def use_color(mode: str, environ: Mapping[str, str]) -> bool:
    """`always`, `never`, or (auto) a terminal that is not dumb and no NO_COLOR set."""
    if mode == "always":
        return True
    if mode == "never" or environ.get("NO_COLOR"):
        return False
    return isatty(1) and environ.get("TERM", "") not in ("", "dumb")


def paint(text: str) -> str:
    """Colour the markers; the text stays the same but for the escape codes."""
    for mark, sgr in MARKS:
        text = text.replace(mark, f"\033[{sgr}m{mark}\033[0m")
    return text


def pager_command(environ: Mapping[str, str]) -> str | None:
    """HDENV_PAGER, else PAGER, else `less -R`; set and empty turns paging off."""
    for var in ("HDENV_PAGER", "PAGER"):
        if var in environ:
            return environ[var].strip() or None
    return "less -R"


def write(text: str, environ: Mapping[str, str], opts: Output | None = None,
          page: bool = True) -> None:
    """Print `text`: coloured and through a pager only on a terminal, when it is long.

    Its control characters are made visible first (the texts come from stack
    files others wrote); only the colours added here are escape sequences.
    """
    opts = opts or Output()
    text = printable(text)
    if use_color(opts.color, environ):
        text = paint(text)
    found = size(environ) if page and isatty(1) else None
    command = pager_command(environ) if found else None
    long = found is not None and text.count("\n") >= found[1] > 0
    if command and long and _page(text, command, environ):
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def _page(text: str, command: str, environ: Mapping[str, str]) -> bool:
    """Run `sh -c COMMAND` with `text` on its stdin; False when it could not run at all."""
    sys.stdout.flush()
    read_end, write_end = posix.pipe()
    env = {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in environ.items()}
    env.setdefault(b"LESS", b"FRX")
    pid = posix.fork()
    if pid == 0:  # the child: the pager
        try:
            posix.dup2(read_end, 0)
            posix.close(read_end)
            posix.close(write_end)
            posix.execve("/bin/sh", ["sh", "-c", command], env)
        finally:
            posix._exit(127)
    posix.close(read_end)
    data = text.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[posix.write(write_end, data):]
    except BrokenPipeError:
        pass  # the user quit the pager early
    finally:
        posix.close(write_end)
    while True:
        try:
            _, status = posix.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return not (posix.WIFEXITED(status) and posix.WEXITSTATUS(status) == 127)

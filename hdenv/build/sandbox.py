"""The Jinja2 environment every stack-file template is rendered in.

A stack file is input from whoever wrote it, and `hdenv build --dry-run` or
`hdenv show` on a stranger's stack file must be safe. Jinja2's own
`ImmutableSandboxedEnvironment` stops templates from reaching Python internals
(`''.__class__`, `cycler.__init__.__globals__`) and from mutating values. On
top of it, hdenv bounds what a short expression can cost, before the cost is
paid where it can be, else right after:

- values: `*` and `**`, printf-style `%` and `str.format` widths, the
  padding methods and filters (`ljust`, `center`, `zfill`, `|center`,
  `|indent`), and `replace` (chained, it grows exponentially) are refused
  when their result would pass MAX_RESULT characters; every rendered value
  is checked against MAX_VALUE when it is done;
- work: the `range()` calls of one render may produce MAX_RANGE_ITEMS
  items in all (two nested `range(100000)` loops are 10**10 steps), and a
  render that still runs after RENDER_SECONDS is stopped (an interval timer,
  in the main thread, where stack files are read).

Violations raise `jinja2.exceptions.SecurityError`; the stack-file reader
turns that into one line with FILE:LINE.
"""

from __future__ import annotations

import contextlib
import re
import signal
import string
import threading
from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RESULT = 1 << 20  # characters or items one operation may produce
MAX_VALUE = 1 << 20  # characters of one rendered value
MAX_EXPONENT_BITS = 4096  # bits of an integer `**` result
MAX_RANGE_ITEMS = 100_000  # items all `range()` calls of one render may produce
RENDER_SECONDS = 5.0

_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_PADDING = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def _too_wide(number: str | None) -> bool:
    return number is not None and (number == "*" or int(number) > MAX_RESULT)


def _check_printf(fmt: str) -> None:
    for width, precision in _PRINTF.findall(fmt):
        if _too_wide(width or None) or _too_wide(precision or None):
            raise SecurityError(f"a '%' width or precision above {MAX_RESULT}")


def _check_format(fmt: str) -> None:
    """`str.format` specs: no nested (computed) widths, none above MAX_RESULT."""
    for _text, field, spec, _conv in string.Formatter().parse(fmt):
        if field is None or not spec:
            continue
        if "{" in spec:
            raise SecurityError("nested format specs are not allowed in stack files")
        if any(int(n) > MAX_RESULT for n in re.findall(r"\d+", spec)):
            raise SecurityError(f"a format width above {MAX_RESULT}")


def _check_size(size: int, what: str) -> None:
    if size > MAX_RESULT:
        raise SecurityError(f"{what} would make a value of {size} characters"
                            f" (at most {MAX_RESULT})")


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


class StackSandbox(ImmutableSandboxedEnvironment):
    """Sandboxed, StrictUndefined, no autoescape; the size and the work of a render bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False,
                         keep_trailing_newline=True)
        self._range_items = 0
        self.globals["range"] = self._range
        base_center, base_indent = self.filters["center"], self.filters["indent"]
        base_replace, base_format = self.filters["replace"], self.filters["format"]

        def center(value: Any, width: int = 80) -> str:
            _check_size(int(width), "|center")
            return str(base_center(value, width))

        def indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
            pad = len(width) if isinstance(width, str) else int(width)
            _check_size(len(str(value)) * (pad + 1), "|indent")
            return str(base_indent(value, width, *args, **kwargs))

        def replace(ctx: Any, value: Any, old: str, new: str, count: int | None = None) -> str:
            text = str(value)
            _check_size(_replaced_size(text, str(old), str(new),
                                       -1 if count is None else int(count)), "|replace")
            return str(base_replace(ctx, value, old, new, count))

        def fmt(value: Any, *args: Any, **kwargs: Any) -> str:
            _check_printf(str(value))
            return str(base_format(value, *args, **kwargs))

        replace.jinja_pass_arg = base_replace.jinja_pass_arg  # type: ignore[attr-defined]
        self.filters.update(center=center, indent=indent, replace=replace, format=fmt)

    def _range(self, *args: int) -> range:
        items = range(*args)
        self._range_items += len(items)
        if self._range_items > MAX_RANGE_ITEMS:
            raise SecurityError(f"range() would make more than {MAX_RANGE_ITEMS} steps"
                                " in one template")
        return items

    @contextlib.contextmanager
    def budget(self) -> Iterator[None]:
        """One render: a fresh range() budget and, in the main thread, a time limit."""
        self._range_items = 0
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def too_long(_signum: int, _frame: Any) -> None:
            raise SecurityError(f"the template ran longer than {RENDER_SECONDS:g} s")

        previous = signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) \
                        and len(seq) * n > MAX_RESULT:
                    raise SecurityError(f"'*' would make a value of {len(seq) * n} items"
                                        f" (at most {MAX_RESULT})")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and right > 0 and abs(left) > 1 and right * abs(left).bit_length() > \
                MAX_EXPONENT_BITS:
            raise SecurityError(f"'{left} ** {right}' is too large")
        if operator == "%" and isinstance(left, str):
            _check_printf(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any,  # noqa: N805 - Jinja's signature
             **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name in _PADDING and args and isinstance(args[0], int):
                _check_size(args[0] if name != "expandtabs" else args[0] * len(owner),
                            f"str.{name}")
            elif name in ("format", "format_map"):
                _check_format(owner)
            elif name == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
                _check_size(_replaced_size(owner, str(args[0]), str(args[1]), count),
                            "str.replace")
        return super().call(__context, __obj, *args, **kwargs)


def check_value(value: str) -> str:
    """A rendered value must stay small enough to be a spec's field or a shell variable."""
    if len(value) > MAX_VALUE:
        raise SecurityError(f"the value has {len(value)} characters (at most {MAX_VALUE})")
    return value

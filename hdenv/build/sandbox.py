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
- values: `+` of strings, bytes or lists; `*` by the whole size of what is
  repeated (a list of one 1 MB string counts 1 MB an element), bytes too;
  `lipsum()` is capped; a `str.format` string is checked when `.format` is
  looked up (Jinja wraps the method there, so `call` never sees it);
- work: the `range()` calls of one render may produce MAX_RANGE_ITEMS
  items in all (two nested `range(100000)` loops are 10**10 steps), and a
  render that still runs after RENDER_SECONDS is stopped (an interval timer,
  in the main thread, where stack files are read);
- memory: what no single check sees (`a ~ a` doubled ten times, a namespace
  grown in a loop, `|tojson` or `str.join` of a list that repeats one big
  string) is caught by an address-space limit of RENDER_MEMORY above what
  the process already has, for the length of the render (main thread,
  Linux): the allocation fails and the render stops.

Violations raise `jinja2.exceptions.SecurityError`; the stack-file reader
turns that into one line with FILE:LINE.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import string
import threading
from collections.abc import Iterator
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

MAX_RESULT = 1 << 20  # characters or items one operation may produce
MAX_VALUE = 1 << 20  # characters of one rendered value
MAX_EXPONENT_BITS = 4096  # bits of an integer `**` result
MAX_RANGE_ITEMS = 100_000  # items all `range()` calls of one render may produce
RENDER_SECONDS = 5.0
RENDER_MEMORY = 256 << 20  # bytes of address space one render may add
MAX_LIPSUM_WORDS = 10_000  # words lipsum() may make (n * max)

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


def _weight(value: Any) -> int:
    """What str() of `value` would at least hold: characters of its strings and bytes,
    counted through lists and tuples as often as they occur. Iterative, and it stops
    once past MAX_RESULT, so a list that repeats one list a million times costs little."""
    total, todo = 0, [value]
    while todo and total <= MAX_RESULT:
        item = todo.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += len(item)
            todo.extend(item)
        else:
            total += 1
    return total


_statm: list[int] = []  # a descriptor of /proc/self/statm, opened once (renders are many)


def _address_space() -> int | None:
    """This process's current address space in bytes (Linux), None where unknown."""
    try:
        if not _statm:
            _statm.append(os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
        return int(os.pread(_statm[0], 64, 0).split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def _lipsum(n: int = 5, html: bool = True, min: int = 20,  # noqa: A002 - Jinja's names
            max: int = 100) -> str:  # noqa: A002
    if int(n) * int(max) > MAX_LIPSUM_WORDS:
        raise SecurityError(f"lipsum() would make more than {MAX_LIPSUM_WORDS} words")
    return str(generate_lorem_ipsum(n, html, min, max))


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


class StackSandbox(ImmutableSandboxedEnvironment):
    """Sandboxed, StrictUndefined, no autoescape; the size and the work of a render bounded."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False,
                         keep_trailing_newline=True)
        self._range_items = 0
        self.globals["range"] = self._range
        self.globals["lipsum"] = _lipsum
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
        """One render: a fresh range() budget and, in the main thread, a time limit
        and a memory limit (both are process-wide, so only where stack files are read)."""
        self._range_items = 0
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def too_long(_signum: int, _frame: Any) -> None:
            raise SecurityError(f"the template ran longer than {RENDER_SECONDS:g} s")

        previous = signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, RENDER_SECONDS)
        limits = self._limit_memory()
        try:
            yield
        except MemoryError:
            raise SecurityError(f"the template needs more than {RENDER_MEMORY >> 20} MiB"
                                " of memory") from None
        finally:
            if limits is not None:
                resource.setrlimit(resource.RLIMIT_AS, limits)
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    @staticmethod
    def _limit_memory() -> tuple[int, int] | None:
        """Lower the soft address-space limit to RENDER_MEMORY above the current size;
        returns the limits to restore, None when nothing was changed."""
        used = _address_space()
        if used is None:
            return None
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = used + RENDER_MEMORY
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft != resource.RLIM_INFINITY and soft <= cap:
            return None
        try:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        except (ValueError, OSError):
            return None
        return soft, hard

    def wrap_str_format(self, value: Any) -> Any:
        """`'...'.format` is wrapped when it is looked up, so its string is checked here."""
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format",
                                                                         "format_map"):
            _check_format(owner)
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, bytearray, list, tuple)) \
                        and isinstance(n, int) and n > 0:
                    size = (len(seq) if isinstance(seq, (str, bytes, bytearray))
                            else _weight(seq)) * n
                    if size > MAX_RESULT:
                        raise SecurityError(f"'*' would make a value of {size} items"
                                            f" (at most {MAX_RESULT})")
        if operator == "+" and isinstance(left, (str, bytes, bytearray, list, tuple)) \
                and type(left) is type(right):
            _check_size(_weight(left) + _weight(right), "'+'")
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

"""TOML files users write (stack files, recipes, config): one-line errors with FILE:LINE.

tomllib gives no positions, so `LineIndex` recovers the line of a key from the
text, and `load` turns a decoding error into the same one-line `UserError`
whichever kind of file it is.

The parser is tomli, tomllib's own source, whose wheels are compiled: the
5,000-package stack of `benchmarks/bench_build.py` parses in ~100 ms, not
~190 ms (a no-op build of it is asked to take under a second). It is held
below 2.3 (pyproject.toml), so it reads TOML 1.0 as tomllib does, which is
taken where tomli is missing.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from .errors import UserError

try:
    import tomli as tomllib
except ImportError:  # a runtime without it (a copy of the pure-Python modules): slower
    import tomllib  # type: ignore[no-redef]

PARSER = f"{tomllib.__name__} {getattr(tomllib, '__version__', '')}"
"""Which parser read a file: what a saved parse (build/stackcache.py) was made by."""


class LineIndex:
    """Maps dotted key paths (("packages", "app", "env")) to 1-based line numbers.

    A line is a table header or a `key =` line; the lines of a multi-line string a
    key begins are skipped up to the one that ends it. Read with one regular
    expression over the whole text (`_scan`): a line at a time in Python took as
    long as parsing the TOML itself (78-130 ms of a 5,000-package stack). A text with
    a line break other than \\n (\\r, \\v, U+2028...) is read a line at a time
    (`_scan_lines`), as `str.splitlines` counts lines, which the tests compare.
    """

    _header = re.compile(r"^\s*\[\[?\s*([^\[\]#]+?)\s*\]\]?\s*(#.*)?$")
    _part = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
    _key = re.compile(rf"^\s*({_part}(?:\s*\.\s*{_part})*)\s*=")
    # the two above, over a whole text: no part of a match crosses a line's end
    _space = r"[^\S\n]"
    _part_in_text = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
    _line = re.compile(
        rf"^{_space}*(?:\[\[?{_space}*([^\[\]#\n]+?){_space}*\]\]?{_space}*(?:#[^\n]*)?$"
        rf"|({_part_in_text}(?:{_space}*\.{_space}*{_part_in_text})*){_space}*=([^\n]*))",
        re.MULTILINE)
    _other_breaks = re.compile("[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

    def __init__(self, text: str):
        self.lines: dict[tuple[str, ...], int] = {}
        if self._other_breaks.search(text):
            self._scan_lines(text)
        else:
            self._scan(text)

    @classmethod
    def of_lines(cls, lines: dict[tuple[str, ...], int]) -> LineIndex:
        """An index already made of a text (and kept: build/stackcache.py)."""
        index = cls.__new__(cls)
        index.lines = lines
        return index

    def _scan(self, text: str) -> None:
        setdefault = self.lines.setdefault
        split = self._split_cached
        count = text.count
        table: tuple[str, ...] = ()
        lineno, counted = 1, 0  # the line number of offset `counted`
        skip_to = 0  # the lines of a multi-line string end before this offset
        for m in self._line.finditer(text):
            start = m.start()
            if start < skip_to:
                continue
            lineno += count("\n", counted, start)
            counted = start
            header, key, rest = m.groups()
            if header is not None:
                table = split(header)
                setdefault(table, lineno)
                continue
            setdefault(table + split(key), lineno)
            if "'''" in rest or '"""' in rest:  # a multi-line string may begin
                quote = ("'''" if rest.count("'''") == 1
                         else '"""' if rest.count('"""') == 1 else "")
                if quote:  # skip to the first line with an odd count of it
                    skip_to = self._after_string(text, m.end() + 1, quote)

    @staticmethod
    def _after_string(text: str, pos: int, quote: str) -> int:
        """Where the line after the one ending a multi-line string begins (the string
        began on the line before `pos`); past the end if it never ends."""
        while True:
            found = text.find(quote, pos)
            if found < 0:
                return len(text) + 1
            start = text.rfind("\n", 0, found) + 1
            end = text.find("\n", found)
            end = len(text) if end < 0 else end
            if text.count(quote, start, end) % 2 == 1:
                return end + 1
            pos = end + 1

    def _scan_lines(self, text: str) -> None:
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            m = self._header.match(line)
            if m:
                table = self._split(m.group(1))
                self.lines.setdefault(table, lineno)
                continue
            m = self._key.match(line)
            if m:
                path = table + self._split(m.group(1))
                self.lines.setdefault(path, lineno)
                rest = line[m.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) == 1:
                        in_multiline = quote

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', dotted)
        return tuple(p.strip("\"'") for p in parts)

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _split_cached(dotted: str) -> tuple[str, ...]:
        """`_split`, kept: a stack repeats its keys (`version`, `deps`) in every package."""
        return LineIndex._split(dotted)

    def line(self, *path: str) -> int:
        """Line of the longest known prefix of `path` (1 if nothing matches)."""
        for n in range(len(path), 0, -1):
            found = self.lines.get(tuple(path[:n]))
            if found is not None:
                return found
        return 1



NESTING_REPORTED = 100


def deep_line(text: str) -> int:
    """The line where brackets first nest deeper than anyone writes by hand."""
    depth = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        for c in line:
            depth += 1 if c in "[{" else -1 if c in "]}" else 0
            if depth > NESTING_REPORTED:
                return lineno
    return 1


def parse(text: str, file: str) -> dict[str, Any]:
    """`text` as TOML; a syntax error is one line naming `file` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        if line is None:
            m = re.search(r"\(at end of document\)", msg)
            line = text.count("\n") + 1 if m else 1
            msg = msg.replace(" (at end of document)", "")
        raise UserError(f"invalid TOML: {msg}", file=file, line=line) from None
    except RecursionError:
        raise UserError("invalid TOML: arrays or tables nested too deeply", file=file,
                        line=deep_line(text)) from None


def read(path: Path, what: str) -> tuple[dict[str, Any], str]:
    """The parsed file and its text; a missing or unreadable file is one line."""
    text = read_text(path, what)
    return parse(text, str(path)), text


def read_text(path: Path, what: str) -> str:
    """The file's text; a missing or unreadable file is one line."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from None

"""Read config.toml: without tomllib when the file is plain, as it nearly always is.

`import tomllib` (with `re`, `datetime` and `typing` behind it) costs about
25 ms under `python -I -S`, more than the whole rest of an `hdenv load`, and
the load only wants `store`. hdenv's settings are top-level strings,
integers, booleans and arrays of them, so this reads exactly that subset of
TOML. Anything else (escapes, tables, floats, dates, duplicate keys, ...)
makes `scan` return None and `read_config` falls back to tomllib, which
either reads it or reports the error: this module never guesses.
"""

from __future__ import annotations

from .errors import UserError

KNOWN_KEYS = frozenset({"store", "mirrors", "jobs", "build-jobs", "sandbox", "jail",
                        "strict-links", "host-identity", "upstreams", "usage-log",
                        "caches", "trusted-keys", "signing-key", "executor", "slurm-options",
                        "host",  # `[host.NAME]`: host software shared by every stack
                        "default-load", "sticky",  # what `hdenv reset` loads, what purge keeps
                        "repos"})  # recipe repositories, after a stack's own

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_DIGITS = frozenset("0123456789")
_KEY_END = " \t="
_VALUE_END = " \t\r\n,]#"


def _has_control(text: str) -> bool:
    """TOML allows no control characters but tab in strings and comments."""
    return any(c < " " and c != "\t" or c == "\x7f" for c in text)


class _Unsupported(Exception):
    """Outside the subset: let tomllib decide."""


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def skip_comment(self) -> None:
        if self.peek() == "#":
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            comment = self.text[self.pos:end].rstrip("\r")
            if _has_control(comment):
                raise _Unsupported
            self.pos = end

    def rest_of_line(self) -> bool:
        """Blanks and an optional comment; then consume a newline if there is one."""
        self.skip_blanks()
        self.skip_comment()
        for newline in ("\r\n", "\n"):
            if self.text.startswith(newline, self.pos):
                self.pos += len(newline)
                return True
        return False

    def end_of_line(self) -> None:
        """The rest of a line, which must end with a newline or the text."""
        if not self.rest_of_line() and self.peek():
            raise _Unsupported

    def skip_space_in_array(self) -> None:
        while self.rest_of_line():
            pass

    def key(self) -> str:
        start = self.pos
        while self.peek() in _BARE_KEY and self.peek():
            self.pos += 1
        if self.pos == start or (self.peek() and self.peek() not in _KEY_END):
            raise _Unsupported  # quoted or dotted keys, or garbage
        return self.text[start:self.pos]

    def string(self, quote: str) -> str:
        if self.text.startswith(quote * 3, self.pos):
            raise _Unsupported  # multi-line strings
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise _Unsupported
        value = self.text[self.pos + 1:end]
        if (quote == '"' and "\\" in value) or _has_control(value):
            raise _Unsupported  # escapes and control characters
        self.pos = end + 1
        return value

    def scalar(self) -> object:
        start = self.pos
        while self.peek() and self.peek() not in _VALUE_END:
            self.pos += 1
        word = self.text[start:self.pos]
        if word in ("true", "false"):
            return word == "true"
        digits = word[1:] if word[:1] in ("+", "-") else word
        if digits and set(digits) <= _DIGITS and (digits == "0" or digits[0] != "0"):
            return int(word)
        raise _Unsupported  # floats, dates, inf/nan, underscores, leading zeros

    def value(self) -> object:
        c = self.peek()
        if c in ('"', "'"):
            return self.string(c)
        if c == "[":
            self.pos += 1
            items = []
            self.skip_space_in_array()
            while self.peek() != "]":
                if self.peek() in ("", "["):
                    raise _Unsupported  # unterminated, or nested arrays
                items.append(self.value())
                self.skip_space_in_array()
                if self.peek() == ",":
                    self.pos += 1
                    self.skip_space_in_array()
                elif self.peek() != "]":
                    raise _Unsupported
            self.pos += 1
            return items
        return self.scalar()


def scan(text: str) -> dict[str, object] | None:
    """The top-level settings of `text`, or None if it is not plain enough to be sure."""
    scanner = _Scanner(text[1:] if text.startswith("\ufeff") else text)
    data: dict[str, object] = {}
    try:
        while scanner.peek():
            scanner.skip_blanks()
            if scanner.peek() in ("#", "\n", "\r", ""):
                scanner.end_of_line()
                continue
            if scanner.text.startswith(("[host.", "[host]"), scanner.pos):
                # every key from here on belongs to a table: the top-level settings are
                # all read; host declarations are for builds, which read them in full
                data["host"] = {}
                return data
            key = scanner.key()
            scanner.skip_blanks()
            if scanner.peek() != "=":
                raise _Unsupported
            scanner.pos += 1
            scanner.skip_blanks()
            if key in data:
                raise _Unsupported  # a TOML error: tomllib words it
            data[key] = scanner.value()
            scanner.end_of_line()
    except _Unsupported:
        return None
    return data


def read_config(path: str, explicit: bool) -> dict[str, object]:
    """The settings in `path`; {} when an implicit (default) file is absent.

    A missing explicit file, bad TOML or an unknown setting is a UserError
    naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if explicit:
            raise UserError("config file does not exist", file=path) from None
        return {}
    except UnicodeDecodeError:
        raise UserError("not UTF-8 text", file=path) from None
    except OSError as e:
        raise UserError(f"cannot read: {e.strerror}", file=path) from None
    data = scan(text)
    if data is None:
        data = _parse_with_tomllib(text, path)
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise UserError(
            f"unknown setting(s) {', '.join(sorted(unknown))};"
            f" known: {', '.join(sorted(KNOWN_KEYS))}",
            file=path,
        )
    return data


def check_whole(path: str) -> None:
    """Everything in a config file that `scan` stopped reading at its host tables.

    The load path needs only the top-level settings; commands that build read
    the whole file, so a mistake after `[host.NAME]` is still one clear line.
    """
    with open(path, encoding="utf-8") as f:
        data = _parse_with_tomllib(f.read(), path)
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(sorted(unknown))};"
                        f" known: {', '.join(sorted(KNOWN_KEYS))}", file=path)


def _parse_with_tomllib(text: str, path: str) -> dict[str, object]:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.9/3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"invalid TOML: {e}", file=path) from None

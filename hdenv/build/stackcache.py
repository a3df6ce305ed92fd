"""Big stack files, kept parsed between runs.

tomli reads a 5,000-package stack file (775 KB) in 100-230 ms and its line
index takes 60-110 ms more: a quarter of the no-op build issue 25 asks to take
under a second. Both are a function of the text alone, so a copy saved as JSON
(30-50 ms to read back) is never stale: it names the sha256 of the text it was
made from and the parser that made it, and anything else is a miss.

One file per stack path, in the user's own cache directory (usercache.py:
never a store others can write to, whole or not at all), so an edited stack
replaces its entry instead of adding one. JSON, not pickle or marshal: what is
read back is only ever data, whoever wrote it. A file under `MIN_BYTES` is
parsed each time (its parse costs less than the cache's file), and so is one
with a TOML date or time, which JSON cannot hold.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from .. import tomlfile, usercache
from ..tomlfile import LineIndex

MIN_BYTES = 64 * 1024
FORMAT = 1  # raise it when LineIndex or what is saved changes
_SEP = "\n"  # a key's raw text never holds one: LineIndex reads keys line by line


def read(path: Path, what: str) -> tuple[dict[str, Any], str, LineIndex]:
    """The parsed file, its text and its line index, as `tomlfile.read` and `LineIndex`
    would give them; a syntax error is the same one line, and nothing is saved."""
    text = tomlfile.read_text(path, what)
    if len(text) < MIN_BYTES:
        return tomlfile.parse(text, str(path)), text, LineIndex(text)
    key = (f"{FORMAT} {tomlfile.PARSER} "
           + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest())
    entry = usercache.cache_file(
        f"stack-{binascii.crc32(str(path).encode('utf-8', 'surrogateescape')):08x}.json")
    found = _load(entry, key)
    if found is not None:
        return found[0], text, found[1]
    data = tomlfile.parse(text, str(path))
    index = LineIndex(text)
    _save(entry, key, data, index)
    return data, text, index


def _load(entry: str, key: str) -> tuple[dict[str, Any], LineIndex] | None:
    body = usercache.read(entry)
    if body is None:
        return None
    try:
        saved = json.loads(body)
    except ValueError:
        return None
    if not (isinstance(saved, dict) and saved.get("key") == key):
        return None
    data, lines = saved.get("data"), saved.get("lines")
    if not (isinstance(data, dict) and isinstance(lines, dict)
            and all(type(n) is int for n in lines.values())):
        return None
    return data, LineIndex.of_lines({tuple(k.split(_SEP)): n for k, n in lines.items()})


def _save(entry: str, key: str, data: dict[str, Any], index: LineIndex) -> None:
    try:
        body = json.dumps({"key": key, "data": data,
                           "lines": {_SEP.join(k): n for k, n in index.lines.items()}},
                          ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):  # a date or time: no JSON for it
        return
    usercache.write(entry, body.encode("utf-8", "surrogateescape"))

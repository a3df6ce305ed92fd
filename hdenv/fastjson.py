"""JSON without the json package, for the paths that run under `python -I -S`.

`import json` pulls in `re` and `enum`, which is most of a load's start-up
time under `python -S`; the C scanner and string encoder it wraps are enough.
Interpreters without CPython's `_json` accelerator take the json package. The
load fast path, `avail`, `loaded` and `spider` read every file through here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs ms on every load
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - exercised by a test that hides _json
    _json = None  # type: ignore[assignment]


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_ScanContext()) if _json else None  # type: ignore[arg-type]


def loads(text: str) -> Any:
    text = text.strip()
    if _scan is None:
        import json

        return json.loads(text)
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def dumps(obj: Any) -> str:
    """Compact JSON of str, None, bool, int, list/tuple and dict (keys as strings)."""
    if isinstance(obj, str):
        if _json is None:
            import json

            return json.dumps(obj, ensure_ascii=False)
        return str(_json.encode_basestring(obj))
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(x) for x in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def read(path: str) -> Any:
    """The JSON value in the file `path` (FileNotFoundError and ValueError pass through)."""
    with open(path, encoding="utf-8") as f:
        return loads(f.read())

"""JSON for the load fast path, without the json package.

`import json` pulls in `re` and `enum`, which is most of a load's start-up
time under `python -S`; the C scanner and string encoder it wraps are enough.
Interpreters without CPython's `_json` accelerator take the json package.
Used by the load record (shell/envdiff.py) and the usage log (usage/).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
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


def json_loads(text: str) -> Any:
    text = text.strip()
    if _scan is None:
        import json

        return json.loads(text)
    try:
        value, end = _scan(text, 0)
    except Exception:  # StopIteration, or even SystemError from _json's error path
        raise ValueError("not valid JSON") from None
    if end != len(text):
        raise ValueError(f"extra data at character {end}")
    return value


def json_dumps(obj: Any) -> str:
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
        return "[" + ",".join(json_dumps(x) for x in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json_dumps(str(k))}:{json_dumps(v)}"
                              for k, v in obj.items()) + "}"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def read(path: str) -> Any:
    """The JSON value in the file `path` (OSError and ValueError pass through).

    `avail`, `spider` and the index of named profiles read metadata through here.
    """
    with open(path, encoding="utf-8") as f:
        return json_loads(f.read())

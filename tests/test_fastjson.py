"""The small JSON reader/writer of the fast paths, against the json module."""

from __future__ import annotations

import pytest

from hdenv import fastjson


def test_small_json_matches_the_json_module() -> None:
    import json

    value = {"a": [None, True, False, 3, "x\n\"\\ 🚒 \u0001"], "b": {"c": []}}
    assert json.loads(fastjson.dumps(value)) == value
    assert fastjson.loads(json.dumps(value)) == value
    with pytest.raises(ValueError):
        fastjson.loads('{"a": 1} trailing')
    with pytest.raises(ValueError):
        fastjson.loads("")

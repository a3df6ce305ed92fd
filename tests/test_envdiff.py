"""The load record and its undo, on plain dicts."""

from __future__ import annotations

import pytest

from hdenv.shell import envdiff
from hdenv.shell.envdiff import LoadRecord


def load(env: dict[str, str], hash_: str, entries: dict[str, str],
         values: dict[str, str]) -> LoadRecord:
    rec = LoadRecord(hash=hash_, name=hash_)
    for var, entry in entries.items():
        envdiff.prepend(env, rec, var, [entry], keep_default=(var == "MANPATH"))
    for var, value in values.items():
        envdiff.set_var(env, rec, var, value)
    return rec


def test_round_trip_restores_exactly() -> None:
    env = {"PATH": "/usr/bin", "EDITOR": "vi"}
    before = dict(env)
    records = [load(env, "a", {"PATH": "/a/bin", "MANPATH": "/a/man"}, {"EDITOR": "x", "NEW": "1"})]
    assert env["MANPATH"] == "/a/man:"
    envdiff.unload(env, records, 0)
    assert env == before and records == []


def test_user_edits_survive() -> None:
    env = {"PATH": "/usr/bin"}
    records = [load(env, "a", {"PATH": "/a/bin"}, {"X": "ours"})]
    env["PATH"] = "/usr/bin:/mine:/a/bin"  # reordered and extended by the user
    env["X"] = "theirs"
    envdiff.unload(env, records, 0)
    assert env == {"PATH": "/usr/bin:/mine", "X": "theirs"}


def test_only_one_occurrence_removed() -> None:
    env = {"PATH": "/a/bin:/usr/bin"}
    records = [load(env, "a", {"PATH": "/a/bin"}, {})]
    envdiff.unload(env, records, 0)
    assert env == {"PATH": "/a/bin:/usr/bin"}


@pytest.mark.parametrize("order", [(0, 0), (1, 0)])
def test_overlapping_loads_unload_in_any_order(order: tuple[int, int]) -> None:
    env = {"EDITOR": "vi"}
    before = dict(env)
    records = [load(env, "a", {"MANPATH": "/a/man"}, {"EDITOR": "a", "CC": "a"}),
               load(env, "b", {"MANPATH": "/b/man"}, {"EDITOR": "b", "CC": "b"})]
    assert env["MANPATH"] == "/b/man:/a/man:"
    envdiff.unload(env, records, order[0])
    remaining = records[0].hash
    assert env["EDITOR"] == remaining and env["MANPATH"] == f"/{remaining}/man:"
    envdiff.unload(env, records, order[1])
    assert env == before


def test_encode_decode_and_damage() -> None:
    env: dict[str, str] = {}
    records = [load(env, "h1", {"PATH": "/p q/'$"}, {"V": "èрт🚒 `x` !"})]
    envdiff.store_records(env, records)
    assert set(env[envdiff.RECORD_VAR]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    assert envdiff.decode(env[envdiff.RECORD_VAR]) == records
    assert env[envdiff.LOADED_VAR] == "h1:h1"
    with pytest.raises(envdiff.RecordError):
        envdiff.decode("not base64 at all!")
    envdiff.store_records(env, [])
    assert envdiff.RECORD_VAR not in env and envdiff.LOADED_VAR not in env


def test_changes_lists_sets_and_unsets() -> None:
    assert envdiff.changes({"A": "1", "B": "2"}, {"A": "1", "B": "3", "C": "4"}) == [
        ("B", "3"), ("C", "4")]
    assert envdiff.changes({"A": "1"}, {}) == [("A", None)]


def test_small_json_matches_the_json_module() -> None:
    import json

    value = {"a": [None, True, False, 3, "x\n\"\\ 🚒 \u0001"], "b": {"c": []}}
    assert json.loads(envdiff.json_dumps(value)) == value
    assert envdiff.json_loads(json.dumps(value)) == value
    with pytest.raises(ValueError):
        envdiff.json_loads('{"a": 1} trailing')
    with pytest.raises(ValueError):
        envdiff.json_loads("")


def test_records_survive_an_interpreter_without_the_json_accelerator() -> None:
    """Without CPython's `_json` the json package takes over, and records still round-trip."""
    import subprocess
    import sys

    env: dict[str, str] = {}
    records = [load(env, "h1", {"PATH": "/p q/'$"}, {"V": "èрт🚒 `x` !\n\"\\"})]
    envdiff.store_records(env, records)
    code = (
        "import sys; sys.modules['_json'] = None\n"
        "from hdenv.shell import envdiff\n"
        "from hdenv import fastjson\n"
        "assert fastjson._json is None\n"
        "records = envdiff.decode(sys.argv[1])\n"
        "env = {}\n"
        "envdiff.store_records(env, records)\n"
        "print(env[envdiff.RECORD_VAR])\n"
        "try:\n"
        "    envdiff.json_loads('{\"a\": 1} trailing')\n"
        "except ValueError:\n"
        "    print('refused')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, env[envdiff.RECORD_VAR]],
                          capture_output=True, text=True, check=True)
    reencoded, refused = proc.stdout.split()
    assert envdiff.decode(reencoded) == records
    assert refused == "refused"


def test_long_values_stay_out_of_the_record_and_round_trip() -> None:
    """A long value set is recorded by checksum, a long previous value in HDENV_SAVED_N."""
    mine = "m" * 50_000
    env = {"PATH": "/usr/bin", "CFLAGS": mine}
    before = dict(env)
    records = [load(env, "a", {}, {"CFLAGS": "-O2", "BIG": "b" * 100_000})]
    assert env["HDENV_SAVED_1"] == mine
    envdiff.store_records(env, records)
    assert len(env[envdiff.RECORD_VAR]) < 1000
    records = envdiff.decode(env[envdiff.RECORD_VAR])
    envdiff.unload(env, records, 0)
    envdiff.store_records(env, records)
    assert env == before


def test_long_values_hand_over_between_loads_in_any_order() -> None:
    for order in ((0, 0), (1, 0)):
        env = {"X": "u" * 5000}
        before = dict(env)
        records = [load(env, "a", {}, {"X": "a" * 5000}), load(env, "b", {}, {"X": "b" * 5000})]
        records = envdiff.decode(envdiff.encode(records))
        for i in order:
            envdiff.unload(env, records, i)
        assert env == before, order


def test_a_user_edit_of_a_long_value_is_kept() -> None:
    env: dict[str, str] = {}
    records = [load(env, "a", {}, {"X": "a" * 5000})]
    env["X"] = "a" * 4999 + "b"  # same length, one character changed
    envdiff.unload(env, records, 0)
    assert env == {"X": "a" * 4999 + "b"}


@pytest.mark.parametrize("record", [
    '[["h",null,null,"/p",{"PATH":[[1],[],0]},{}]]',
    '[["h",null,null,"/p",{},{"X":[1,2]}]]',
    '[["h",null,null,"/p",{},{"X":[{"saved":"PATH"},"v"]}]]',
    '"abc',
    "[1]",
])
def test_records_hdenv_did_not_write_are_refused(record: str) -> None:
    import base64

    with pytest.raises(envdiff.RecordError):
        envdiff.decode(base64.b64encode(record.encode()).decode())

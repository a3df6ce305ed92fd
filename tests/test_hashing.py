"""Artifact ids: every id hdenv ever printed must come out the same."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from hdenv.store.hashing import HASH_CHARS, canonical_json, spec_hash


@pytest.mark.parametrize(("spec", "expected"), [
    ({"name": "zlib", "version": "1.3", "env": {"CFLAGS": "-O2"}, "deps": []},
     "35q7m5glj4nlypudjvxoo6h7l4p52ksw"),
    ({}, "iqjw7i2vwntyuekgvulpp2det2kpwt6c"),
    ({"é": [1, 2.5, None, True]}, "owdfvn66qla2a4zu7mol37pznvo6qmg4"),
])
def test_golden_ids_do_not_move(spec: dict[str, object], expected: str) -> None:
    assert spec_hash(spec) == expected


def test_the_id_is_rfc4648_base32_of_the_first_160_bits_of_the_sha256() -> None:
    rng = random.Random(25)
    for _ in range(2000):  # every 10-bit pair of letters, many times over
        spec = {"n": rng.getrandbits(64), "s": str(rng.random())}
        digest = hashlib.sha256(canonical_json(spec)).digest()[:20]
        reference = base64.b32encode(digest).decode("ascii").lower().rstrip("=")
        assert spec_hash(spec) == reference
        assert len(reference) == HASH_CHARS


def test_canonical_json_ignores_key_order_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == canonical_json({"a": "é", "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()

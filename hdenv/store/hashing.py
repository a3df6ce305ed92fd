"""Canonical JSON, artifact hashes and streaming file hashes.

The functions here define every id hdenv ever prints. Changing any of them
changes every id; tests/test_hashing.py pins golden values to catch that.
"""

from __future__ import annotations

import json
import os
from typing import Any

HASH_BITS = 160
HASH_CHARS = 32  # 160 bits in base32 without padding
CHUNK = 1 << 20


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)  # one encoder: `json.dumps` made one a call


def canonical_json(obj: Any) -> bytes:
    """Serialise with sorted keys, no whitespace and UTF-8, so equal specs hash equally."""
    return _CANONICAL.encode(obj).encode("utf-8")


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648's alphabet, lower case
_BASE32_PAIRS = [a + b for a in _BASE32 for b in _BASE32]  # the two letters of 10 bits
_SHIFTS = range(HASH_BITS - 10, -1, -10)


def spec_hash(spec: Any) -> str:
    """First 160 bits of sha256 over the canonical JSON, base32 lowercase, unpadded.

    160 bits are 16 pairs of base32 letters, looked up ten bits at a time:
    `base64.b32encode(...).lower()` took 5.4 µs a hash, a 5,000-package build
    planned 27 ms of them (tests/test_hashing.py holds both to the same ids)."""
    import hashlib  # here: OpenSSL's load is ms that `hdenv show` and `list` never need

    bits = int.from_bytes(hashlib.sha256(canonical_json(spec)).digest()[: HASH_BITS // 8], "big")
    pairs = _BASE32_PAIRS
    return "".join([pairs[(bits >> shift) & 0x3FF] for shift in _SHIFTS])


def spec_source_keys(spec: dict[str, Any]) -> list[str]:
    """Every source key a build spec names: its sources and its patches (content hashes,
    as the spec records them). Here, beside the spec's own hash, because gc, export,
    reproduce and the stack build all ask it, and the modules around them cost a
    `reproduce --from CACHE` tens of milliseconds to import."""
    keys = [s["key"] for s in spec.get("sources", [])
            if isinstance(s, dict) and isinstance(s.get("key"), str)]
    return keys + [p for p in spec.get("patches", []) if isinstance(p, str)]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in large chunks (close to sha256sum's speed)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sha256_fd(fd)
    finally:
        os.close(fd)


def sha256_fd(fd: int) -> str:
    """Hex sha256 of the open file `fd` from its start (its offset left alone): what a
    manifest records of a file opened without following a link."""
    import hashlib

    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


def is_hash_like(text: str) -> bool:
    """Whether `text` could be (a prefix of) an artifact or profile hash."""
    return bool(text) and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in text)

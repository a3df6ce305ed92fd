"""`push` (exchange/push.py): closure order, skipping, host software, profile definitions."""

from __future__ import annotations

import json
from pathlib import Path

from packfixtures import two_level

from hdenv.exchange.backends import open_cache
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey
from hdenv.store.layout import Store


def test_push_order_skips_and_profile_definitions(tmp_path: Path) -> None:
    store = Store(tmp_path / "a").ensure()
    dep, top, phash = two_level(store)
    key = SecretKey.generate("k1")
    lines: list[str] = []
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()
    report = push(store, [phash], cache, key, lines.append)
    assert report.pushed == [dep, top]  # dependencies first
    assert [line.split()[1] for line in lines] == [dep, top]
    assert len(report.host) == 1 and report.profiles == [phash]
    kept = json.loads((tmp_path / "cache" / "profiles" / f"{phash}.json").read_text())
    assert kept["spec"] == store.read_spec(phash) and kept["hash"] == phash  # signed envelope
    again = push(store, [top], cache, key, lines.append)
    assert again.pushed == [] and again.present == [dep, top] and again.bytes_sent == 0

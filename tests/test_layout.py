"""The store's layout (store/layout.py): specs written many at once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hdenv.store.hashing import spec_hash
from hdenv.store.layout import Store


def test_write_specs_writes_each_once_and_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    specs = {}
    for i in range(40):
        spec = {"kind": "build", "name": f"p{i}", "version": "1", "deps": [], "script": "x" * i}
        specs[spec_hash(spec)] = spec
    first = next(iter(specs))
    store.write_spec(first, specs[first])
    before = os.stat(store.spec_path(first))
    store.write_specs(specs, jobs=4)
    for h, spec in specs.items():
        assert json.loads(store.spec_path(h).read_text()) == spec
        assert spec_hash(store.read_spec(h)) == h
    after = os.stat(store.spec_path(first))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # kept
    assert [p.name for p in store.specs.iterdir() if p.name.endswith(".tmp")] == []

"""The index of named profiles: generations from the links, stores searched in order."""

from __future__ import annotations

from pathlib import Path

from shellfixtures import add_artifact, add_profile, fake_hash

from hdenv.store.index import Index

ZLIB = "zlib/1.3/" + fake_hash("zlib")


def test_generations_default_and_packages(tmp_path: Path) -> None:
    root = tmp_path / "store"
    add_artifact(root, ZLIB)
    add_profile(root, "demo", [], generation=1)
    add_profile(root, "demo", [ZLIB], generation=2, current=False, description="two")
    (root / "names" / "broken").mkdir(parents=True)  # no generation: not listed
    index = Index([str(root)])
    [demo] = index.named()
    assert [(g.number, g.current) for g in demo.generations] == [(1, True), (2, False)]
    assert demo.current is not None and demo.current.number == 1
    second = index.facts(str(root), demo.generations[1].hash)
    assert second.description == "two" and second.packages() == [("zlib", "1.3", ZLIB)]
    assert [(n.name, g.number) for n, g, _ in index.holders("zlib")] == [("demo", 2)]
    assert index.package_names() == []  # not in the default generation


def test_an_earlier_store_hides_the_same_name_later(tmp_path: Path) -> None:
    mine, site = tmp_path / "mine", tmp_path / "site"
    add_profile(mine, "demo", [], generation=1)
    add_profile(site, "demo", [], generation=5)
    add_profile(site, "gnu", [], generation=1)
    index = Index([str(mine), str(site)])
    assert [(n.name, n.root) for n in index.named()] == [("demo", str(mine)), ("gnu", str(site))]
    assert Index([str(tmp_path / "missing")]).named() == []

"""Taking artifacts from caches (exchange/substitute.py).

Artifacts are made with install_artifact, pushed with the real push code to
directory caches, and pulled into other stores.
"""

from __future__ import annotations

from pathlib import Path

from packfixtures import two_level
from servers import free_port

from hdenv.exchange.backends import Cache, open_cache
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey
from hdenv.exchange.substitute import Fetched, Substituter
from hdenv.store.layout import Store
from hdenv.store.verify import verify_artifact


def pushed(tmp_path: Path) -> tuple[str, str, Cache, SecretKey]:
    """Two artifacts built in a store with a long root, pushed to a directory cache."""
    a = Store(tmp_path / "store-a-long-root").ensure()
    dep, top, phash = two_level(a)
    key = SecretKey.generate("k1")
    cache = open_cache(str(tmp_path / "cache"))
    cache.check_writable()
    push(a, [phash], cache, key, lambda _m: None)
    return dep, top, cache, key


def test_references_come_along_and_reasons_name_every_cache(tmp_path: Path) -> None:
    dep, top, cache, key = pushed(tmp_path)
    b = Store(tmp_path / "b").ensure()
    down = f"http://127.0.0.1:{free_port()}/nothing/"
    sub = Substituter(b, [open_cache(down), cache], [key.public()])
    got = sub.fetch(top)  # its reference `dep` is fetched first
    assert isinstance(got, Fetched) and got.signer == "k1"
    assert b.has_artifact(dep) and b.has_artifact(top)
    assert (b.artifact_dir(top) / "uses").read_text() == f"{b.artifact_dir(dep)}/lib\n"
    assert verify_artifact(b, top) == [] and verify_artifact(b, dep) == []
    missing = sub.fetch("nope/1/" + "a" * 32)
    assert missing == (f"{down}: unreachable ([Errno 111] Connection refused);"
                       f" {tmp_path / 'cache'}: not found")
    assert list(sub.dead) == [down]  # asked once, then skipped for the rest of the run


def test_a_description_filed_under_another_id_is_refused(tmp_path: Path) -> None:
    dep, top, cache, key = pushed(tmp_path)
    descs = tmp_path / "cache" / "artifacts"
    (descs / f"{top.split('/')[2]}.json").write_bytes(
        (descs / f"{dep.split('/')[2]}.json").read_bytes())
    b = Store(tmp_path / "b").ensure()
    got = Substituter(b, [cache], [key.public()]).fetch(top)
    assert got == f"{tmp_path / 'cache'}: hash mismatch: its description is for {dep}"
    assert not b.has_artifact(top)


def test_a_reference_taken_from_an_upstream_store_is_relocated_there(tmp_path: Path) -> None:
    dep, top, cache, key = pushed(tmp_path)
    site = Store(tmp_path / "site").ensure()  # the site store already has `dep`
    assert isinstance(Substituter(site, [cache], [key.public()]).fetch(dep), Fetched)
    mine = Store(tmp_path / "mine", upstreams=[site.root]).ensure()
    got = Substituter(mine, [cache], [key.public()]).fetch(top)
    assert isinstance(got, Fetched)
    assert not mine.has_own_artifact(dep) and mine.has_own_artifact(top)
    assert (mine.artifact_dir(top) / "uses").read_text() == f"{site.own_artifact_dir(dep)}/lib\n"

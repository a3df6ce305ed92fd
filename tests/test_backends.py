"""The three cache kinds (exchange/backends.py) against real servers on loopback.

One registry and one HTTP server for the module; each test writes its own
entries. No build is needed: artifacts come from the store's install_artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packfixtures import make_artifact, rich_tree
from servers import free_port, http_server, registry

from hdenv.errors import UserError
from hdenv.exchange import backends
from hdenv.exchange.backends import (
    Cache,
    CacheUnavailable,
    DirectoryCache,
    HttpCache,
    OciCache,
    open_cache,
)
from hdenv.exchange.pack import archive_name, pack_artifact
from hdenv.exchange.push import push
from hdenv.exchange.signing import SecretKey, sign
from hdenv.exchange.substitute import Fetched, Substituter
from hdenv.exchange.transfer import NullMeter
from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.store.layout import Store


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("backends")
    (work / "served").mkdir()
    with registry(work / "registry") as reg, \
            http_server(work / "served", work / "http.log") as http:
        yield {"registry": reg, "http": http, "served": work / "served"}


def entry(tmp_path: Path, salt: str) -> tuple[dict[str, Any], Path, Store]:
    store = Store(tmp_path / "store").ensure()
    aid = make_artifact(store, "rich", rich_tree, salt=salt)
    desc = sign(pack_artifact(store, aid, tmp_path / "out"), SecretKey.generate("k1"))
    return desc, tmp_path / "out" / archive_name(desc), store


def round_trip(cache: Cache, desc: dict[str, Any], archive: Path) -> None:
    hash_ = desc["id"].split("/")[2]
    assert cache.description(hash_) is None
    assert cache.has_archive(desc["archive_sha256"]) is False
    assert cache.put_entry(desc, archive, NullMeter()) is True
    assert cache.description(hash_) == desc
    assert cache.has_archive(desc["archive_sha256"])
    out = io.BytesIO()
    size, sha = cache.fetch_archive(desc["archive_sha256"], out, NullMeter())
    assert (size, sha) == (desc["archive_size"], desc["archive_sha256"])
    assert out.getvalue() == archive.read_bytes()
    # the same archive under another description is not sent again
    unsigned = {k: v for k, v in desc.items() if k != "signatures"}
    again = sign({**unsigned, "store_root": "/elsewhere"}, SecretKey.generate("k2"))
    assert cache.put_entry(again, archive, NullMeter()) is False
    assert cache.description(hash_) == again
    assert cache.profile("p" * 32) is None
    cache.put_profile("p" * 32, {"kind": "profile", "artifacts": [desc["id"]]})
    assert cache.profile("p" * 32) == {"kind": "profile", "artifacts": [desc["id"]]}
    assert [d["id"] for d in cache.entries()] == [desc["id"]]


def test_directory_cache_and_the_same_directory_over_http(
        tmp_path: Path, services: dict[str, Any]) -> None:
    desc, archive, _ = entry(tmp_path, "dir")
    root = services["served"] / "c1"
    cache = open_cache(f"file://{root}")
    assert isinstance(cache, DirectoryCache)
    with pytest.raises(CacheUnavailable, match="not an hdenv cache"):
        cache.description("x")
    cache.check_writable()
    round_trip(cache, desc, archive)
    assert json.loads((root / "hdenv-cache.json").read_text()) == {"hdenv-cache": 1}
    index = json.loads((root / "index.json").read_text())
    assert index["artifacts"][desc["id"].split("/")[2]]["signers"] == ["k2"]

    http = open_cache(f"{services['http']}c1")  # no trailing slash: still the directory
    assert isinstance(http, HttpCache)
    hash_ = desc["id"].split("/")[2]
    assert http.description(hash_) == json.loads((root / "artifacts" / f"{hash_}.json")
                                                 .read_text())
    out = io.BytesIO()
    assert http.fetch_archive(desc["archive_sha256"], out, NullMeter())[1] == \
        desc["archive_sha256"]
    assert http.fetch_archive("0" * 64, io.BytesIO(), NullMeter()) == (0, "")
    assert http.has_archive(desc["archive_sha256"]) and not http.has_archive("0" * 64)
    assert [d["id"] for d in http.entries()] == [desc["id"]]
    assert http.profile("p" * 32) is not None
    with pytest.raises(UserError, match="HTTP caches are read-only"):
        http.check_writable()


def test_a_directory_that_is_not_a_cache_is_never_written(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not empty and not an hdenv cache"):
        open_cache(str(tmp_path / "mine")).check_writable()
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def manifest_of(cache: OciCache, tag: str) -> Any:
    """The manifest the registry holds for `tag`, read without hdenv's client."""
    req = urllib.request.Request(f"{cache.base}/manifests/{tag}", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def test_oci_registry(tmp_path: Path, services: dict[str, Any]) -> None:
    desc, archive, _ = entry(tmp_path, "oci")
    url = f"oci://{services['registry']}/hdenv/backend-test"
    cache = open_cache(url)
    assert isinstance(cache, OciCache) and cache.base.startswith("http://127.0.0.1:")
    assert cache.entries() == []  # no repository yet
    round_trip(cache, desc, archive)
    hash_ = desc["id"].split("/")[2]
    # really an OCI artifact: one tag per artifact, the archive as a layer by digest
    manifest = manifest_of(cache, hash_)
    assert manifest["layers"][0]["digest"] == f"sha256:{desc['archive_sha256']}"
    assert manifest["annotations"]["org.opencontainers.image.title"] == desc["id"]
    assert sorted(cache.tags()) == sorted([hash_, "profile-" + "p" * 32])
    # what a push skips: from one tag listing; a profile's tag is no artifact's entry
    missing = "m" * 32
    assert cache.described([hash_, missing, "p" * 32]) == {hash_}
    # the description rides in the manifest (one request to read it); the config is
    # OCI's empty descriptor, a blob the registry really holds
    assert json.loads(manifest["annotations"]["org.hdenv.description"]) == \
        cache.description(hash_)
    assert manifest["artifactType"] == "application/vnd.hdenv.artifact.description.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    config = manifest["config"]["digest"]
    with urllib.request.urlopen(f"{cache.base}/blobs/{config}") as resp:
        body = resp.read()
        assert body == b"{}" and hashlib.sha256(body).hexdigest() == config.split(":")[1]
    # a new client asks the registry (a mount of the blob from this repository: 201)
    # and sends the archive no more
    assert open_cache(url).put_entry(desc, archive, NullMeter()) is False


def test_oci_entries_with_the_description_as_config_blob_are_read(
        tmp_path: Path, services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries pushed before descriptions moved into the manifest, and descriptions too
    big for one, have it as the manifest's config blob: still read, still checked."""
    desc, archive, _ = entry(tmp_path, "ocibig")
    monkeypatch.setattr(backends, "MAX_ANNOTATED", 0)  # every description is "too big"
    cache = open_cache(f"oci://{services['registry']}/hdenv/config-blob")
    assert isinstance(cache, OciCache)
    round_trip(cache, desc, archive)
    hash_ = desc["id"].split("/")[2]
    manifest = manifest_of(cache, hash_)
    assert "org.hdenv.description" not in manifest["annotations"]
    assert manifest["config"]["mediaType"] == \
        "application/vnd.hdenv.artifact.description.v1+json"
    found = open_cache(cache.url).description(hash_)
    assert found is not None and found["id"] == desc["id"] and found["signatures"]


def test_an_unreachable_cache_is_one_line() -> None:
    port = free_port()  # nothing listens there
    for url in (f"http://127.0.0.1:{port}/c/", f"oci://127.0.0.1:{port}/r"):
        with pytest.raises(CacheUnavailable, match=r"unreachable \(.*refused"):
            open_cache(url).description("x" * 32)


@pytest.mark.parametrize("url,why", [
    ("oci://host-only", "expected oci://HOST"),
    ("s3://bucket/x", "unsupported scheme 's3'"),
])
def test_bad_cache_urls(url: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        open_cache(url)


def test_oci_push_and_pull_with_several_in_flight(tmp_path: Path, services: dict[str, Any]
                                                  ) -> None:
    """Eight artifacts pushed -j 4 into a new repository and pulled back -j 4 into another
    store. They share the empty config blob, which is uploaded once, not raced (two
    uploads of one digest at once got HTTP 400 from the registry, one run in six)."""
    store = Store(tmp_path / "store").ensure()
    ids = []
    for i in range(8):
        def fill(prefix: Path, i: int = i) -> None:
            (prefix / f"f{i}").write_text(f"{i} {prefix}\n")

        ids.append(make_artifact(store, f"par{i}", fill))
    spec = profile_spec(ids, {}, None)
    create_profile(store, spec)
    key = SecretKey.generate("k1")
    url = f"oci://{services['registry']}/hdenv/parallel"
    report = push(store, [profile_hash(spec)], open_cache(url), key, lambda _m: None, jobs=4)
    assert sorted(report.pushed) == sorted(ids)
    dest = Store(tmp_path / "other").ensure()
    got = Substituter(dest, [open_cache(url)], [key.public()]).fetch_many(
        ids, lambda _a: [], 4, lambda *_a: NullMeter())
    assert all(isinstance(g, Fetched) for g in got.values()), got
    for i, aid in enumerate(ids):
        assert (dest.artifact_dir(aid) / f"f{i}").read_text() == f"{i} {dest.root}/artifacts/{aid}\n"

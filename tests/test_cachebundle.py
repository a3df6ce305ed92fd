"""`reproduce HASH --from CACHE` over small artifacts (exchange/cachebundle.py).

Artifacts are made with install_artifact (packfixtures), pushed with the real
push code to a directory cache, and reproduced into other stores with the real
reproduce code. The end-to-end runs over HTTP and OCI with a real stack are in
test_cache.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packfixtures import make_artifact, rich_tree, two_level

from hdenv.config import Settings
from hdenv.errors import UserError
from hdenv.exchange.backends import open_cache
from hdenv.exchange.push import push
from hdenv.exchange.signing import VOUCHED, PublicKey, SecretKey, sign
from hdenv.profile.farm import Member, build_farm
from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.provenance.reproduce import ReproduceResult, reproduce
from hdenv.store.layout import Store, split_id
from hdenv.store.verify import verify_artifact


def pushed(tmp_path: Path) -> tuple[Store, dict[str, str], Path, SecretKey]:
    """A profile of dep <- top plus host software, pushed from a long root to a directory."""
    a = Store(tmp_path / "store-a-with-a-long-root").ensure()
    dep, top, phash = two_level(a)
    host = next(x for x in a.read_spec(phash)["artifacts"] if x.startswith("cc/"))
    key = SecretKey.generate("k1")
    cache = tmp_path / "cache"
    report = push(a, [phash], open_cache(str(cache)), key, lambda _m: None)
    assert report.host == [host] and split_id(host)[2] in report.specs
    return a, {"dep": dep, "top": top, "host": host, "profile": phash}, cache, key


def reproduce_into(root: Path, what: str, cache: Path, keys: list[str]
                   ) -> tuple[ReproduceResult, str]:
    out = io.StringIO()
    result = reproduce(Settings(store=root, trusted_keys=keys), what, from_=str(cache),
                       stream=out)
    return result, out.getvalue()


def test_a_profile_with_host_software_comes_from_the_cache(tmp_path: Path) -> None:
    _, ids, cache, key = pushed(tmp_path)
    b = Store(tmp_path / "b")
    result, said = reproduce_into(b.root, ids["profile"], cache, [str(key.public())])
    assert result.ident == ids["profile"] and result.name == f"repro-{ids['profile'][:8]}"
    assert result.installed == [ids["dep"], ids["top"]] and result.built == []
    assert result.captured == [ids["host"]]  # host software is captured here, never shipped
    assert result.source == "the cache"
    assert f"fetched {ids['top']} from {cache} (" in said
    assert (b.artifact_dir(ids["top"]) / "uses").read_text() == f"{b.artifact_dir(ids['dep'])}/lib\n"
    assert verify_artifact(b, ids["top"]) == [] and verify_artifact(b, ids["dep"]) == []


def test_an_artifact_hash_brings_its_runtime_closure(tmp_path: Path) -> None:
    _, ids, cache, key = pushed(tmp_path)
    b = Store(tmp_path / "b")
    result, _ = reproduce_into(b.root, split_id(ids["top"])[2], cache, [str(key.public())])
    assert result.kind == "artifact" and result.ident == ids["top"]
    assert result.installed == [ids["dep"], ids["top"]]


def test_a_cache_without_the_host_spec_says_so_and_a_new_push_fills_it(tmp_path: Path) -> None:
    a, ids, cache, key = pushed(tmp_path)
    spec_doc = cache / "profiles" / f"{split_id(ids['host'])[2]}.json"
    spec_doc.unlink()  # as an hdenv that pushed no host specs left it
    b = Store(tmp_path / "b")
    with pytest.raises(UserError) as e:
        reproduce_into(b.root, ids["profile"], cache, [str(key.public())])
    assert e.value.message == (f"{cache}: has no spec {split_id(ids['host'])[2]}, which"
                               f" {ids['profile']} needs (pushed by an older hdenv? push it"
                               " again)")
    assert not b.artifacts.is_dir() or list(b.artifacts.iterdir()) == []
    again = push(a, [ids["profile"]], open_cache(str(cache)), key, lambda _m: None)
    assert again.pushed == [] and again.specs == [split_id(ids["host"])[2]]
    result, _ = reproduce_into(b.root, ids["profile"], cache, [str(key.public())])
    assert result.ident == ids["profile"]


def test_a_changed_spec_in_the_cache_is_refused(tmp_path: Path) -> None:
    _, ids, cache, key = pushed(tmp_path)
    spec_doc = cache / "profiles" / f"{split_id(ids['host'])[2]}.json"
    spec_doc.chmod(0o644)
    spec_doc.write_text(spec_doc.read_text().replace('"version":"1"', '"version":"2"'))
    b = Store(tmp_path / "b")
    with pytest.raises(UserError, match=r"does not hash to .*: it was changed or damaged"):
        reproduce_into(b.root, ids["profile"], cache, [str(key.public())])


@pytest.mark.parametrize("what,message", [
    ("abc", "abc: give the full hash of a profile or artifact (32 characters): a cache is"
            " looked up by hash"),
    ("a" * 32, f"{{cache}}: has no profile or artifact {'a' * 32}"),
])
def test_a_cache_is_looked_up_by_full_hash(tmp_path: Path, what: str, message: str) -> None:
    _, _, cache, key = pushed(tmp_path)
    with pytest.raises(UserError) as e:
        reproduce_into(tmp_path / "b", what, cache, [str(key.public())])
    assert e.value.message == message.format(cache=cache)


def test_an_untrusted_signer_is_refused_before_the_store_is_written(tmp_path: Path) -> None:
    _, ids, cache, _ = pushed(tmp_path)
    b = Store(tmp_path / "b")
    other = SecretKey.generate("k1").public()  # the right name, another key
    with pytest.raises(UserError) as e:
        reproduce_into(b.root, ids["profile"], cache, [str(other)])
    # the profile definition is signed too, and checked before anything it names
    assert e.value.message.startswith(f"--from {cache}: refusing spec {ids['profile']}: bad"
                                      " signature by k1")
    for sub in (b.artifacts, b.specs):
        assert not sub.is_dir() or list(sub.iterdir()) == [], sub


def envelope(cache: Path, phash: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((cache / "profiles" / f"{phash}.json").read_text())
    return doc


def rewrite_envelope(cache: Path, phash: str, doc: dict[str, Any]) -> None:
    path = cache / "profiles" / f"{phash}.json"
    path.chmod(0o644)
    path.write_text(json.dumps(doc))


def refused_before_writing(root: Path, phash: str, cache: Path, key: SecretKey) -> None:
    """reproduce refuses the profile's envelope as badly signed, and writes no artifact."""
    b = Store(root)
    with pytest.raises(UserError) as e:
        reproduce_into(b.root, phash, cache, [str(key.public())])
    assert e.value.message.startswith(f"--from {cache}: refusing spec {phash}: bad"
                                      " signature by k1")
    assert not b.artifacts.is_dir() or list(b.artifacts.iterdir()) == []


def test_the_profile_carries_its_artifacts_descriptions_so_none_is_asked_for(
        tmp_path: Path) -> None:
    """One document for the whole profile: with every per-artifact description gone from
    the cache (archives left), reproduce still installs and checks everything."""
    _, ids, cache, key = pushed(tmp_path)
    carried = envelope(cache, ids["profile"])["descriptions"]
    assert sorted(carried) == sorted(split_id(ids[n])[2] for n in ("dep", "top"))  # no host
    assert [d["id"] for d in carried.values()] == [ids[n] for n in sorted(
        ("dep", "top"), key=lambda n: split_id(ids[n])[2])]
    for description in (cache / "artifacts").glob("*.json"):
        description.unlink()
    b = Store(tmp_path / "b")
    result, _ = reproduce_into(b.root, ids["profile"], cache, [str(key.public())])
    assert result.installed == [ids["dep"], ids["top"]]
    assert verify_artifact(b, ids["top"]) == [] and verify_artifact(b, ids["dep"]) == []


def counted_verifies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What every signature verification from now on was over, in order."""
    verified: list[bytes] = []
    real = PublicKey.verify

    def counting(self: PublicKey, signature: bytes, data: bytes) -> bool:
        verified.append(data)
        return real(self, signature, data)

    monkeypatch.setattr(PublicKey, "verify", counting)
    return verified


def test_each_signature_is_verified_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """The checks made before the store is written are the ones its installs rely on: a
    200-artifact profile verified every description twice (~20 ms of one core). The
    envelope's signer vouches for the descriptions it carries (each signed by its key,
    checked as it pushed), so those are not verified again one by one."""
    _, ids, cache, key = pushed(tmp_path)
    assert envelope(cache, ids["profile"])[VOUCHED] == "k1"
    verified = counted_verifies(monkeypatch)
    result, _ = reproduce_into(tmp_path / "b", ids["profile"], cache, [str(key.public())])
    assert result.installed == [ids["dep"], ids["top"]]
    # the profile's envelope and the host spec's
    assert len(verified) == 2 and len(set(verified)) == 2
    assert verify_artifact(Store(tmp_path / "b"), ids["top"]) == []


def test_an_envelope_without_the_vouch_has_each_carried_description_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As an older hdenv pushed it: the envelope, the host spec and both descriptions."""
    _, ids, cache, key = pushed(tmp_path)
    doc = envelope(cache, ids["profile"])
    rewrite_envelope(cache, ids["profile"], sign(
        {k: v for k, v in doc.items() if k not in ("signatures", VOUCHED)}, key))
    verified = counted_verifies(monkeypatch)
    result, _ = reproduce_into(tmp_path / "b", ids["profile"], cache, [str(key.public())])
    assert result.installed == [ids["dep"], ids["top"]]
    assert len(verified) == 4 and len(set(verified)) == 4


def test_a_vouch_added_by_someone_without_the_key_breaks_the_signature(tmp_path: Path) -> None:
    _, ids, cache, key = pushed(tmp_path)
    doc = envelope(cache, ids["profile"])
    unvouched = sign({k: v for k, v in doc.items() if k not in ("signatures", VOUCHED)}, key)
    rewrite_envelope(cache, ids["profile"], {**unvouched, VOUCHED: "k1"})
    refused_before_writing(tmp_path / "b", ids["profile"], cache, key)


def test_a_push_never_vouches_for_descriptions_another_key_signed(tmp_path: Path) -> None:
    """k2 pushes the profile k1 pushed: the cache's descriptions (k1's) are carried, not
    vouched for, so k2's envelope cannot pass k1's signatures off as its own: a reader who
    trusts only k2 verifies each, and refuses them before writing to the store."""
    a, ids, cache, _k1 = pushed(tmp_path)
    k2 = SecretKey.generate("k2")
    again = push(a, [ids["profile"]], open_cache(str(cache)), k2, lambda _m: None)
    assert again.pushed == [] and again.profiles == [ids["profile"]]
    doc = envelope(cache, ids["profile"])
    assert sorted(doc["descriptions"]) == sorted(split_id(ids[n])[2] for n in ("dep", "top"))
    assert VOUCHED not in doc
    b = Store(tmp_path / "b")
    with pytest.raises(UserError, match=r"refusing .*: untrusted key: signed by k1"):
        reproduce_into(b.root, ids["profile"], cache, [str(k2.public())])
    assert not b.artifacts.is_dir() or list(b.artifacts.iterdir()) == []


def test_a_carried_description_that_fails_a_check_is_asked_for_instead(tmp_path: Path) -> None:
    """The envelope (signed by a trusted key) carries one description signed by a key that
    is not trusted and one filed under the wrong hash: each is read from the cache, and
    used only if that copy passes; without it reproduce stops before writing."""
    _, ids, cache, key = pushed(tmp_path)
    doc = envelope(cache, ids["profile"])
    dep_h, top_h = split_id(ids["dep"])[2], split_id(ids["top"])[2]
    top = {k: v for k, v in doc["descriptions"][top_h].items() if k != "signatures"}
    doc["descriptions"][top_h] = sign(top, SecretKey.generate("k9"))
    doc["descriptions"][dep_h] = doc["descriptions"][top_h]  # top's, filed under dep's hash
    rewrite_envelope(cache, ids["profile"], sign(
        {k: v for k, v in doc.items() if k != "signatures"}, key))
    b = Store(tmp_path / "b")
    result, _ = reproduce_into(b.root, ids["profile"], cache, [str(key.public())])
    assert result.installed == [ids["dep"], ids["top"]]
    assert verify_artifact(b, ids["top"]) == [] and verify_artifact(b, ids["dep"]) == []
    (cache / "artifacts" / f"{top_h}.json").unlink()
    c = Store(tmp_path / "c")
    with pytest.raises(UserError, match=f"has no spec {top_h}, which {ids['profile']} needs"):
        reproduce_into(c.root, ids["profile"], cache, [str(key.public())])
    assert not c.artifacts.is_dir() or list(c.artifacts.iterdir()) == []


def test_a_carried_description_changed_after_signing_breaks_the_profile_signature(
        tmp_path: Path) -> None:
    _, ids, cache, key = pushed(tmp_path)
    doc = envelope(cache, ids["profile"])
    top_h = split_id(ids["top"])[2]
    doc["descriptions"][top_h]["store_root"] = "/elsewhere"
    rewrite_envelope(cache, ids["profile"], doc)
    refused_before_writing(tmp_path / "b", ids["profile"], cache, key)


def test_a_profile_pushed_without_descriptions_gets_them_on_the_next_push(
        tmp_path: Path) -> None:
    a, ids, cache, key = pushed(tmp_path)
    doc = envelope(cache, ids["profile"])
    rewrite_envelope(cache, ids["profile"], sign(  # as an older hdenv pushed it
        {k: v for k, v in doc.items() if k not in ("signatures", "descriptions")}, key))
    again = push(a, [ids["profile"]], open_cache(str(cache)), key, lambda _m: None)
    assert again.pushed == [] and again.profiles == [ids["profile"]]
    assert envelope(cache, ids["profile"])["descriptions"] == doc["descriptions"]
    third = push(a, [ids["profile"]], open_cache(str(cache)), key, lambda _m: None)
    assert third.profiles == []


def test_a_reproduce_from_a_cache_loads_only_what_it_uses(tmp_path: Path) -> None:
    """The real command in a fresh interpreter, for a profile with no host software: it
    neither builds nor captures, downloads no bundle and reads no source, so the modules for
    those (~35 ms of its start-up, which `reproduce --from CACHE` is measured with) stay
    unloaded; the artifacts still arrive, every one checked."""
    a = Store(tmp_path / "a").ensure()
    dep = make_artifact(a, "dep", rich_tree)
    top = make_artifact(a, "top", lambda p: (p / "f").write_text("x\n"), deps=[dep])
    spec = profile_spec([top, dep], {}, None)
    create_profile(a, spec)
    key = SecretKey.generate("k1")
    push(a, [profile_hash(spec)], open_cache(str(tmp_path / "cache")), key, lambda _m: None)
    unwanted = ["hdenv.build.host", "hdenv.store.gc", "hdenv.store.sources", "urllib.request"]
    code = ("import sys\nfrom hdenv.cli.main import main\ntry:\n    main()\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print([m for m in {unwanted!r} if m in sys.modules])\n")
    b = tmp_path / "b"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--store", str(b), "reproduce", profile_hash(spec),
         "--from", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HDENV_TRUSTED_KEYS": str(key.public())})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
    assert verify_artifact(Store(b), top) == [] and verify_artifact(Store(b), dep) == []


def farm_listing(profile: Path, store_root: Path) -> dict[str, str]:
    """relative path -> "dir" or the link's target below its store, for a profile's farm."""
    out = {}
    for top, dirs, files in os.walk(profile):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, profile)
            if os.path.islink(path):
                out[rel] = os.path.relpath(os.readlink(path), store_root)
            else:
                out[rel] = "dir" if os.path.isdir(path) else "file"
    return out


def test_from_a_cache_the_farm_grows_while_the_artifacts_arrive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No farm is made after the last download (growing.py); the profile is the one
    `build_farm` makes of the same artifacts, link for link."""
    _, ids, cache, key = pushed(tmp_path)

    def no_farm_at_the_end(*_a: object, **_k: object) -> None:
        raise AssertionError("build_farm called")

    monkeypatch.setattr("hdenv.profile.farm.build_farm", no_farm_at_the_end)
    b = Store(tmp_path / "b")
    result, _ = reproduce_into(b.root, ids["profile"], cache, [str(key.public())])
    assert result.installed == [ids["dep"], ids["top"]]
    monkeypatch.undo()
    at_once = tmp_path / "at-once"
    at_once.mkdir()
    spec = b.read_spec(ids["profile"])
    build_farm(at_once, [Member(x, b.artifact_dir(x)) for x in spec["artifacts"]])
    made = farm_listing(b.profile_dir(ids["profile"]), b.root)
    assert {k: v for k, v in made.items() if not k.startswith(".hdenv")} == \
        farm_listing(at_once, b.root)
    assert made["lib"] == f"artifacts/{ids['dep']}/lib"  # one member's directory: folded
    assert list((b.root / "tmp").glob("*/profile-*")) == []  # nothing left aside

"""Ed25519 keys and description signatures (exchange/signing.py), and `hdenv cache keygen`."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from conftest import Runner

from hdenv.errors import UserError
from hdenv.exchange.signing import (
    PublicKey,
    SecretKey,
    SignatureRefused,
    check,
    default_key_file,
    fingerprint,
    sign,
    write_new_key,
)

DESCRIPTION = {"format": 1, "id": "zlib/1.2.13/abc", "store_root": "/s", "references": [],
               "archive_sha256": "0" * 64, "archive_size": 3, "spec": {"name": "zlib"}}


def test_keygen_prints_only_the_public_key_and_keeps_the_secret_private(
        run_hdenv: Runner, tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = run_hdenv("cache", "keygen", "site-1", env=env, check=True)
    name, _, b64 = proc.stdout.strip().partition(":")
    assert proc.stdout.count("\n") == 1 and name == "site-1"
    assert len(base64.b64decode(b64, validate=True)) == 32
    secret = tmp_path / "xdg" / "hdenv" / "keys" / "site-1.secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    raw = base64.b64decode(secret.read_text().strip().split(":")[1])
    assert len(raw) == 64 and raw[32:] == base64.b64decode(b64)  # Nix's seed+public form
    key = SecretKey.load(secret)
    assert str(key.public()) == proc.stdout.strip()
    again = run_hdenv("cache", "keygen", "site-1", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert SecretKey.load(secret) == key  # never overwritten
    bad = run_hdenv("cache", "keygen", "../evil", env=env)
    assert bad.returncode == 2 and "key name" in bad.stderr


def test_a_secret_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path, _ = write_new_key("k", tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="readable by others"):
        SecretKey.load(path)
    os.chmod(path, 0o600)
    path.write_text("k:" + base64.b64encode(b"short").decode())
    with pytest.raises(UserError, match="32 or 64 bytes"):
        SecretKey.load(path)


def test_signatures_cover_every_field(tmp_path: Path) -> None:
    k1, k2 = SecretKey.generate("k1"), SecretKey.generate("k2")
    signed = sign(DESCRIPTION, k1)
    assert check(signed, [k1.public()]) == "k1"
    both = sign(signed, k2)
    assert [s["key"] for s in both["signatures"]] == ["k1", "k2"]
    assert check(both, [k2.public()]) == "k2"
    for field, value in (("store_root", "/t"), ("archive_sha256", "1" * 64),
                         ("references", ["x/1/y"]), ("spec", {"name": "zlib2"})):
        with pytest.raises(SignatureRefused, match="bad signature by k1"):
            check({**signed, field: value}, [k1.public()])
    with pytest.raises(SignatureRefused, match="untrusted key: signed by k1; trusted: k2"):
        check(signed, [k2.public()])
    with pytest.raises(SignatureRefused, match="not signed"):
        check(DESCRIPTION, [k1.public()])
    impostor = sign(DESCRIPTION, SecretKey.generate("k1"))  # another key that calls itself k1
    with pytest.raises(SignatureRefused, match="bad signature by k1"):
        check(impostor, [k1.public()])
    assert fingerprint(signed) == fingerprint(DESCRIPTION)  # signatures are not signed


@pytest.mark.parametrize("text,why", [
    ("no-colon", "expected NAME:BASE64"),
    ("k:not base64!", "not valid base64"),
    ("k:" + base64.b64encode(b"x" * 31).decode(), "32 bytes"),
    ("bad name:" + base64.b64encode(b"x" * 32).decode(), "key name"),
])
def test_malformed_trusted_keys_are_one_line_errors(text: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        PublicKey.parse(text)


def test_the_default_signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with pytest.raises(UserError, match="no signing key: make one with `hdenv cache keygen"):
        default_key_file(None)
    first, _ = write_new_key("a")
    assert default_key_file(None) == first
    write_new_key("b")
    with pytest.raises(UserError, match=r"several signing keys .*a\.secret, b\.secret"):
        default_key_file(None)
    assert default_key_file(str(tmp_path / "chosen")) == tmp_path / "chosen"

"""Ed25519 keys and signatures for binary caches, with `cryptography`.

Keys are written as Nix writes them, `NAME:base64`: the public key is 32
bytes, the secret key file holds the 64-byte seed+public form, so keys can
be told apart by name in `trusted-keys` and a signature names its key. A
signature covers a *fingerprint*: a fixed prefix and the canonical JSON of
the whole description except its signatures, so nothing in a description
(id, spec, store root, references, archive hash and size) can change
without invalidating it, and a signature for one purpose can never be
replayed as another.

Refusals start with the words users grep for: "not signed", "untrusted key",
"bad signature".
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..store.hashing import canonical_json
from ..validate import profile_name_problem
from ..xdg import user_dir

FINGERPRINT_PREFIX = b"hdenv-artifact-description-v1\n"
SECRET_SUFFIX = ".secret"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class SignatureRefused(Exception):
    """A description no trusted key vouches for; the message is the one-line reason."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise UserError(f"{what}: not valid base64") from None


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise UserError(f"{what}: key name {name!r} must be letters, digits, '.', '_', '+' or '-'")
    return name


def _named(text: str, what: str, sizes: tuple[int, ...]) -> tuple[str, bytes]:
    """NAME:BASE64 -> (name, bytes), the form of every key file and trusted key."""
    name, sep, data = text.strip().partition(":")
    if not sep:
        raise UserError(f"{what}: expected NAME:BASE64 (as `hdenv cache keygen` prints)")
    raw = _unb64(data, what)
    if len(raw) not in sizes:
        allowed = " or ".join(str(n) for n in sizes)
        raise UserError(f"{what}: an Ed25519 key here is {allowed} bytes, this is {len(raw)}")
    return _check_name(name, what), raw


@dataclass(frozen=True)
class PublicKey:
    name: str
    raw: bytes  # 32 bytes

    def __str__(self) -> str:
        return f"{self.name}:{_b64(self.raw)}"

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        what = f"trusted key {text.strip()!r}"
        name, raw = _named(text, what, (32,))
        return cls(name, raw)

    def verify(self, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except InvalidSignature:
            return False
        return True


@functools.lru_cache(maxsize=4)
def _private_key(seed: bytes) -> Any:
    """The key object for a seed, made once: a push signs 200 descriptions with one key,
    and making the object each time was a fifth of the signing."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed)


@dataclass(frozen=True)
class SecretKey:
    name: str
    seed: bytes  # 32 bytes

    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        raw = self._key().public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw)
        return PublicKey(self.name, raw)

    def _key(self) -> Any:
        return _private_key(self.seed)

    def sign(self, data: bytes) -> bytes:
        signature: bytes = self._key().sign(data)
        return signature

    def to_text(self) -> str:
        return f"{self.name}:{_b64(self.seed + self.public().raw)}\n"

    @classmethod
    def generate(cls, name: str) -> SecretKey:
        return cls(_check_name(name, "keygen"), os.urandom(32))

    @classmethod
    def load(cls, path: Path) -> SecretKey:
        """Read a secret key file, refusing one that others may read (as ssh does)."""
        try:
            st = os.stat(path)
            text = Path(path).read_text(encoding="ascii")
        except FileNotFoundError:
            raise UserError(f"{path}: no such signing key file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read signing key: {e}") from None
        if st.st_mode & 0o077:
            raise UserError(f"{path}: secret key is readable by others"
                            f" (mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 on it")
        name, raw = _named(text, str(path), (32, 64))
        key = cls(name, raw[:32])
        if len(raw) == 64 and raw[32:] != key.public().raw:
            raise UserError(f"{path}: the public half does not match the secret key")
        return key


def keys_dir() -> Path:
    return Path(user_dir("config")) / "keys"


def write_new_key(name: str, directory: Path | None = None) -> tuple[Path, PublicKey]:
    """Make a key pair; the secret file is created 0600 and never overwritten."""
    key = SecretKey.generate(name)
    directory = directory or keys_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}{SECRET_SUFFIX}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UserError(f"{path} already exists: pick another name, or remove it first") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.to_text())
    public = key.public()
    (directory / f"{name}.public").write_text(f"{public}\n", encoding="ascii")
    return path, public


def default_key_file(configured: str | Path | None) -> Path:
    """`--key`/`signing-key` if given, else the one key `hdenv cache keygen` made."""
    if configured:
        return Path(configured).expanduser()
    directory = keys_dir()
    found = sorted(directory.glob(f"*{SECRET_SUFFIX}")) if directory.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError("no signing key: make one with `hdenv cache keygen NAME`, or give"
                        " --key FILE (or signing-key in config)")
    names = ", ".join(p.name for p in found)
    raise UserError(f"several signing keys in {directory} ({names}): choose one with --key FILE"
                    " or signing-key in config")


def fingerprint(description: dict[str, Any]) -> bytes:
    return FINGERPRINT_PREFIX + canonical_json(
        {k: v for k, v in description.items() if k != "signatures"})


def sign(description: dict[str, Any], key: SecretKey) -> dict[str, Any]:
    """The description with `key`'s signature added (replacing an older one by that name)."""
    sig = {"key": key.name, "sig": _b64(key.sign(fingerprint(description)))}
    others = [s for s in description.get("signatures", []) if s.get("key") != key.name]
    return {**description, "signatures": sorted([*others, sig], key=lambda s: str(s["key"]))}


def signers(description: dict[str, Any]) -> list[str]:
    sigs = description.get("signatures")
    if not isinstance(sigs, list):
        return []
    return [str(s["key"]) for s in sigs if isinstance(s, dict) and "key" in s]


def check(description: dict[str, Any], trusted: list[PublicKey]) -> str:
    """The name of a trusted key whose signature is valid; else SignatureRefused."""
    names = signers(description)
    if not names:
        raise SignatureRefused("not signed")
    data = fingerprint(description)
    bad = []
    for entry in description["signatures"]:
        if not isinstance(entry, dict):
            continue
        for key in trusted:
            if key.name != entry.get("key"):
                continue
            try:
                signature = base64.b64decode(str(entry.get("sig", "")), validate=True)
            except (binascii.Error, ValueError):
                signature = b""
            if key.verify(signature, data):
                return key.name
            bad.append(key.name)
    if bad:
        raise SignatureRefused(f"bad signature by {bad[0]}: the description was changed"
                               " after signing, or signed by another key of that name")
    trusted_names = ", ".join(k.name for k in trusted) or "none"
    raise SignatureRefused(f"untrusted key: signed by {', '.join(names)};"
                           f" trusted: {trusted_names}")


def parse_trusted(values: list[str]) -> list[PublicKey]:
    return [PublicKey.parse(v) for v in values]


SPEC_ENVELOPE = "hdenv-signed-spec"
VOUCHED = "descriptions_signed_by"
"""The envelope field naming the key that signed the envelope and every description it
carries, each signature checked by the pusher (see `sign_spec`)."""


def sign_spec(hash_: str, spec: Any, key: SecretKey, name: str | None = None,
              descriptions: dict[str, Any] | None = None, vouched: bool = False
              ) -> dict[str, Any]:
    """A spec as a cache keeps it (profile definitions, host specs): signed like a description.

    Without a signature, anyone who can write to (or impersonate) a cache
    could make up a host spec naming their own program, or a profile whose
    env sets PATH, and `reproduce --from` would use it beside validly
    signed artifacts. A profile pushed by its name carries that name inside
    the signed envelope (not in the spec: the name is no part of the hash),
    so `reproduce --from` can give it back the name its pusher knew it by.
    A profile's envelope may carry the signed descriptions of its artifacts
    (`descriptions`, hash -> description), so a reader needs one request, not
    one per artifact. `vouched`: the caller checked that `key` signed every one of
    them; the envelope then says so (VOUCHED), and a reader who trusts `key` and
    finds the envelope's signature good need not verify the 200 signatures it
    carries one by one (~40 ms of one core here): the envelope's signature covers
    their bytes, signatures included, and the key that made it vouches for each.
    Without it (an older push, or a description signed by another key) a reader
    checks each against its own signature.
    """
    envelope: dict[str, Any] = {SPEC_ENVELOPE: 1, "hash": hash_, "spec": spec}
    if name is not None:
        envelope["name"] = name
    if descriptions is not None:  # {}: too many to carry (readers ask for each)
        envelope["descriptions"] = descriptions
        if vouched and descriptions:
            envelope[VOUCHED] = key.name
    return sign(envelope, key)


def signed_by(doc: Any, name: str, profile_name: str | None = None) -> bool:
    """Whether `doc` is a spec envelope signed by a key named `name` (else push signs it anew).

    With `profile_name`, the envelope must also carry that name: a profile
    pushed again under its name gets the name recorded.
    """
    return (isinstance(doc, dict) and doc.get(SPEC_ENVELOPE) == 1 and name in signers(doc)
            and (profile_name is None or doc.get("name") == profile_name))


def envelope_name(doc: Any) -> str | None:
    """The profile name a spec envelope records, if it is a valid one (else None)."""
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and profile_name_problem(name) is None else None


def open_spec(doc: Any, hash_: str, trusted: list[PublicKey]) -> tuple[Any, str]:
    """(spec, signer) of a cache's spec envelope for `hash_`; SignatureRefused otherwise.

    The caller still checks that the spec hashes to `hash_`; the envelope's
    own hash field ties the signature to that name.
    """
    if not (isinstance(doc, dict) and doc.get(SPEC_ENVELOPE) == 1 and "spec" in doc):
        raise SignatureRefused("not signed (pushed by an older hdenv? push it again)")
    if doc.get("hash") != hash_:
        raise SignatureRefused(f"signed for {doc.get('hash')!r}, not {hash_}")
    return doc["spec"], check(doc, trusted)

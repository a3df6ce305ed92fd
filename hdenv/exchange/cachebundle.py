"""`hdenv reproduce HASH --from CACHE`: a binary cache read as a bundle, nothing built.

A cache that `hdenv push` filled holds everything a bundle does for a profile
or artifact it was given: the profile definition, each artifact's spec (in its
description), the specs of host software and build-only inputs (pushed beside
the profile definitions), and the packed artifacts. So a cache is one more
kind of `Bundle`, and `reproduce` runs its usual steps over it (host drift,
specs, install, profile); `locate.open_bundle` picks it when `--from` is
`oci://...` or a directory / http(s) URL with the cache's marker file.

Trust has two parts, each with one implementation:

- specs are checked by their hash, from the HASH the user typed down (the
  profile names artifact ids, each id's hash is its spec's), so no signature
  is needed to know the state;
- artifacts are installed only by the `Substituter`, the code `hdenv build`
  uses for caches: trusted keys from the settings, signature over the
  description, archive size and sha256, relocation into this store's root,
  the store's install rules. The unsigned path bundles use (`Bundle.archive`)
  is never taken for a cache.

Every description the state needs is signature-checked (`check_entry`) while
the bundle is opened, so an untrusted key or a bad signature stops reproduce
before the store is written to; the substituter checks the same description
again as it installs (it is not asked for twice), and the archive it downloads
then must be the one that description names. `--from CACHE` builds nothing: a
copy the substituter refuses (a flipped byte, a root too long to relocate
into) is an error, and only the artifacts that passed every check stay.

A profile pushed by this hdenv carries its artifacts' signed descriptions in
its envelope (push.py), so the 200 artifacts of a profile are one request,
not 200 (two on a registry: manifest and blob). Each carried description is
checked as one read from the cache would be (its own signature, its spec's
hash against the hash it is filed under); one that fails is asked for from
the cache instead: the envelope may be older than a description pushed again.
When the envelope says its key signed every description it carries (VOUCHED,
which its pusher checked) and that trusted key's signature of the envelope is
good, a carried description naming that key is not verified again: the
envelope's signature covers its bytes, and 200 verifications were ~40 ms of
one core before the first download could start. Its form and hash are checked
as before.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..store.hashing import HASH_BITS, is_hash_like, spec_hash
from ..store.layout import Store
from .backends import Cache, open_cache
from .bundle import Bundle, build_closure, check_graph, node_id
from .pack import ArchiveRefused, check_description
from .signing import (
    VOUCHED,
    PublicKey,
    SignatureRefused,
    envelope_name,
    open_spec,
    parse_trusted,
    signers,
)
from .substitute import Checked, NotHere, Substituter, check_entry

HASH_LEN = (HASH_BITS + 4) // 5  # base32 characters of a full hash


def cache_at(url: str) -> Cache | None:
    """The cache at `--from URL`, or None if it is something else (a store, bundles)."""
    try:
        cache = open_cache(url)
    except UserError:
        return None
    return cache if cache.is_cache() else None


def _verified_spec(url: str, doc: Any, h: str, keys: list[PublicKey]) -> tuple[Any, str]:
    """(spec, signer) of a profile definition or host spec from the cache, only if a trusted
    key signed it.

    Checked before the spec is used at all: an unsigned profile could set
    PATH or BASH_ENV in its env, an unsigned host spec could name any program.
    """
    inner = doc.get("spec") if isinstance(doc, dict) else None
    if isinstance(inner, dict) and spec_hash(inner) != h:
        raise UserError(f"{url}: spec {h} does not hash to {h}: it was changed or"
                        " damaged; refusing the cache")
    try:
        return open_spec(doc, h, keys)
    except SignatureRefused as e:
        hint = (" (trust its signer with trusted-keys in the config or HDENV_TRUSTED_KEYS)"
                if str(e).startswith("untrusted") else "")
        raise UserError(f"--from {url}: refusing spec {h}: {e}{hint}") from None


def _carried(carried: dict[str, Any], h: str, keys: list[PublicKey], vouched_by: str | None
             ) -> Checked | None:
    """The description of `h` the profile's envelope carries, if it is one for `h` that a
    trusted key signed; else None and the cache is asked (the envelope may be older than
    a description pushed again, signed by a key no longer trusted).

    `vouched_by`: the trusted key whose good signature of the envelope vouches for each
    description it carries (signing.VOUCHED): one that names that key among its signers
    is taken without verifying its own signature again, its form and hash still checked."""
    found = carried.get(h)
    if not isinstance(found, dict) or not isinstance(found.get("spec"), dict):
        return None
    aid = node_id(h, found["spec"])  # check_entry: its spec must hash to `h`
    try:
        if vouched_by is not None and vouched_by in signers(found):
            if check_description(found) != aid:
                return None
            return Checked(aid, found, vouched_by)
        return Checked(aid, found, check_entry(found, aid, keys))
    except (NotHere, ArchiveRefused, SignatureRefused):
        return None


class CacheBundle(Bundle):
    def __init__(self, store: Store, cache: Cache, what: str, trusted: list[str],
                 jobs: int = 1):
        url = cache.url
        if not (is_hash_like(what) and len(what) == HASH_LEN):
            raise UserError(f"{what}: give the full hash of a profile or artifact"
                            f" ({HASH_LEN} characters): a cache is looked up by hash")
        descriptions: dict[str, dict[str, Any]] = {}
        keys = parse_trusted(trusted)
        names: dict[str, str] = {}
        carried: dict[str, Any] = {}  # what the profile's envelope carries (push.py)
        vouched: dict[str, str] = {}  # "by": the key vouching for what it carries, if one
        checked: dict[str, Checked] = {}  # descriptions found well signed for their hash

        def read(h: str) -> dict[str, Any]:
            known = _carried(carried, h, keys, vouched.get("by"))
            if known is not None:
                checked[h] = known
                found: Any = known.description
            else:
                found = cache.description(h)  # most hashes are artifacts': asked first
            if isinstance(found, dict):
                descriptions[h] = found
                spec = found.get("spec")
            else:
                doc = cache.spec(h)
                spec = doc
                if doc is not None:
                    name = envelope_name(doc)  # signed with the spec, checked just below
                    spec, signer = _verified_spec(url, doc, h, keys)
                    if name is not None:
                        names[h] = name
                    if h == what and isinstance(doc.get("descriptions"), dict):
                        carried.update(doc["descriptions"])  # signed with it, too
                        if doc.get(VOUCHED) == signer:
                            vouched["by"] = signer
            if spec is None and h == what:
                raise UserError(f"{url}: has no profile or artifact {what}")
            if spec is None:
                raise UserError(f"{url}: has no spec {h}, which {what} needs (pushed by an"
                                " older hdenv? push it again)")
            # a checked description's spec hashes to `h` (check_entry): not hashed twice
            if not isinstance(spec, dict) or (known is None and spec_hash(spec) != h):
                raise UserError(f"{url}: spec {h} does not hash to {h}: it was changed or"
                                " damaged; refusing the cache")
            return spec

        specs = build_closure(read, [what], jobs, at_hand=lambda h: h in carried)
        check_graph(specs, [what], url)
        for h, description in sorted(descriptions.items()):
            if h in checked:
                continue
            aid = node_id(h, specs[h])
            try:
                checked[h] = Checked(aid, description, check_entry(description, aid, keys))
            except (NotHere, ArchiveRefused) as e:
                raise UserError(f"--from {url}: refusing {aid}: {e.reason}") from None
            except SignatureRefused as e:
                hint = (" (trust its signer with trusted-keys in the config or"
                        " HDENV_TRUSTED_KEYS)") if str(e).startswith("untrusted") else ""
                raise UserError(f"--from {url}: refusing {aid}: {e}{hint}") from None
        kind = "profile" if specs[what].get("kind") == "profile" else "artifact"
        root: dict[str, Any] = {"kind": kind, "hash": what}
        if kind == "profile" and what in names:
            root["name"] = names[what]  # the name it was pushed by: reproduce keeps it
        if kind == "artifact":
            root["id"] = node_id(what, specs[what])
        # "artifact" marks what the cache provides, so reproduce plans no build for it
        nodes = {h: {"artifact": {"cache": url}} for h in descriptions}
        super().__init__(url, [root], specs, nodes)
        # the descriptions just checked, so each is neither asked for nor verified twice;
        # the substituter checks each archive against its description as it installs
        self.substituter = Substituter(store, [cache], keys, prefetched={
            (url, h): checked[h] for h in descriptions})

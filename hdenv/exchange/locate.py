"""Find the bundle `hdenv reproduce` was pointed at: a file, or a hash and `--from`.

`--from` is another store (`/sw/hdenv`: its specs, sources and artifacts are
used directly, and any REF of that store works, names included), a directory
of bundles (`DIR/HASH.tar`, else any `DIR/*.tar` whose roots include HASH),
a URL prefix serving such a directory (`URL/HASH.tar`), or a binary cache
(`oci://`, or a directory or URL with `hdenv-cache.json`: cachebundle.py,
which installs artifacts only through the substituter's checks). Without `--from`,
a hash whose spec this store still has is reproduced from this store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError
from ..store.hashing import is_hash_like
from ..store.layout import Store
from ..store.tmpdirs import temp_file
from .bundle import MANIFEST, Bundle, StoreBundle, TarBundle, read_manifest

TIMEOUT = 30.0


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


def _file_url_path(url: str) -> str:
    """The local path a `file:` URL names."""
    from urllib.request import url2pathname  # here: only `file:` URLs need it

    return url2pathname(urllib.parse.urlparse(url).path)


def _is_store(path: Path) -> bool:
    return (path / "specs").is_dir() and (path / "artifacts").is_dir()


@contextlib.contextmanager
def open_bundle(what: str, from_: str | None, store: Store,
                trusted_keys: list[str] | None = None, jobs: int = 1) -> Iterator[Bundle]:
    """The checked bundle for `what` (a bundle file, a hash, or with a store `--from` any REF).

    `trusted_keys` (NAME:BASE64): whose signatures a binary cache's artifacts need;
    `jobs`: how many of its specs a binary cache is asked for at once.
    """
    from .cachebundle import CacheBundle, cache_at

    cache = None if from_ is None else cache_at(from_)
    if from_ is None and Path(what).is_file():
        bundle: Bundle = TarBundle(Path(what))
    elif from_ is None:
        bundle = _from_store(store, what, own=True)
    elif cache is not None:
        bundle = CacheBundle(store, cache, what, trusted_keys or [], jobs)
    elif _is_url(from_) and not from_.startswith("file:"):
        with _download(store, from_, what) as path:
            bundle = TarBundle(path)
            bundle.label = f"{from_.rstrip('/')}/{what}.tar"
            try:
                yield bundle
            finally:
                bundle.close()
        return
    else:
        root = Path(_file_url_path(from_) if from_.startswith("file:") else from_)
        if not root.is_dir():
            raise UserError(f"--from {from_}: no such directory")
        if _is_store(root):
            bundle = _from_store(Store(root), what, own=False)
        else:
            bundle = TarBundle(_find_in_dir(root, what))
    try:
        yield bundle
    finally:
        bundle.close()


def _from_store(other: Store, what: str, *, own: bool) -> Bundle:
    if own and not is_hash_like(what) and "/" not in what:
        raise UserError(f"{what}: no such bundle file (give a bundle file, or a hash"
                        " with --from DIR|URL)")
    try:
        resolved = other.resolve(what)
        hash_ = resolved.ident.rsplit("/", 1)[-1]
        name = resolved.name
    except UserError:
        if not (is_hash_like(what) and other.spec_path(what).is_file()):
            where = "this store" if own else f"store {other.root}"
            hint = " (give the bundle file, or --from DIR|URL)" if own else ""
            raise UserError(f"{what}: not known to {where}{hint}") from None
        hash_, name = what, None
    bundle = StoreBundle(other, hash_)
    if name is not None:
        bundle.roots[0]["name"] = name
    return bundle


def _find_in_dir(root: Path, what: str) -> Path:
    if not is_hash_like(what):
        raise UserError(f"{what}: not a hash (a directory of bundles is searched by hash)")
    exact = root / f"{what}.tar"
    if exact.is_file():
        return exact
    named = sorted(p for p in root.glob(f"{what}*.tar") if p.is_file())
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise UserError(f"{what}: ambiguous in {root}: {', '.join(p.name for p in named[:5])}")
    for path in sorted(root.glob("*.tar")):
        if any(r.get("hash", "").startswith(what) for r in _roots_of(path)):
            return path
    raise UserError(f"{what}: no bundle for it in {root} (looked for {what}.tar and in *.tar)")


def _roots_of(path: Path) -> list[dict[str, str]]:
    """The roots a bundle names, reading only its first member; [] if it is not a bundle."""
    try:
        with tarfile.open(path, "r:*") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST or not member.isfile():
                return []
            f = tar.extractfile(member)
            assert f is not None
            roots = read_manifest(f.read(), str(path)).get("roots", [])
    except (OSError, tarfile.TarError, UserError):
        return []
    return [r for r in roots if isinstance(r, dict)] if isinstance(roots, list) else []


@contextlib.contextmanager
def _download(store: Store, prefix: str, what: str) -> Iterator[Path]:
    if not is_hash_like(what):
        raise UserError(f"{what}: not a hash (a URL prefix serves bundles as HASH.tar)")
    url = f"{prefix.rstrip('/')}/{urllib.parse.quote(what)}.tar"
    store.ensure()
    from urllib.request import Request, urlopen  # here: a cache's pull never loads it

    fd, path = temp_file(store, "bundle-", ".tar")
    try:
        with os.fdopen(fd, "wb") as out:
            req = Request(url, headers={"User-Agent": "hdenv"})
            try:
                with urlopen(req, timeout=TIMEOUT) as resp:
                    shutil.copyfileobj(resp, out, 1 << 20)
            except urllib.error.HTTPError as e:
                raise UserError(f"{url}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
                raise UserError(f"{url}: {reason}") from None
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

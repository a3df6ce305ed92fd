"""`hdenv pack --to oci://HOST[:PORT]/REPO[:TAG]`: push an image with the caches' registry client.

The distribution API client of `exchange.backends.OciCache` (plain HTTP for
loopback hosts, HTTPS otherwise, one-line errors) uploads each blob the
repository lacks, then the manifest under TAG. The manifest goes last, so a
registry that refuses a blob or dies midway leaves no tag: a pull of TAG
never finds a half-pushed image (the blobs already sent are shared by
digest and reused by the next push).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from ..exchange.backends import CacheUnavailable, OciCache
from ..exchange.transfer import MeteredReader, NullMeter
from .image import Image


def push_image(image: Image, host: str, repo: str, tag: str,
               say: Callable[[str], None] = lambda _line: None) -> int:
    """Upload the image; returns how many blobs were sent (the others were there)."""
    url = f"oci://{host}/{repo}"
    client = OciCache(url, host, repo)
    sent = 0
    meter = NullMeter()
    for layer in image.layers:
        with contextlib.ExitStack() as opened:
            def body(path: Path = layer.path, opened: contextlib.ExitStack = opened
                     ) -> MeteredReader:
                return MeteredReader(opened.enter_context(open(path, "rb")), meter)

            sent += client.put_blob(layer.digest, layer.size, body)
    config = image.config.data
    sent += client.put_blob(image.config.digest, len(config), lambda: config)
    _, headers = client._read("PUT", f"{client.base}/manifests/{tag}", data=image.manifest.data,
                              headers={"Content-Type": image.manifest.media})
    if headers is None:
        raise CacheUnavailable(url, f"the registry refused the manifest of {repo}:{tag} (HTTP 404)")
    say(f"pushed {url}:{tag} ({sent} blob(s) sent, {len(image.layers) + 1 - sent} already there)")
    return sent


__all__ = ["CacheUnavailable", "push_image"]

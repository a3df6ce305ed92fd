"""`docker save`'s archive format (`docker load`, `podman load`, `docker-archive:`).

A tar of `manifest.json` (config file, repo tags, layer files), the config
as `HEX.json` and each layer as `HEX/layer.tar`, written in a fixed order
with fixed times like the layers themselves.
"""

from __future__ import annotations

import io
import tarfile
from typing import IO

from .image import Image, dump


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_docker_archive(out: IO[bytes], image: Image, repo_tag: str) -> None:
    manifest = [{"Config": f"{image.config.sha}.json", "RepoTags": [repo_tag],
                 "Layers": [f"{layer.sha}/layer.tar" for layer in image.layers]}]
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for layer in image.layers:
            if layer.sha in seen:
                continue
            seen.add(layer.sha)
            d = tarfile.TarInfo(layer.sha)
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
            d.uname = d.gname = ""
            tar.addfile(d)
            with open(layer.path, "rb") as f:
                tar.addfile(_info(f"{layer.sha}/layer.tar", layer.size), f)
        for name, data in ((f"{image.config.sha}.json", image.config.data),
                           ("manifest.json", dump(manifest))):
            tar.addfile(_info(name, len(data)), io.BytesIO(data))

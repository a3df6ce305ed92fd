"""The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`): skopeo's and umoci's `oci:`.

Layers are written into the layout's blob directory as they are made (the
layout is built under a temporary name and renamed into place at the end);
this module adds the config, the manifest and the index.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .image import OCI_INDEX, Blob, Image, dump

LAYOUT = {"imageLayoutVersion": "1.0.0"}


def blob_dir(layout: Path) -> Path:
    d = layout / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    return d


def put_blob(layout: Path, blob: Blob) -> None:
    path = blob_dir(layout) / blob.sha
    if not path.exists():
        tmp = path.with_name(f".{blob.sha}.tmp")
        tmp.write_bytes(blob.data)
        os.replace(tmp, path)


def index_doc(image: Image, tag: str, name: str | None = None,
              description: str = "") -> dict[str, Any]:
    """The index: the tag, the profile's name and description (kept out of the manifest:
    neither is part of the profile's hash, so neither may change the image's digest)."""
    notes = {"org.opencontainers.image.ref.name": tag}
    if name:
        notes["dev.hdenv.profile-name"] = name
    if description:
        notes["org.opencontainers.image.description"] = description
    desc = image.manifest.descriptor(notes)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}


def finish_layout(layout: Path, image: Image, tag: str, name: str | None = None,
                  description: str = "") -> None:
    """Config, manifest, index and the layout marker (the layers are already there)."""
    put_blob(layout, image.config)
    put_blob(layout, image.manifest)
    (layout / "oci-layout").write_bytes(dump(LAYOUT))
    (layout / "index.json").write_bytes(dump(index_doc(image, tag, name, description)))
    for sub in ("blobs/sha256", "blobs"):
        os.chmod(layout / sub, 0o755)
    os.chmod(layout, 0o755)

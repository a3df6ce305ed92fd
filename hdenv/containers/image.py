"""An image's JSON documents: the config, the manifest, and the provenance they carry.

Nothing here depends on when or where `pack` runs: `created` is the Unix
epoch (or `SOURCE_DATE_EPOCH` when set, as reproducible-builds tools do),
keys are sorted and the JSON is compact, so the manifest digest is a
function of the profile, the options and hdenv's version alone. The profile
name is left out of what is hashed (it is the OCI index's ref name and the
docker tag), so packing `demo` and its hash give the same digest.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
LABEL = "dev.hdenv"  # prefix of hdenv's own labels and annotations
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
        "riscv64": "riscv64", "i686": "386"}


@dataclass
class Layer:
    """One uncompressed tar blob (its digest is also its diff id)."""

    sha: str
    size: int
    what: str  # an artifact id, "profile", "system" or "base"
    path: Path

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha}"


@dataclass
class Blob:
    data: bytes
    media: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha}"

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media, "digest": self.digest, "size": len(self.data)}
        if annotations:
            d["annotations"] = annotations
        return d


@dataclass
class Image:
    layers: list[Layer]
    config: Blob
    manifest: Blob
    labels: dict[str, str] = field(default_factory=dict)


def created() -> str:
    """The epoch, or SOURCE_DATE_EPOCH: never the time of the run."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    seconds = int(raw) if raw.isdigit() else 0
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def dump(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def labels_of(profile_hash: str, layers: list[Layer], root: str) -> dict[str, str]:
    """The provenance every image carries (config labels and manifest annotations)."""
    when = created()
    out = {
        "org.opencontainers.image.title": f"hdenv profile {profile_hash}",
        "org.opencontainers.image.revision": profile_hash,
        "org.opencontainers.image.created": when,
        "org.opencontainers.image.version": profile_hash[:12],
        "org.opencontainers.image.vendor": "hdenv",
        f"{LABEL}.profile": profile_hash,
        f"{LABEL}.store-root": root,
        f"{LABEL}.version": __version__,
        f"{LABEL}.layers": json.dumps([layer.what for layer in layers], separators=(",", ":")),
    }
    return out


def build_image(layers: list[Layer], env: dict[str, str], labels: dict[str, str], *,
                entrypoint: list[str] | None, base_config: dict[str, Any] | None) -> Image:
    """The config and manifest over `layers` (base layers first)."""
    base_inner = dict((base_config or {}).get("config") or {})
    inner: dict[str, Any] = {k: v for k, v in base_inner.items()
                             if k in ("Cmd", "Entrypoint", "User", "ExposedPorts", "Volumes",
                                      "StopSignal")}
    base_env = [e for e in base_inner.get("Env") or [] if isinstance(e, str)]
    merged = {k: v for k, _, v in (e.partition("=") for e in base_env)}
    merged.update(env)
    inner["Env"] = [f"{k}={v}" for k, v in merged.items()]
    inner["WorkingDir"] = "/"
    inner["Labels"] = {**(base_inner.get("Labels") or {}), **labels}
    if entrypoint is not None:
        inner["Entrypoint"] = entrypoint
        inner.pop("Cmd", None)
    history = list((base_config or {}).get("history") or [])
    for layer in layers:
        if layer.what != "base":
            history.append({"created": created(), "created_by": f"hdenv pack: {layer.what}"})
    config = {
        "architecture": (base_config or {}).get("architecture")
        or ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": created(),
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "history": history,
    }
    cblob = Blob(dump(config), OCI_CONFIG)
    descs = []
    for layer in layers:
        desc: dict[str, Any] = {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}
        if layer.what != "base":
            desc["annotations"] = {f"{LABEL}.content": layer.what}
        descs.append(desc)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cblob.descriptor(),
                "layers": descs, "annotations": {k: v for k, v in labels.items()
                                                 if k != f"{LABEL}.layers"}}
    return Image(layers, cblob, Blob(dump(manifest), OCI_MANIFEST), labels)

"""`--base IMAGE`: the layers and config of an existing image (an OCI layout or a docker archive).

Its layers are copied (decompressed: every layer of a packed image is a
plain tar, so a layer's digest is its diff id) into the new image's blob
directory before hdenv's own, its config's Env, Cmd, Entrypoint and labels
are kept under the profile's, and the paths it holds are noted so the host
layer does not replace one of its directories (a `/lib64` directory) with a
symlink from this machine.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import UserError
from .image import Layer

MAX_JSON = 16 << 20


@dataclass
class BaseImage:
    layers: list[Layer]
    config: dict[str, Any]
    paths: frozenset[str]  # absolute paths present in the base (any kind)


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise UserError(f"--base {where}: not valid JSON") from None


def _copy_layer(src: IO[bytes], blobs: Path, where: str) -> tuple[Layer, set[str]]:
    """Decompress (gzip) and copy one layer, hashing it; returns it and the paths it holds."""
    head = src.read(4)
    src.seek(0)
    rest: IO[bytes] = src
    if head[:2] == b"\x1f\x8b":
        rest = gzip.GzipFile(fileobj=src)  # type: ignore[assignment]
    elif head == b"\x28\xb5\x2f\xfd":
        raise UserError(f"--base {where}: zstd-compressed layers are not supported;"
                        " convert with `skopeo copy --dest-decompress`")
    fd, tmp = tempfile.mkstemp(prefix=".base-", dir=blobs)
    sha = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := rest.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
            out.write(chunk)
    paths: set[str] = set()
    try:
        with tarfile.open(tmp) as tar:
            for m in tar:
                paths.add("/" + m.name.lstrip("./").rstrip("/"))
    except tarfile.TarError:
        os.unlink(tmp)
        raise UserError(f"--base {where}: a layer is not a tar") from None
    final = blobs / sha.hexdigest()
    os.replace(tmp, final)
    return Layer(sha.hexdigest(), size, "base", final), paths


def read_base(path: Path, blobs: Path) -> BaseImage:
    if path.is_dir():
        return _from_layout(path, blobs)
    if path.is_file():
        return _from_archive(path, blobs)
    raise UserError(f"--base {path}: no such OCI layout or image archive")


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hex_ = str(digest).partition(":")
    if algo != "sha256" or len(hex_) != 64 or not all(c in "0123456789abcdef" for c in hex_):
        raise UserError(f"--base {layout}: bad digest {digest!r}")
    return layout / "blobs" / "sha256" / hex_


def _read_small(path: Path, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON + 1)
    except OSError as e:
        raise UserError(f"--base {where}: {e.strerror}") from None
    if len(data) > MAX_JSON:
        raise UserError(f"--base {where}: {path.name} is too large")
    return data


def _from_layout(layout: Path, blobs: Path) -> BaseImage:
    where = str(layout)
    index = _json(_read_small(layout / "index.json", where), where)
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not manifests:
        raise UserError(f"--base {where}: index.json lists no image")
    manifest = _json(_read_small(_blob(layout, manifests[0].get("digest")), where), where)
    if "layers" not in manifest:
        raise UserError(f"--base {where}: the first image is not a single-platform manifest")
    config = _json(_read_small(_blob(layout, manifest["config"]["digest"]), where), where)
    layers, paths = [], set()
    for desc in manifest["layers"]:
        with open(_blob(layout, desc["digest"]), "rb") as f:
            layer, held = _copy_layer(f, blobs, where)
        layers.append(layer)
        paths |= held
    return BaseImage(layers, config, frozenset(paths))


def _from_archive(archive: Path, blobs: Path) -> BaseImage:
    where = str(archive)
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 (the with below closes it)
    except tarfile.TarError:
        raise UserError(f"--base {where}: neither an OCI layout nor a docker archive") from None
    with tar:
        def member(name: str) -> IO[bytes]:
            try:
                f = tar.extractfile(name)
            except KeyError:
                f = None
            if f is None:
                raise UserError(f"--base {where}: no {name} in the archive")
            return f

        manifest = _json(member("manifest.json").read(MAX_JSON), where)
        if not isinstance(manifest, list) or not manifest:
            raise UserError(f"--base {where}: manifest.json lists no image")
        config = _json(member(manifest[0]["Config"]).read(MAX_JSON), where)
        layers, paths = [], set()
        for name in manifest[0]["Layers"]:
            layer, held = _copy_layer(member(name), blobs, where)
            layers.append(layer)
            paths |= held
    return BaseImage(layers, config, frozenset(paths))



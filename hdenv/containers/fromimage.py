"""`hdenv reproduce IMAGE`: an image made by `pack` read back as a bundle with its artifacts.

Every image carries `/.hdenv-image/bundle.tar` (the profile's specs, in the
format `hdenv export` writes) and `/.hdenv-image/image.json` (the store root
inside the image and the artifact ids). Reading an image (an OCI layout, a
docker archive, the flat tar or SquashFS image) gives a bundle whose built
artifacts come from the image's own layers: each artifact's tree is repacked
into the caches' travelling form (`exchange.pack`: a zstd tar plus a
description naming the image's store root), so `reproduce` installs it
through `install_packed` (spec hashed against the id, archive against its
hash, strict extraction, relocation to this store) instead of building it.
Host software is captured on this machine as for any bundle, with the drift
check. The image is trusted as a bundle is: reproduce images from people you
trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..errors import UserError
from ..exchange.bundle import MANIFEST
from ..exchange.pack import COMPRESSION, FORMAT, LOCAL_META, STORE_WRITTEN_META
from .pack import IMAGE_META

MAX_META = 256 << 20
SQUASHFS_MAGIC = b"hsqs"


def _is_bundle(path: Path) -> bool:
    try:
        with tarfile.open(path) as tar:
            first = tar.next()
            return first is not None and first.name == MANIFEST
    except (OSError, tarfile.TarError):
        return False


class _Image:
    """The layers of an image: (what, open tar) in order; 'flat' for a single tree."""

    def __init__(self) -> None:
        self.layers: list[tuple[str, tarfile.TarFile]] = []
        self.stack = contextlib.ExitStack()
        self.name: str | None = None

    def add(self, what: str, fileobj: IO[bytes]) -> None:
        try:
            tar = tarfile.open(fileobj=fileobj)  # noqa: SIM115 (closed with the stack)
        except tarfile.TarError:
            raise UserError(f"a layer of the image is not a tar ({what})") from None
        self.stack.enter_context(tar)
        self.layers.append((what, tar))

    def member(self, name: str) -> bytes | None:
        """A file of the merged tree (the last layer holding it wins)."""
        for _what, tar in reversed(self.layers):
            try:
                info = tar.getmember(name)
            except KeyError:
                continue
            if not info.isfile() or info.size > MAX_META:
                return None
            f = tar.extractfile(info)
            return f.read() if f is not None else None
        return None

    def tar_for(self, aid: str) -> tarfile.TarFile:
        for what, tar in self.layers:
            if what in (aid, "flat"):
                return tar
        raise UserError(f"the image has no layer for {aid}")


def _open_image(path: Path, work: Path) -> _Image | None:
    """The image at `path`, or None when it is not one (a bundle, anything else)."""
    img = _Image()
    if path.is_dir() and (path / "oci-layout").is_file():
        index = json.loads((path / "index.json").read_bytes())
        desc = index["manifests"][0]
        img.name = (desc.get("annotations") or {}).get("dev.hdenv.profile-name")
        manifest = json.loads(_blob(path, desc["digest"]).read_bytes())
        for layer in manifest["layers"]:
            what = (layer.get("annotations") or {}).get("dev.hdenv.content", "base")
            blob = open(_blob(path, layer["digest"]), "rb")  # noqa: SIM115 (closed with the stack)
            img.add(what, img.stack.enter_context(blob))
        return img
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == SQUASHFS_MAGIC:
        tree = work / "unsquashed"
        done = subprocess.run(["unsquashfs", "-no-progress", "-d", str(tree), str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise UserError(f"{path}: unsquashfs failed: {done.stderr.strip()[-200:]}")
        flat = work / "flat.tar"
        subprocess.run(["tar", "-C", str(tree), "-cf", str(flat), "."], check=True)
        shutil.rmtree(tree, ignore_errors=True)
        flat_file = open(flat, "rb")  # noqa: SIM115 (closed with the stack)
        img.add("flat", img.stack.enter_context(flat_file))
        return img
    if _is_bundle(path):
        return None
    try:
        outer = tarfile.open(path)  # noqa: SIM115 (closed with the stack)
    except (tarfile.TarError, OSError):
        return None
    img.stack.enter_context(outer)
    names = outer.getnames()
    if "manifest.json" in names:  # a docker archive
        mf = outer.extractfile("manifest.json")
        manifest = json.loads(mf.read()) if mf is not None else []
        cf = outer.extractfile(manifest[0]["Config"])
        config = json.loads(cf.read()) if cf is not None else {}
        labels = (config.get("config") or {}).get("Labels") or {}
        for tag in manifest[0].get("RepoTags") or []:  # localhost/hdenv/NAME:TAG, from pack
            repo = str(tag).rsplit(":", 1)[0]
            if repo.startswith("localhost/hdenv/") and not repo.endswith(
                    f"/profile-{labels.get('dev.hdenv.profile', '')[:12]}"):
                img.name = repo.rsplit("/", 1)[-1]
        ours = json.loads(labels.get("dev.hdenv.layers", "[]"))
        files = manifest[0]["Layers"]
        whats = ["base"] * (len(files) - len(ours)) + ours
        for what, name in zip(whats, files):
            lf = outer.extractfile(name)
            if lf is None:
                raise UserError(f"{path}: layer {name} is missing")
            img.add(what, lf)
        return img
    if f"{IMAGE_META}/image.json" in names or f"./{IMAGE_META}/image.json" in names:
        img.layers.append(("flat", outer))
        return img
    img.stack.close()
    return None


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hex_ = str(digest).partition(":")
    if algo != "sha256" or len(hex_) != 64 or not all(c in "0123456789abcdef" for c in hex_):
        raise UserError(f"{layout}: bad digest {digest!r}")
    return layout / "blobs" / "sha256" / hex_


def _flat_name(img: _Image, name: str) -> str:
    """Flat tars made from unsquashed trees name members ./x."""
    if img.layers and img.layers[0][0] == "flat":
        tar = img.layers[0][1]
        with contextlib.suppress(KeyError):
            tar.getmember("./" + name)
            return "./" + name
    return name


def _repack(tar: tarfile.TarFile, prefix: str, out: Path, aid: str) -> tuple[str, int, Any]:
    """The artifact's members under `prefix` as the caches' zstd tar; (sha256, size, meta)."""
    import zstandard

    meta: Any = {}
    sha = hashlib.sha256()
    size = 0

    class _Sink:
        def write(self, data: bytes) -> int:
            nonlocal size
            sha.update(data)
            size += len(data)
            raw.write(data)
            return len(data)

    with open(out, "wb") as raw:
        cctx = zstandard.ZstdCompressor(level=3)
        sink: Any = _Sink()
        with cctx.stream_writer(sink, closefd=False) as zst, \
                tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as dst:
            for m in tar.getmembers():
                name = m.name[2:] if m.name.startswith("./") else m.name
                if not name.startswith(prefix):
                    continue
                rel = name[len(prefix):]
                if not rel:
                    continue
                if rel == ".hdenv/artifact.json":
                    f = tar.extractfile(m)
                    meta = json.loads(f.read()) if f is not None else {}
                if rel.startswith(".hdenv/") and rel[7:] in STORE_WRITTEN_META:
                    continue
                info = tarfile.TarInfo(rel)
                info.mode, info.mtime, info.uid, info.gid = m.mode, 0, 0, 0
                if m.isdir():
                    info.type = tarfile.DIRTYPE
                    dst.addfile(info)
                elif m.issym():
                    info.type, info.linkname = tarfile.SYMTYPE, m.linkname
                    dst.addfile(info)
                elif m.isfile():
                    info.size = m.size
                    dst.addfile(info, tar.extractfile(m))
                else:
                    raise UserError(f"the image's {aid} holds {rel}, neither file, link nor"
                                    " directory")
    return sha.hexdigest(), size, meta


@contextlib.contextmanager
def image_as_bundle(what: str, work: Path) -> Iterator[tuple[str, str | None]]:
    """(bundle path, profile name) for an image made by pack; `what` unchanged otherwise."""
    img = _open_image(Path(what), work)
    if img is None:
        yield what, None
        return
    with img.stack:
        image_json = img.member(_flat_name(img, f"{IMAGE_META}/image.json"))
        bundle_tar = img.member(_flat_name(img, f"{IMAGE_META}/bundle.tar"))
        if image_json is None or bundle_tar is None:
            raise UserError(f"{what}: an image, but not one made by `hdenv pack`"
                            f" (no /{IMAGE_META}/bundle.tar)")
        info = json.loads(image_json)
        root = str(info["store_root"]).rstrip("/")
        out = work / "image-bundle.tar"
        with tarfile.open(fileobj=io.BytesIO(bundle_tar)) as src, \
                tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
            manifest = json.loads(src.extractfile(MANIFEST).read())  # type: ignore[union-attr]
            nodes = manifest.get("nodes") or {}
            archives: list[tuple[str, Path]] = []
            for aid in info["artifacts"]:
                h = aid.rsplit("/", 1)[-1]
                node = nodes.get(h) or {}
                if node.get("kind") == "host":
                    continue
                spec_member = src.extractfile(f"specs/{h}.json")
                if spec_member is None:
                    raise UserError(f"{what}: the image's bundle lacks the spec of {aid}")
                spec = json.loads(spec_member.read())
                tmp = work / f"{h}.tar.zst"
                sha, size, meta = _repack(img.tar_for(aid), f"{root.lstrip('/')}/artifacts/{aid}/",
                                          tmp, aid)
                arc = work / f"{sha}.tar.zst"
                tmp.rename(arc)
                node["artifact"] = {"archive": f"artifacts/{sha}.tar.zst", "description": {
                    "format": FORMAT, "id": aid, "spec": spec, "store_root": root,
                    "references": sorted(meta.get("runtime_deps") or []),
                    "archive_sha256": sha, "archive_size": size, "compression": COMPRESSION,
                    "meta": {k: v for k, v in meta.items() if k not in LOCAL_META},
                    "hdenv_version": __version__}}
                archives.append((f"artifacts/{sha}.tar.zst", arc))
            if img.name:
                for r in manifest.get("roots") or []:
                    r.setdefault("name", img.name)
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            head = tarfile.TarInfo(MANIFEST)
            head.size = len(data)
            dst.addfile(head, io.BytesIO(data))
            for m in src.getmembers():
                if m.name != MANIFEST and m.isfile():
                    dst.addfile(m, src.extractfile(m))
            for name, path in archives:
                with open(path, "rb") as f:
                    ti = tarfile.TarInfo(name)
                    ti.size = path.stat().st_size
                    dst.addfile(ti, f)
                path.unlink()
        yield str(out), img.name

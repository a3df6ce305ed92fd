"""`hdenv pack`: a profile as an OCI layout, docker archive, SquashFS image or tar, or a push.

The steps, each in its own module: `closure` (the profile and its artifacts
in dependency order), `sysfiles` (host files and the system libraries they
load), `trees` + `tarlayer` (one reproducible layer per artifact, one for
the profile and the image's own metadata, one for the host files), `image`
(config and manifest with provenance), then one writer per format
(`ocilayout`, `dockerarchive`, `flat`, `registry`), plus `sbom` and `base`.

Nothing half-written is ever left at the output path: the image is built
under a temporary name beside it (a directory for an OCI layout, a file
otherwise) and renamed into place at the end; an error or Ctrl-C removes
the temporary. A push uploads every blob before the manifest, so a registry
that refuses or dies midway has no tag pointing at an incomplete image.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError, UserError
from ..exchange.relocate import Relocator
from ..store.hashing import canonical_json
from ..store.layout import Store
from . import ocilayout
from .closure import Closure, collect, load_env
from .image import Image, Layer, build_image, dump, labels_of
from .sysfiles import collect_system_files
from .tarlayer import Entry, directory, write_layer
from .trees import TreeReader

FORMATS = ("oci", "docker-archive", "squashfs", "tar")
SBOM_FORMATS = ("spdx", "cyclonedx")
IMAGE_META = ".hdenv-image"  # the image's own metadata directory, at its root


@dataclass
class PackOptions:
    format: str = "oci"
    output: Path | None = None
    to: str | None = None
    root: str | None = None
    base: Path | None = None
    entrypoint: str | None = None
    tag: str = "latest"
    sbom: str | None = None


@dataclass
class PackResult:
    image: Image
    closure: Closure
    output: str
    sbom_path: Path | None = None
    missing: list[str] = field(default_factory=list)


def check_options(opts: PackOptions) -> None:
    """Every input mistake, before anything is read or written."""
    if opts.format not in FORMATS:
        raise UserError(f"unknown image format {opts.format!r}: one of {', '.join(FORMATS)}")
    if opts.sbom is not None and opts.sbom not in SBOM_FORMATS:
        raise UserError(f"unknown SBOM format {opts.sbom!r}: spdx or cyclonedx")
    if (opts.output is None) == (opts.to is None):
        raise UserError("give exactly one of -o PATH and --to oci://HOST[:PORT]/REPO[:TAG]")
    if opts.to is not None and opts.format != "oci":
        raise UserError("--to pushes an OCI image: leave out --format or use --format oci")
    if opts.output is not None and os.path.lexists(opts.output):
        raise UserError(f"{opts.output} already exists: choose another path or remove it")
    if opts.output is not None and opts.sbom is not None:
        beside = sbom_path(opts.output, opts.sbom)
        if os.path.lexists(beside):
            raise UserError(f"{beside} already exists: remove it or choose another -o")
    if opts.output is not None and not opts.output.parent.is_dir():
        raise UserError(f"{opts.output.parent} is not a directory")
    if opts.root is not None and not opts.root.startswith("/"):
        raise UserError(f"--root {opts.root!r}: expected an absolute directory")
    if opts.entrypoint is not None:
        try:
            if not shlex.split(opts.entrypoint):
                raise UserError("--entrypoint is empty")
        except ValueError as e:
            raise UserError(f"--entrypoint {opts.entrypoint!r}: {e}") from None
    if not opts.tag or any(c in opts.tag for c in "/: \t\n"):
        raise UserError(f"--tag {opts.tag!r}: expected a tag such as latest or v1")
    if opts.to is not None:
        parse_target(opts.to)


def sbom_path(output: Path, kind: str) -> Path:
    """Where the SBOM goes beside the image: PATH.sbom.spdx.json or PATH.sbom.cdx.json."""
    from .sbom import file_name

    return output.with_name(f"{output.name}.{file_name(kind)}")


def parse_target(url: str) -> tuple[str, str, str]:
    """oci://HOST[:PORT]/REPO[:TAG] -> (host, repo, tag)."""
    parts = urllib.parse.urlsplit(url)
    repo = parts.path.strip("/")
    if parts.scheme != "oci" or not parts.netloc or not repo:
        raise UserError(f"--to {url!r}: expected oci://HOST[:PORT]/REPO[:TAG]")
    tag = "latest"
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = repo.rsplit(":", 1)
    if not repo or not tag:
        raise UserError(f"--to {url!r}: expected oci://HOST[:PORT]/REPO[:TAG]")
    return parts.netloc, repo, tag


@contextlib.contextmanager
def _workspace(opts: PackOptions) -> Iterator[Path]:
    """A temporary directory beside the output (same file system: the rename is atomic)."""
    parent = opts.output.parent if opts.output is not None else None
    stem = f".{opts.output.name}." if opts.output is not None else "hdenv-pack-"
    work = Path(tempfile.mkdtemp(prefix=stem, suffix=".tmp", dir=parent))
    try:
        yield work
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _layer(blobs: Path, what: str, entries: list[Entry]) -> Layer:
    fd, tmp = tempfile.mkstemp(prefix=".layer-", dir=blobs)
    with os.fdopen(fd, "wb") as out:
        try:
            sha, size = write_layer(entries, out)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL, errno.ENOENT):
                raise
            raise StoreError(f"cannot pack {what}: {e.filename or ''} changed while it was"
                             f" read ({e.strerror}); see `hdenv verify`") from None
    final = blobs / sha
    os.replace(tmp, final)
    os.chmod(final, 0o644)
    return Layer(sha, size, what, final)


def _relocator(closure: Closure, root: str | None) -> Relocator | None:
    if root is None:
        return None
    new = root.rstrip("/") or "/"
    moves = {str(r): new for r in closure.roots()[1:]}
    return Relocator(str(closure.store_root), new, moves)


def _image_meta(closure: Closure, reader: TreeReader, extra: dict[str, bytes]) -> list[Entry]:
    """`/.hdenv-image/`: what the image is (profile, store root, artifacts) and its SBOM."""
    doc = {"profile": closure.hash, "profile_path": reader.image_path(closure.path),
           "store_root": reader.image_path(closure.store_root),
           "artifacts": [p.ident for p in closure.parts]}
    files = {"image.json": canonical_json(doc) + b"\n", **extra}
    return [directory(IMAGE_META)] + [
        Entry(f"{IMAGE_META}/{name}", "file", 0o644, data=data) for name, data in files.items()]


def pack(store: Store, ref: str, opts: PackOptions,
         say: Callable[[str], None] = lambda _line: None) -> PackResult:
    """Make the image; returns what was written (or pushed) and its manifest."""
    from . import base as base_mod
    from . import sbom as sbom_mod

    check_options(opts)
    closure = collect(store, ref)
    with _workspace(opts) as work:
        layout = work / "image"
        blobs = ocilayout.blob_dir(layout)
        scratch = work / "scratch"
        scratch.mkdir()
        base = base_mod.read_base(opts.base, blobs) if opts.base is not None else None
        reader = TreeReader(_relocator(closure, opts.root), scratch)
        # Apptainer's `run` executes /.singularity.d/runscript, a /bin/sh script
        shell = ("/bin/sh",) if opts.format == "squashfs" and opts.entrypoint else ()
        system = collect_system_files(closure, base.paths if base is not None else frozenset(),
                                      shell)
        say(f"packing profile {closure.hash}: {len(closure.parts)} artifact(s),"
            f" {len(system.files)} host file(s)")
        layers: list[Layer] = list(base.layers) if base is not None else []
        sys_entries = list(system.entries.values())
        if base is None:
            sys_entries.append(directory("tmp", 0o1777))
        layers.append(_layer(blobs, "system", sys_entries))
        for part in closure.parts:
            layers.append(_layer(blobs, part.ident, reader.entries(part.path)))
        extra: dict[str, bytes] = {}
        sbom_doc: bytes | None = None
        if opts.sbom is not None:
            sbom_doc = sbom_mod.document(store, closure, system, opts.sbom, reader)
            extra[sbom_mod.file_name(opts.sbom)] = sbom_doc
        extra["bundle.tar"] = _specs_bundle(store, closure, scratch)
        layers.append(_layer(blobs, "profile", reader.entries(closure.path)
                             + _image_meta(closure, reader, extra)))
        base_path = None
        if base is not None:
            for e in (base.config.get("config") or {}).get("Env") or []:
                if isinstance(e, str) and e.startswith("PATH="):
                    base_path = e[5:]
        env = {k: (reader.relocator.text(v) if reader.relocator is not None else v)
               for k, v in load_env(closure, base_path).items()}
        labels = labels_of(closure.hash, layers, reader.image_path(closure.store_root))
        entry = shlex.split(opts.entrypoint) if opts.entrypoint is not None else None
        image = build_image(layers, env, labels, entrypoint=entry,
                            base_config=base.config if base is not None else None)
        result = PackResult(image, closure, "", missing=system.missing)
        name = closure.name or f"profile-{closure.hash[:12]}"
        if opts.to is not None:
            from .registry import push_image

            host, repo, tag = parse_target(opts.to)
            push_image(image, host, repo, tag, say)
            result.output = f"oci://{host}/{repo}:{tag}"
            return result
        assert opts.output is not None
        final = opts.output
        if opts.format == "oci":
            ocilayout.finish_layout(layout, image, opts.tag, closure.name,
                                    store.about(closure.hash).get("description", ""))
            built = layout
        else:
            built = work / "out"
            _write_flat_or_archive(opts, image, built, name, work, env, closure)
        if sbom_doc is not None:
            result.sbom_path = sbom_path(final, opts.sbom or "")
            sbom_tmp = work / "sbom"
            sbom_tmp.write_bytes(sbom_doc)
        _publish(built, final)
        if sbom_doc is not None and result.sbom_path is not None:
            _publish(work / "sbom", result.sbom_path)
        result.output = str(final)
        return result


def _publish(built: Path, final: Path) -> None:
    """Move into place without replacing anything that appeared meanwhile (in /tmp,
    someone else may create the name after the first check): a file by link(2),
    which never replaces, a directory by renameat2(RENAME_NOREPLACE)."""
    exists = UserError(f"{final} already exists: choose another path or remove it")
    if not built.is_dir():
        try:
            os.link(built, final)
        except FileExistsError:
            raise exists from None
        os.unlink(built)
        return
    if _rename_noreplace(built, final):
        return
    if os.path.lexists(final):
        raise exists
    os.rename(built, final)


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """renameat2(RENAME_NOREPLACE); False where the C library or file system lacks it."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, noreplace = -100, 1
    if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise UserError(f"{dst} already exists: choose another path or remove it")
    if err in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _write_flat_or_archive(opts: PackOptions, image: Image, out: Path, name: str, work: Path,
                           env: dict[str, str], closure: Closure) -> None:
    if opts.format == "docker-archive":
        from .dockerarchive import write_docker_archive

        with open(out, "wb") as f:
            write_docker_archive(f, image, f"localhost/hdenv/{name}:{opts.tag}")
        os.chmod(out, 0o644)
        return
    from .flat import write_squashfs, write_tar

    if opts.format == "tar":
        write_tar(image, out)
    else:
        write_squashfs(image, out, work, env, opts.entrypoint)


def _specs_bundle(store: Store, closure: Closure, scratch: Path) -> bytes:
    """hdenv's bundle of the profile's specs, so `hdenv reproduce` can take the image."""
    from ..exchange.bundle import write_bundle

    out = scratch / "bundle.tar"
    # no name: the same profile packed by name or by hash must give the same image
    root: dict[str, Any] = {"kind": "profile", "hash": closure.hash}
    write_bundle(store, root, out, host={})
    data = _fixed_time(out)
    out.unlink()
    return data


def _fixed_time(bundle: Path) -> bytes:
    """The bundle with its manifest's `created` set to the image's (no time of the run)."""
    import io
    import json
    import tarfile

    from ..exchange.bundle import MANIFEST
    from .image import created

    buf = io.BytesIO()
    with tarfile.open(bundle) as src, tarfile.open(fileobj=buf, mode="w",
                                                   format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            f = src.extractfile(member)
            data = f.read() if f is not None else b""
            if member.name == MANIFEST:
                doc = json.loads(data)
                doc["created"] = created()
                data = json.dumps(doc, indent=1, sort_keys=True).encode()
            member.size, member.mtime = len(data), 0
            dst.addfile(member, io.BytesIO(data))
    return buf.getvalue()


__all__ = ["FORMATS", "PackOptions", "PackResult", "check_options", "dump", "pack"]

"""Safe unpacking: every format made here with tarfile/zipfile, and every refusal."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hdenv.errors import UserError
from hdenv.store.archive import detect_format, unpack

SCRIPT = b"#!/bin/sh\necho configured\n"


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"", *, mode: int = 0o644,
         kind: bytes = tarfile.REGTYPE, link: str = "", mtime: int = 1_600_000_000) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


def make_tar(path: Path, members: list[dict[str, Any]], compression: str = "gz") -> Path:
    mode = f"w:{compression}" if compression else "w"
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for m in members:
            _add(tf, **m)
    return path


def project_members(top: str = "pkg-1.0") -> list[dict]:
    return [
        {"name": f"{top}", "kind": tarfile.DIRTYPE, "mode": 0o755},
        {"name": f"{top}/configure", "data": SCRIPT, "mode": 0o755},
        {"name": f"{top}/src/main.c", "data": b"int main(void){return 0;}\n"},
        {"name": f"{top}/link-to-main", "kind": tarfile.SYMTYPE, "link": "src/main.c"},
        {"name": f"{top}/hard-main", "kind": tarfile.LNKTYPE, "link": f"{top}/src/main.c"},
    ]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("compression,fmt", [("gz", "tar.gz"), ("bz2", "tar.bz2"),
                                             ("xz", "tar.xz"), ("", "tar")])
def test_tar_formats_strip_exec_bits_and_links(tmp_path: Path, compression: str, fmt: str) -> None:
    arc = make_tar(tmp_path / "a.archive", project_members(), compression)
    assert detect_format(arc) == fmt  # by magic bytes, not by the (useless) suffix
    dest = tmp_path / "out"
    unpack(arc, dest, strip=1)
    assert listing(dest) == ["configure", "hard-main", "link-to-main", "src", "src/main.c"]
    assert os.access(dest / "configure", os.X_OK)
    assert not os.access(dest / "src/main.c", os.X_OK)
    assert os.readlink(dest / "link-to-main") == "src/main.c"
    assert (dest / "hard-main").read_bytes() == (dest / "src/main.c").read_bytes()
    assert (dest / "configure").stat().st_mtime == 1_600_000_000


def test_strip_zero_keeps_top_dir_and_strip_two_skips_short_members(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "a.tgz", project_members())
    unpack(arc, tmp_path / "s0")
    assert (tmp_path / "s0/pkg-1.0/configure").read_bytes() == SCRIPT
    unpack(arc, tmp_path / "s2", strip=2)
    assert listing(tmp_path / "s2") == ["main.c"]


def test_zip_keeps_unix_modes_and_symlinks(tmp_path: Path) -> None:
    arc = tmp_path / "src.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zi = zipfile.ZipInfo("pkg/configure")
        zi.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(zi, SCRIPT)
        zi = zipfile.ZipInfo("pkg/README")
        zi.external_attr = (stat.S_IFREG | 0o644) << 16
        zf.writestr(zi, b"read me\n")
        zi = zipfile.ZipInfo("pkg/docs/")
        zi.external_attr = (stat.S_IFDIR | 0o755) << 16
        zf.writestr(zi, b"")
        zi = zipfile.ZipInfo("pkg/docs/README")
        zi.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(zi, b"../README")
    assert detect_format(arc) == "zip"
    dest = tmp_path / "out"
    unpack(arc, dest, strip=1)
    assert listing(dest) == ["README", "configure", "docs", "docs/README"]
    assert os.access(dest / "configure", os.X_OK)
    assert not os.access(dest / "README", os.X_OK)
    assert (dest / "docs/README").is_symlink()
    assert (dest / "docs/README").read_bytes() == b"read me\n"


def test_zip_without_unix_modes_gets_defaults(tmp_path: Path) -> None:
    arc = tmp_path / "win.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("a/b.txt", b"x")
        # No unix mode at all, as from Windows tools (writestr itself defaults to 0o600).
        zf.getinfo("a/b.txt").external_attr = 0
    unpack(arc, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out/a/b.txt").stat().st_mode) == 0o644


def test_single_file_is_copied_under_its_name(tmp_path: Path) -> None:
    src = tmp_path / "fix.patch"
    src.write_bytes(b"--- a\n+++ b\n")
    unpack(src, tmp_path / "out", filename="0001-fix.patch")
    assert (tmp_path / "out/0001-fix.patch").read_bytes() == b"--- a\n+++ b\n"
    unpack(src, tmp_path / "out2")
    assert listing(tmp_path / "out2") == ["fix.patch"]


def test_gzipped_non_tar_is_a_single_file(tmp_path: Path) -> None:
    src = tmp_path / "data.gz"
    src.write_bytes(gzip.compress(b"not a tar at all"))
    assert detect_format(src) == "file"
    unpack(src, tmp_path / "out")
    assert (tmp_path / "out/data.gz").read_bytes() == src.read_bytes()


def test_single_file_keeps_exec_bit(tmp_path: Path) -> None:
    src = tmp_path / "install.sh"
    src.write_bytes(SCRIPT)
    src.chmod(0o755)
    unpack(src, tmp_path / "out")
    assert os.access(tmp_path / "out/install.sh", os.X_OK)


BAD_TARS: dict[str, list[dict[str, Any]]] = {
    "absolute": [{"name": "/tmp/evil", "data": b"x"}],
    "dotdot": [{"name": "pkg/../../evil", "data": b"x"}],
    "symlink-escape": [{"name": "pkg/up", "kind": tarfile.SYMTYPE, "link": "../../outside"}],
    "symlink-absolute": [{"name": "pkg/etc", "kind": tarfile.SYMTYPE, "link": "/etc"}],
    "symlink-chain-escape": [
        {"name": "pkg/d/up", "kind": tarfile.SYMTYPE, "link": ".."},
        {"name": "pkg/d/x", "kind": tarfile.SYMTYPE, "link": "up/../.."},
    ],
    "hardlink-escape": [{"name": "pkg/h", "kind": tarfile.LNKTYPE, "link": "../outside"}],
    "hardlink-absolute": [{"name": "pkg/h", "kind": tarfile.LNKTYPE, "link": "/etc/passwd"}],
    "write-through-symlink": [
        {"name": "pkg/ok.txt", "data": b"fine"},
        {"name": "pkg/esc", "kind": tarfile.SYMTYPE, "link": "sub"},
        {"name": "pkg/sub", "kind": tarfile.DIRTYPE, "mode": 0o755},
        {"name": "pkg/esc/planted", "data": b"x"},
    ],
    "fifo": [{"name": "pkg/fifo", "kind": tarfile.FIFOTYPE}],
    "device": [{"name": "pkg/dev", "kind": tarfile.CHRTYPE}],
}


@pytest.mark.parametrize("case", sorted(BAD_TARS))
def test_refusals_leave_nothing_behind(tmp_path: Path, case: str) -> None:
    members = [{"name": "pkg/good.txt", "data": b"good"}, *BAD_TARS[case]]
    arc = make_tar(tmp_path / f"{case}.tar.gz", members)
    dest = tmp_path / "work" / "dest"
    with pytest.raises(UserError) as exc:
        unpack(arc, dest, strip=0)
    msg = str(exc.value)
    assert str(arc) in msg
    bad_name = BAD_TARS[case][-1]["name"]
    assert repr(bad_name) in msg
    assert listing(dest) == []
    # Nothing appeared next to dest either (the escape targets).
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["dest"]
    assert not (tmp_path / "outside").exists()


def test_zip_refusals(tmp_path: Path) -> None:
    for name in ("../evil", "/abs/evil"):
        arc = tmp_path / "bad.zip"
        with zipfile.ZipFile(arc, "w") as zf:
            zf.writestr("ok.txt", b"fine")
            zf.writestr(name, b"x")
        dest = tmp_path / "dest"
        with pytest.raises(UserError, match="refusing member"):
            unpack(arc, dest)
        assert listing(dest) == []
    arc = tmp_path / "link.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zi = zipfile.ZipInfo("l")
        zi.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(zi, b"../../etc")
    with pytest.raises(UserError, match="outside the unpacked tree"):
        unpack(arc, tmp_path / "dest2")
    assert listing(tmp_path / "dest2") == []


def test_existing_symlink_in_dest_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "pkg").symlink_to(outside)
    arc = make_tar(tmp_path / "a.tgz", [{"name": "pkg/file", "data": b"x"}])
    with pytest.raises(UserError, match="not a directory"):
        unpack(arc, dest)
    assert list(outside.iterdir()) == []


def test_symlinks_inside_tree_are_fine_even_dangling_or_chained(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "a.tgz", [
        {"name": "p/d/up", "kind": tarfile.SYMTYPE, "link": ".."},
        {"name": "p/d/same", "kind": tarfile.SYMTYPE, "link": "up/d"},
        {"name": "p/dangling", "kind": tarfile.SYMTYPE, "link": "not-yet"},
    ])
    unpack(arc, tmp_path / "out", strip=1)
    assert os.readlink(tmp_path / "out/d/same") == "up/d"
    assert (tmp_path / "out/d/same").resolve() == (tmp_path / "out/d").resolve()


def test_later_member_replaces_earlier_symlink(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "a.tgz", [
        {"name": "x", "kind": tarfile.SYMTYPE, "link": "y"},
        {"name": "x", "data": b"real"},
    ])
    unpack(arc, tmp_path / "out")
    assert not (tmp_path / "out/x").is_symlink()
    assert (tmp_path / "out/x").read_bytes() == b"real"


def test_corrupt_archive_is_a_user_error_and_cleaned(tmp_path: Path) -> None:
    good = make_tar(tmp_path / "a.tgz", [{"name": "f", "data": os.urandom(200_000)}])
    data = good.read_bytes()
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt"):
        unpack(bad, tmp_path / "out")
    assert listing(tmp_path / "out") == []


def test_negative_strip_refused(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "a.tgz", project_members())
    with pytest.raises(UserError, match="strip"):
        unpack(arc, tmp_path / "out", strip=-1)


def test_truncated_compressed_archive_is_an_error_not_a_file(tmp_path: Path) -> None:
    import gzip
    import io

    from hdenv.store.archive import detect_format

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("pkg/data")
        info.size = 100_000
        tf.addfile(info, io.BytesIO(os.urandom(100_000)))
    whole = gzip.compress(buf.getvalue())
    path = tmp_path / "pkg.tar.gz"
    path.write_bytes(whole)
    assert detect_format(path) == "tar.gz"
    for cut in (10, 200, len(whole) // 2):
        path.write_bytes(whole[:cut])
        with pytest.raises(UserError, match="truncated|corrupt"):
            unpack(path, tmp_path / f"out{cut}")
    path.write_bytes(gzip.compress(b"--- a patch, not a tar\n"))
    assert detect_format(path) == "file"

"""The archive form of an artifact: pack, check, install (exchange/pack.py).

Artifacts are made with the store's own `install_artifact`, archives are read
back with the real zstd decoder and tar reader, and hostile archives are
written by hand with the same tools an attacker would use.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard
from packfixtures import make_artifact, rich_tree

from hdenv.errors import StoreError, UserError
from hdenv.exchange import pack
from hdenv.exchange.pack import (
    ArchiveRefused,
    archive_name,
    check_description,
    install_packed,
    pack_artifact,
)
from hdenv.store.artifacts import install_artifact, manifest_of
from hdenv.store.hashing import spec_hash
from hdenv.store.layout import Store
from hdenv.store.verify import verify_artifact


def test_pack_and_install_round_trip(tmp_path: Path) -> None:
    a = Store(tmp_path / "store-a-long").ensure()
    aid = make_artifact(a, "rich", rich_tree)
    out = tmp_path / "out"
    desc = pack_artifact(a, aid, out)
    archive = out / archive_name(desc)
    data = archive.read_bytes()
    assert desc["archive_sha256"] == hashlib.sha256(data).hexdigest()
    assert desc["archive_size"] == len(data)
    assert desc["id"] == aid and desc["store_root"] == str(a.root)
    assert desc["spec"] == a.read_spec(aid.split("/")[2]) and desc["references"] == []
    assert str(a.root) in desc["meta"]["note"] and "created" not in desc["meta"]
    assert check_description(json.loads(json.dumps(desc))) == aid
    # a real zstd tar; the store's own metadata files are not in it
    raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 24)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
    assert "bin/tool" in names and ".hdenv/build.log" in names
    assert not {".hdenv/artifact.json", ".hdenv/manifest.json", ".hdenv/spec.json"} & set(names)

    b2 = Store(tmp_path / "b").ensure()  # a shorter root: everything relocates
    assert install_packed(b2, desc, archive, source="test") is True
    assert install_packed(b2, desc, archive) is False  # present: nothing to do
    src, dst = a.artifact_dir(aid), b2.artifact_dir(aid)
    meta = b2.artifact_meta(aid)
    # where it came from, never the root it was built in (no byte of that is left)
    assert meta["installed_from"] == {"source": "test", "archive_sha256": desc["archive_sha256"]}
    assert meta["note"] == f"built in {b2.root}/artifacts"  # relocated too
    assert verify_artifact(b2, aid) == []
    assert not os.stat(dst / "bin" / "tool").st_mode & 0o222  # read-only, like a build
    assert os.stat(dst / "bin" / "tool").st_mode & 0o111
    assert os.readlink(dst / "share" / "abs") == str(dst / "bin" / "tool")
    assert os.readlink(dst / "lib" / "libx.so") == "libx.so.1"
    assert (dst / "share" / "dirlink" / "f").read_text() == "données\n"
    assert (dst / "share" / "hardlinked").read_text() == "données\n"
    assert (dst / "empty").is_dir()
    assert (dst / ".hdenv" / "build.log").read_text() == "built rich\n"
    assert (dst / "lib" / "pkgconfig" / "x.pc").read_text() == f"prefix={dst}\nLibs: -L{dst}/lib\n"
    assert int(os.stat(src / "bin" / "tool").st_mtime) == os.stat(dst / "bin" / "tool").st_mtime
    assert (dst / "lib" / "libx.so.1").read_bytes() == (  # same length, slash-padded
        b"\x00\x01binary\x00" + b"/" * (len(str(a.root)) - len(str(b2.root)))
        + str(dst).encode() + b"\x00")
    # the manifest records the relocated files, so it differs exactly where content moved
    moved = {k for k, v in manifest_of(src).items() if manifest_of(dst)[k] != v}
    assert moved == {"bin/tool", "lib/pkgconfig/x.pc", "lib/libx.so.1", "share/abs"}


def test_packing_twice_gives_the_same_archive(tmp_path: Path) -> None:
    a = Store(tmp_path / "a").ensure()
    aid = make_artifact(a, "rich", rich_tree)
    one = pack_artifact(a, aid, tmp_path / "one")
    two = pack_artifact(a, aid, tmp_path / "two")
    assert one == two
    assert sorted(os.listdir(tmp_path / "one")) == [archive_name(one)]  # no temp file left


def test_host_artifacts_are_not_packed(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    spec = {"kind": "host", "name": "cc", "version": "1", "programs": {}}
    aid, _ = install_artifact(store, spec, lambda p, fd, pfd: None, runtime_deps=[])
    with pytest.raises(UserError, match="captured on each machine"):
        pack_artifact(store, aid, tmp_path / "out")


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Store, dict[str, Any], Path]:
    a = Store(tmp_path / "a").ensure()
    aid = make_artifact(a, "rich", rich_tree)
    desc = pack_artifact(a, aid, tmp_path / "out")
    return a, desc, tmp_path / "out" / archive_name(desc)


def assert_untouched(store: Store, aid: str) -> None:
    assert not store.has_artifact(aid)
    assert not store.artifact_dir(aid).exists()


def test_a_flipped_byte_is_refused_and_nothing_is_written(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path]) -> None:
    _, desc, archive = packed
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    b = Store(tmp_path / "b").ensure()
    with pytest.raises(ArchiveRefused, match="hash mismatch"):
        install_packed(b, desc, bad)
    assert_untouched(b, desc["id"])
    bad.write_bytes(bytes(data[:-1]))
    with pytest.raises(ArchiveRefused, match="hash mismatch: archive has"):
        install_packed(b, desc, bad)


@pytest.mark.parametrize("change", [
    {"id": "rich/1.0/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
    {"spec": "changed"},
    {"references": ["../../etc"]},
    {"archive_sha256": "../x"},
    {"store_root": "relative/root"},
    {"format": 99},
    {"compression": "xz"},
])
def test_a_malformed_description_is_refused(tmp_path: Path, change: dict[str, Any],
                                           packed: tuple[Store, dict[str, Any], Path]) -> None:
    _, desc, archive = packed
    if change == {"spec": "changed"}:
        change = {"spec": {**desc["spec"], "script": "other"}}
    b = Store(tmp_path / "b").ensure()
    with pytest.raises(ArchiveRefused):
        install_packed(b, {**desc, **change}, archive)
    assert_untouched(b, desc["id"])



@pytest.mark.parametrize(("field", "value"), [
    ("verbatim", []), ("verbatim", {"bin/tool": "not hex"}), ("verbatim", {"bin/tool": 7}),
    ("regular_files", -1), ("regular_files", "3"), ("regular_files", True)])
def test_a_malformed_verbatim_list_or_file_count_is_refused_with_one_line(
        tmp_path: Path, field: str, value: Any, packed: tuple[Store, dict[str, Any], Path]
        ) -> None:
    _, desc, archive = packed
    b = Store(tmp_path / "b").ensure()
    with pytest.raises(ArchiveRefused, match=f"description field '{field}' is malformed"):
        install_packed(b, {**desc, field: value}, archive)
    assert_untouched(b, desc["id"])


def big_tree(prefix: Path) -> None:
    """Files relocation leaves alone (one spanning several decompressed chunks) beside
    files that name the prefix (one only across the packer's 1 MiB reads)."""
    (prefix / "lib").mkdir()
    (prefix / "lib" / "big.so").write_bytes(os.urandom(3 << 20))
    (prefix / "lib" / "mid.so").write_bytes(os.urandom(20 << 10))
    (prefix / "lib" / "small.so").write_bytes(b"\x7fELF\0plain\0")
    (prefix / "share").mkdir()
    (prefix / "share" / "conf").write_text(f"root={prefix}\n")
    split = b"x" * ((1 << 20) - 10) + b" " + str(prefix).encode() + b"\n"  # across a read
    (prefix / "share" / "split.txt").write_bytes(split)


def test_files_without_the_root_travel_verbatim_with_their_recorded_digests(
        tmp_path: Path) -> None:
    a = Store(tmp_path / "store-a-long").ensure()
    aid = make_artifact(a, "big", big_tree)
    desc = pack_artifact(a, aid, tmp_path / "out")
    src = a.artifact_dir(aid)
    assert desc["verbatim"] == {  # not the two naming the root, nor one under 16 KiB
        rel: hashlib.sha256((src / rel).read_bytes()).hexdigest()
        for rel in ("lib/big.so", "lib/mid.so")}
    assert desc["regular_files"] == 6  # and .hdenv/build.log
    b = Store(tmp_path / "b").ensure()  # a shorter root: the two are rewritten
    assert install_packed(b, desc, tmp_path / "out" / archive_name(desc)) is True
    dst = b.artifact_dir(aid)
    assert (dst / "lib" / "big.so").read_bytes() == (src / "lib" / "big.so").read_bytes()
    assert (dst / "share" / "conf").read_text() == f"root={dst}\n"
    assert (dst / "share" / "split.txt").read_bytes().endswith(str(dst).encode() + b"\n")
    assert verify_artifact(b, aid) == []


def test_only_the_biggest_files_are_listed_past_verbatim_max(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = Store(tmp_path / "store-a-long").ensure()
    aid = make_artifact(a, "big", big_tree)
    monkeypatch.setattr(pack, "VERBATIM_MAX", 1)
    desc = pack_artifact(a, aid, tmp_path / "out")
    assert list(desc["verbatim"]) == ["lib/big.so"]
    b = Store(tmp_path / "b").ensure()
    install_packed(b, desc, tmp_path / "out" / archive_name(desc))
    assert verify_artifact(b, aid) == []


def test_a_wrong_verbatim_digest_is_recorded_as_signed_and_verify_finds_it(
        tmp_path: Path) -> None:
    """What a signer says of a file is what the manifest records: the archive's hash pins
    the bytes, and `verify` shows where the two disagree (a packer's bug, a file changed
    in the packing store after it was built)."""
    a = Store(tmp_path / "store-a-long").ensure()
    aid = make_artifact(a, "big", big_tree)
    desc = pack_artifact(a, aid, tmp_path / "out")
    desc["verbatim"]["lib/mid.so"] = "0" * 64
    b = Store(tmp_path / "b").ensure()
    install_packed(b, desc, tmp_path / "out" / archive_name(desc))
    problems = verify_artifact(b, aid)
    assert len(problems) == 1 and "lib/mid.so" in problems[0], problems


def test_a_description_without_a_verbatim_list_gets_every_file_hashed(tmp_path: Path
                                                                      ) -> None:
    """As an older hdenv packed them, and as container images are described."""
    a = Store(tmp_path / "store-a-long").ensure()
    aid = make_artifact(a, "big", big_tree)
    desc = pack_artifact(a, aid, tmp_path / "out")
    del desc["verbatim"]
    b = Store(tmp_path / "b").ensure()
    install_packed(b, desc, tmp_path / "out" / archive_name(desc))
    assert verify_artifact(b, aid) == []
    assert manifest_of(b.artifact_dir(aid)) == json.loads(
        (b.artifact_dir(aid) / ".hdenv" / "manifest.json").read_text())


def test_a_missing_reference_is_refused(tmp_path: Path) -> None:
    a = Store(tmp_path / "a").ensure()
    dep = make_artifact(a, "dep", lambda p: (p / "f").write_text("x"))
    top = make_artifact(a, "top", lambda p: (p / "g").write_text("y"), deps=[dep])
    out = tmp_path / "out"
    dep_desc, top_desc = pack_artifact(a, dep, out), pack_artifact(a, top, out)
    assert top_desc["references"] == [dep]
    b = Store(tmp_path / "b").ensure()
    with pytest.raises(ArchiveRefused, match=f"needs {dep}"):
        install_packed(b, top_desc, out / archive_name(top_desc))
    install_packed(b, dep_desc, out / archive_name(dep_desc))
    install_packed(b, top_desc, out / archive_name(top_desc))
    assert b.artifact_meta(top)["runtime_deps"] == [dep]


def hostile(tmp_path: Path, base: dict[str, Any],
            members: list[tuple[tarfile.TarInfo, bytes]]) -> tuple[dict[str, Any], Path]:
    """A validly hashed archive (a trusted signer gone bad) with the given members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    blob = zstandard.ZstdCompressor().compress(buf.getvalue())
    path = tmp_path / "hostile.tar.zst"
    path.write_bytes(blob)
    return ({**base, "archive_sha256": hashlib.sha256(blob).hexdigest(),
             "archive_size": len(blob)}, path)


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


@pytest.mark.parametrize("members,why", [
    ([(member("../escape"), b"x")], "not a plain relative path"),
    ([(member("/etc/evil"), b"x")], "not a plain relative path"),
    ([(member("a/../../x"), b"x")], "not a plain relative path"),
    ([(member("link", tarfile.SYMTYPE, "/tmp"), b""), (member("link/evil"), b"x")],
     "goes through a file or link"),
    ([(member("f"), b"x"), (member("f/g"), b"y")], "goes through a file or link"),
    ([(member("f"), b"x"), (member("f"), b"y")], "appears twice"),
    ([(member("f"), b"x"), (member("h", tarfile.LNKTYPE, "f"), b"")], "hardlink"),
    ([(member("dev", tarfile.CHRTYPE), b"")], "hardlink, device, fifo or sparse file"),
    ([(member("holes", tarfile.GNUTYPE_SPARSE), b"x")], "hardlink, device, fifo or sparse file"),
    ([(member(".hdenv/artifact.json"), b"{}")], "metadata the store writes"),
    ([(member("f"), b"x"), (member("f", tarfile.SYMTYPE, "/etc/passwd"), b"")], "appears twice"),
])
def test_hostile_archives_are_refused_and_leave_nothing(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path],
        members: list[tuple[tarfile.TarInfo, bytes]], why: str) -> None:
    _, desc, _ = packed
    bad_desc, path = hostile(tmp_path, desc, members)
    b = Store(tmp_path / "b").ensure()
    with pytest.raises(ArchiveRefused, match=why):
        install_packed(b, bad_desc, path)
    assert_untouched(b, desc["id"])
    assert not (tmp_path / "escape").exists() and not os.path.lexists("/etc/evil")


def test_an_absolute_symlink_is_created_but_never_written_through(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path]) -> None:
    _, desc, _ = packed
    victim = tmp_path / "victim"
    victim.mkdir()
    bad_desc, path = hostile(tmp_path, desc, [
        (member("out", tarfile.SYMTYPE, str(victim)), b""),
        (member("ok"), b"fine"),
    ])
    b = Store(tmp_path / "b").ensure()
    assert install_packed(b, bad_desc, path)
    assert os.readlink(b.artifact_dir(desc["id"]) / "out") == str(victim)
    assert os.listdir(victim) == []


KILL_SCRIPT = """
import sys
from pathlib import Path
import json
from hdenv.exchange.pack import install_packed
from hdenv.store.layout import Store
install_packed(Store(Path(sys.argv[1])), json.loads(Path(sys.argv[2]).read_text()),
               Path(sys.argv[3]))
"""


def test_a_killed_install_leaves_nothing_and_the_next_one_succeeds(tmp_path: Path) -> None:
    a = Store(tmp_path / "a").ensure()

    def big(prefix: Path) -> None:
        for i in range(40):  # incompressible, so extraction takes a while
            (prefix / f"blob{i}").write_bytes(os.urandom(2 << 20))

    aid = make_artifact(a, "big", big)
    desc = pack_artifact(a, aid, tmp_path / "out")
    (tmp_path / "desc.json").write_text(json.dumps(desc))
    b = Store(tmp_path / "b").ensure()
    prefix = b.artifact_dir(aid)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(b.root),
                             str(tmp_path / "desc.json"),
                             str(tmp_path / "out" / archive_name(desc))])
    deadline = time.monotonic() + 60
    while not (prefix / "blob3").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert prefix.exists(), "the install finished before it could be killed"
    assert not b.has_artifact(aid)
    assert install_packed(b, desc, tmp_path / "out" / archive_name(desc)) is True
    assert verify_artifact(b, aid) == []
    assert spec_hash(b.read_spec(aid.split("/")[2])) == aid.split("/")[2]


HOLD_GUARD = """
import os, sys
from hdenv.store.fsutil import lock_fd
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o664)
lock_fd(fd)  # as the guard a build's processes inherit is locked
print("held", flush=True)
sys.stdin.read()
"""


def test_an_install_waits_for_what_a_killed_build_left_running(tmp_path: Path) -> None:
    """An install from a cache takes no build guard of its own (it leaves no process
    behind), but a killed build's orphans still hold theirs and may still write in the
    leftover: the install waits for them before it clears it, as a build would."""
    a = Store(tmp_path / "a").ensure()
    aid = make_artifact(a, "tool", lambda prefix: (prefix / "f").write_text("made\n"))
    desc = pack_artifact(a, aid, tmp_path / "out")
    b = Store(tmp_path / "b").ensure()
    leftover = b.own_artifact_dir(aid)
    leftover.mkdir(parents=True)
    (leftover / "half").write_text("a killed build's\n")
    guard = b.lock_path(f"{aid.rsplit('/', 1)[1]}.build")
    orphan = subprocess.Popen([sys.executable, "-c", HOLD_GUARD, str(guard)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    waited = threading.Event()
    done: list[bool] = []
    try:
        assert orphan.stdout is not None and orphan.stdout.readline() == "held\n"
        worker = threading.Thread(target=lambda: done.append(install_packed(
            b, desc, tmp_path / "out" / archive_name(desc), on_wait=waited.set)))
        worker.start()
        assert waited.wait(30)
        time.sleep(0.3)
        assert not done and (leftover / "half").exists()  # left alone while it is held
    finally:
        assert orphan.stdin is not None
        orphan.stdin.close()
        orphan.wait()
    worker.join(60)
    assert done == [True]
    assert not (leftover / "half").exists() and (leftover / "f").read_text() == "made\n"
    assert verify_artifact(b, aid) == []


def test_an_install_from_a_cache_makes_no_build_guard(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is for a build's processes; an extraction makes none that outlive it,
    and a 200-artifact pull paid a file made and unlinked for each (on a parallel file
    system, two round trips to the metadata server)."""
    a = Store(tmp_path / "a").ensure()
    aid = make_artifact(a, "tool", lambda prefix: (prefix / "f").write_text("made\n"))
    desc = pack_artifact(a, aid, tmp_path / "out")
    b = Store(tmp_path / "b").ensure()
    locks_seen: list[str] = []  # what locks/ holds while the archive is extracted

    def install_watched(store: Store, spec: dict[str, Any], populate: Any,
                        **kwargs: Any) -> Any:
        def watched(prefix: Path, guard_fd: int, prefix_fd: int) -> Any:
            locks_seen.extend(os.listdir(b.locks))
            return populate(prefix, guard_fd, prefix_fd)
        return install_artifact(store, spec, watched, **kwargs)

    monkeypatch.setattr(pack, "install_artifact", install_watched)
    assert install_packed(b, desc, tmp_path / "out" / archive_name(desc)) is True
    hash_ = aid.rsplit("/", 1)[1]
    assert f"{hash_}.lock" in locks_seen and f"{hash_}.build.lock" not in locks_seen, \
        locks_seen


def test_no_directory_is_the_groups_to_write_while_an_archive_is_extracted(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished artifact's directories in a group store are group-writable
    (sharing.read_only_mode), so its archive says 0775. Extracted with those bits and the
    group's umask, a member (who may search the half-made artifact) could rename a
    directory made a moment ago and put a link in its place for the next file to be
    written through. While it is extracted no directory lets the group write; it gets
    its group bits when it is made read-only (issue 21)."""
    _, desc, _ = packed
    dirs = [member("lib", tarfile.DIRTYPE), member("lib/sub", tarfile.DIRTYPE)]
    for d in dirs:
        d.mode = 0o775
    bad_desc, path = hostile(tmp_path, desc, [(dirs[0], b""), (dirs[1], b""),
                                              (member("lib/sub/f"), b"x")])
    from hdenv.exchange import relocate

    seen: list[int] = []
    real = relocate.Relocator.after_write

    b = Store(tmp_path / "b").ensure()
    made = b.own_artifact_dir(bad_desc["id"])

    def look(self: relocate.Relocator, rel: str, where: Path) -> None:
        if rel == "lib/sub/f":  # the file is written: its directories are as made
            seen.extend(stat.S_IMODE(os.stat(p).st_mode) for p in (made / "lib", made / "lib/sub"))
        real(self, rel, where)

    monkeypatch.setattr(relocate.Relocator, "after_write", look)
    old = os.umask(0o002)  # a group store's (sharing.adopt)
    try:
        assert install_packed(b, bad_desc, path)
    finally:
        os.umask(old)
    assert seen and not any(mode & 0o022 for mode in seen), [oct(m) for m in seen]


def test_an_archive_is_never_extracted_through_an_exchanged_version_dir(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In a group store a member may rename `artifacts/NAME/VERSION` (the group's to rename
    in) while an archive is extracted and put a link in its place, to a directory laid out
    as the artifact (HASH/bin) where the victim's next files would land. Extraction works
    through the artifact directory's descriptor: the files go where they belong, nothing
    reaches the link's target, and the artifact is not registered (issue 21). The attack
    is made at the first file written, so it always wins the race it would have to win."""
    _, desc, archive = packed
    b = Store(tmp_path / "b").ensure()
    name, version, hash_ = desc["id"].split("/")
    decoy = tmp_path / "victims-dir"
    (decoy / hash_ / "bin").mkdir(parents=True)
    (decoy / hash_ / "share").mkdir()
    from hdenv.exchange import relocate

    real = relocate.Relocator.after_write
    attacked: list[Path] = []

    def attack(self: relocate.Relocator, rel: str, where: Path) -> None:
        if not attacked:
            version_dir = b.artifacts / name / version
            aside = version_dir.with_name(version + ".aside")
            version_dir.rename(aside)
            version_dir.symlink_to(decoy)
            attacked.append(aside)
        real(self, rel, where)

    monkeypatch.setattr(relocate.Relocator, "after_write", attack)
    with pytest.raises(StoreError, match="was replaced while it was being built"):
        install_packed(b, desc, archive)
    assert attacked
    assert [p for p in decoy.rglob("*") if not p.is_dir()] == []  # nothing written there
    assert not (attacked[0] / hash_).exists()  # the half-made copy was removed, where it was
    assert not b.has_artifact(desc["id"])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_an_extraction_records_what_a_walk_of_the_installed_tree_finds(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path], umask: int) -> None:
    """The extraction writes each file read-only and hashes it as it goes (no second walk):
    its manifest and modes must be exactly what making the tree read-only and walking it
    gives, setuid bits, odd modes, the umask's cuts and implicit directories included."""
    _, desc, _ = packed
    odd = [(member("x/y", tarfile.DIRTYPE), b""), (member("x/y/run"), b"#!/bin/sh\n"),
           (member("x/y/secret"), b"s"), (member("x/y/suid"), b"u"),
           (member("deep/er/file"), b"implicit parents"),  # no directory members
           (member("x/y/link", tarfile.SYMTYPE, "run"), b""),
           (member(".hdenv", tarfile.DIRTYPE), b""), (member(".hdenv/build.log"), b"log")]
    odd[0][0].mode = 0o700
    odd[1][0].mode = 0o775
    odd[2][0].mode = 0o600
    odd[3][0].mode = 0o4755
    bad_desc, path = hostile(tmp_path, desc, odd)
    b = Store(tmp_path / "b").ensure()
    old = os.umask(umask)
    try:
        assert install_packed(b, bad_desc, path)
    finally:
        os.umask(old)
    aid = bad_desc["id"]
    dst = b.artifact_dir(aid)
    recorded = json.loads((dst / ".hdenv" / "manifest.json").read_text())
    assert recorded == manifest_of(dst)
    assert verify_artifact(b, aid) == []
    expect = {"x/y/run": 0o555 & ~umask | 0o500 & 0o555, "x/y/secret": 0o400,
              "x/y/suid": 0o555 & ~umask | 0o500, "x/y": 0o500, "deep/er": 0o555 & ~umask | 0o500}
    for rel, mode in expect.items():
        assert stat.S_IMODE(os.lstat(dst / rel).st_mode) == mode, (rel, oct(mode))
    assert set(recorded) == {"x", "x/y", "x/y/run", "x/y/secret", "x/y/suid", "x/y/link",
                             "deep", "deep/er", "deep/er/file"}
    assert recorded["x/y/link"] == "link:run"
    assert (dst / ".hdenv" / "build.log").read_text() == "log"


@pytest.mark.parametrize("chunk, ahead", [(1 << 20, 32 << 20), (100, 300)])
def test_an_archive_installs_from_memory_or_a_file_through_the_inflating_window(
        tmp_path: Path, packed: tuple[Store, dict[str, Any], Path],
        monkeypatch: pytest.MonkeyPatch, chunk: int, ahead: int) -> None:
    """A downloaded archive's bytes or its file, decompressed in a thread a window ahead
    of the reader (inflate.py; a window of 300 bytes in chunks of 100 makes every read
    span chunks and every step drop some): the same artifact either way, and a corrupt
    one refused either way."""
    from hdenv.exchange import inflate

    a, desc, archive = packed
    monkeypatch.setattr(inflate, "CHUNK", chunk)
    monkeypatch.setattr(inflate, "AHEAD", ahead)
    ways: list[tuple[str, Path | bytes]] = [("b", archive.read_bytes()), ("d", archive)]
    for root, given in ways:
        b = Store(tmp_path / root).ensure()
        assert install_packed(b, desc, given) is True
        assert verify_artifact(b, desc["id"]) == []
        assert manifest_of(b.artifact_dir(desc["id"])).keys() == \
            manifest_of(a.artifact_dir(desc["id"])).keys()
    raw = zstandard.ZstdDecompressor().decompress(archive.read_bytes(),
                                                 max_output_size=1 << 24)
    cut = zstandard.ZstdCompressor().compress(raw[: len(raw) // 2])  # a tar cut in half
    bad = {**desc, "archive_sha256": hashlib.sha256(cut).hexdigest(), "archive_size": len(cut)}
    c = Store(tmp_path / "c").ensure()
    with pytest.raises(ArchiveRefused, match="corrupt archive"):
        install_packed(c, bad, cut)
    assert_untouched(c, desc["id"])

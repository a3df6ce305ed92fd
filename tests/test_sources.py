"""The source store against real files, real mirrors, a real HTTP server and real git."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import SHARED_SOURCES, Runner, require, require_tool

from hdenv.errors import BuildError, UserError
from hdenv.store import tmpdirs
from hdenv.store.layout import Store
from hdenv.store.sources import SourceDecl, SourceStore, parse_key


def need_shared() -> Path:
    require((SHARED_SOURCES / "SHA256SUMS").is_file(), f"{SHARED_SOURCES} is not present")
    return SHARED_SOURCES


def need_git() -> None:
    require_tool("git")


def make_tgz(path: Path, files: dict[str, bytes]) -> tuple[Path, str]:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tf.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sstore(tmp_path: Path) -> SourceStore:
    return SourceStore(Store(tmp_path / "store").ensure())


def stored_files(ss: SourceStore) -> list[str]:
    d = ss.store.src / "sha256"
    return sorted(os.listdir(d)) if d.is_dir() else []


def leftovers(ss: SourceStore) -> list[str]:
    return [p.name for p in tmpdirs.leftovers(ss.store)]


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    return make_tgz(tmp_path / "pkg-1.0.tar.gz",
                    {"pkg-1.0/configure.sh": b"#!/bin/sh\n", "pkg-1.0/a.c": b"int a;\n"})


# -- SourceDecl -------------------------------------------------------------

H = "a" * 64
C = "b" * 40


def test_decl_valid_forms() -> None:
    d = SourceDecl.from_toml({"url": "https://x/y.tar.gz", "sha256": H.upper(), "strip": 1},
                             file="s.toml", line=3)
    assert d.key() == f"sha256:{H}" and d.strip == 1
    assert SourceDecl.from_toml({"git": "https://x/r.git", "commit": C}, file="s", line=1).key() \
        == f"git:{C}"
    d = SourceDecl.from_toml({"path": "src/app", "target": "app"}, file="s", line=1)
    assert d.key() is None and d.target == "app"
    assert SourceDecl.from_toml({"sha256": H}, file="s", line=1).key() == f"sha256:{H}"
    kept = SourceDecl.from_toml({"url": "https://x/p-1-py3-none-any.whl?dl=1", "sha256": H,
                                 "unpack": False}, file="s", line=1)
    assert not kept.unpack and kept.kept_name() == "p-1-py3-none-any.whl"
    assert SourceDecl.from_toml({"sha256": H, "unpack": False, "filename": "w.whl"}, file="s",
                                line=1).kept_name() == "w.whl"


@pytest.mark.parametrize("table,needle", [
    ({"url": "u", "sha256": H, "md5": "x"}, "unknown key(s) md5"),
    ({"url": "u", "sha256": "abc"}, "sha256 must be 64 hex"),
    ({"url": "u"}, "url needs sha256"),
    ({"git": "g", "commit": "abc"}, "40-hex-digit"),
    ({"git": "g"}, "git needs commit"),
    ({"commit": C}, "commit is only valid together with git"),
    ({"url": "u", "sha256": H, "strip": -1}, "strip must be"),
    ({"url": "u", "sha256": H, "strip": True}, "strip must be"),
    ({"path": "p", "target": "../up"}, "target must be a relative path"),
    ({"path": "p", "target": "/abs"}, "target must be a relative path"),
    ({"path": "p", "url": "u", "sha256": H}, "only one of"),
    ({"path": "p", "sha256": H}, "sha256 does not go with path"),
    ({"url": "u", "sha256": H, "filename": "a/b"}, "filename must be"),
    ({}, "needs url + sha256"),
    ({"url": "u", "sha256": H, "unpack": "no"}, "unpack must be true or false"),
    ({"git": "g", "commit": C, "unpack": False}, "does not go with git"),
    ({"url": "u", "sha256": H, "unpack": False, "strip": 1}, "strip does not go with unpack"),
    ({"sha256": H, "unpack": False}, "needs filename"),
])
def test_decl_errors_are_one_line_with_file_and_line(table: dict, needle: str) -> None:
    with pytest.raises(UserError) as exc:
        SourceDecl.from_toml(table, file="stack.toml", line=12)
    msg = str(exc.value)
    assert msg.startswith("stack.toml:12: ") and needle in msg and "\n" not in msg


def test_parse_key() -> None:
    assert parse_key(f"sha256:{H}") == ("sha256", H)
    assert parse_key(f"git:{C}") == ("git", C)
    for bad in ("sha256:abc", f"md5:{H}", H, f"git:{H}"):
        with pytest.raises(UserError):
            parse_key(bad)


# -- fetch, ensure and mirrors ----------------------------------------------

def test_fetch_real_file_gives_key_from_sha256sums(sstore: SourceStore) -> None:
    shared = need_shared()
    sums = {name: digest for digest, name in
            (line.split() for line in (shared / "SHA256SUMS").read_text().splitlines())}
    key = sstore.fetch(str(shared / "hello-2.10.tar.gz"))
    assert key == f"sha256:{sums['hello-2.10.tar.gz']}"
    assert sstore.has(key) and sstore.name_of(key) == "hello-2.10.tar.gz"
    assert hashlib.sha256(sstore.path(key).read_bytes()).hexdigest() == sums["hello-2.10.tar.gz"]
    # file:// and an explicit matching hash give the same key.
    url = (shared / "six-1.16.0.tar.gz").as_uri()
    assert sstore.fetch(url, sums["six-1.16.0.tar.gz"]) == f"sha256:{sums['six-1.16.0.tar.gz']}"
    dest = sstore.store.root / "build"
    sstore.unpack(key, dest, strip=1)
    assert os.access(dest / "configure", os.X_OK)


def test_fetch_with_wrong_hash_stores_nothing(sstore: SourceStore, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    with pytest.raises(BuildError) as exc:
        sstore.fetch(str(path), "0" * 64)
    assert f"expected sha256:{'0' * 64}, got sha256:{hex_}" in str(exc.value)
    assert stored_files(sstore) == [] and leftovers(sstore) == []
    with pytest.raises(UserError, match="no such file"):
        sstore.fetch(str(path.parent / "missing.tar.gz"))


def test_ensure_from_own_store_needs_no_location(sstore: SourceStore, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    key = sstore.fetch(str(path))
    path.unlink()
    assert sstore.ensure(key, urls=["https://nowhere.invalid/x.tar.gz"]) == sstore.path(key)


def test_mirror_by_basename_is_used_before_the_url(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(path, mirror / "pkg-1.0.tar.gz")
    messages: list[str] = []
    ss = SourceStore(Store(tmp_path / "store"), [str(mirror)], log=messages.append)
    got = ss.ensure(f"sha256:{hex_}", urls=["http://nonexistent.invalid/dl/pkg-1.0.tar.gz"])
    assert got.read_bytes() == path.read_bytes()
    assert not any("nonexistent.invalid" in m for m in messages), messages
    assert ss.name_of(f"sha256:{hex_}") == "pkg-1.0.tar.gz"


def test_the_url_is_tried_when_no_mirror_has_the_file(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    ss = SourceStore(Store(tmp_path / "store"), [str(empty)])
    assert ss.ensure(f"sha256:{hex_}", urls=[path.as_uri()]).read_bytes() == path.read_bytes()


def test_mirror_by_sha256_path_as_file_url(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    mirror = tmp_path / "mirror"
    (mirror / "sha256").mkdir(parents=True)
    shutil.copy(path, mirror / "sha256" / hex_)
    ss = SourceStore(Store(tmp_path / "store"), [mirror.as_uri()])
    assert ss.ensure(f"sha256:{hex_}", urls=["file:///does/not/exist/other-name.tgz"]).is_file()


def test_wrong_bytes_in_mirror_store_nothing_and_next_mirror_wins(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    (bad / "pkg-1.0.tar.gz").write_bytes(b"tampered")
    bad_hex = hashlib.sha256(b"tampered").hexdigest()
    ss = SourceStore(Store(tmp_path / "store"), [str(bad)])
    with pytest.raises(BuildError) as exc:
        ss.ensure(f"sha256:{hex_}", name="pkg-1.0.tar.gz")
    msg = str(exc.value)
    assert f"expected sha256:{hex_}, got sha256:{bad_hex}" in msg
    assert str(bad / "pkg-1.0.tar.gz") in msg and str(bad / "sha256" / hex_) in msg
    assert stored_files(ss) == [] and leftovers(ss) == []
    shutil.copy(path, good / "pkg-1.0.tar.gz")
    ss2 = SourceStore(ss.store, [str(bad), str(good)])
    assert ss2.ensure(f"sha256:{hex_}", name="pkg-1.0.tar.gz").read_bytes() == path.read_bytes()
    assert stored_files(ss2) == [hex_]


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []  # every path asked for, across servers of one test run

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def send_head(self) -> io.BytesIO | BinaryIO | None:
        _Handler.requests.append(self.path)
        return super().send_head()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args: object, **kw: object) -> _Handler:
        return _Handler(*args, directory=str(root), **kw)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_url_404_then_http_mirror(tmp_path: Path, archive: tuple[Path, str], http_root: tuple[Path, str]) -> None:
    path, hex_ = archive
    root, base = http_root
    (root / "mirror" / "sha256").mkdir(parents=True)
    shutil.copy(path, root / "mirror" / "sha256" / hex_)
    ss = SourceStore(Store(tmp_path / "store"), [f"{base}/mirror/"])
    got = ss.ensure(f"sha256:{hex_}", urls=[f"{base}/missing/pkg-1.0.tar.gz"])
    assert got.read_bytes() == path.read_bytes()
    # Straight from the URL too, in a fresh store.
    shutil.copy(path, root / "pkg-1.0.tar.gz")
    ss2 = SourceStore(Store(tmp_path / "store2"))
    assert ss2.ensure(f"sha256:{hex_}", urls=[f"{base}/pkg-1.0.tar.gz"]).is_file()


def test_nothing_works_lists_every_place(tmp_path: Path) -> None:
    ss = SourceStore(Store(tmp_path / "store"), [str(tmp_path / "m1"), "http://m2.invalid/pub"])
    with pytest.raises(BuildError) as exc:
        ss.ensure(f"sha256:{H}", urls=["http://a.invalid/z-1.tar.gz"])
    msg = str(exc.value)
    for place in ("http://a.invalid/z-1.tar.gz", str(tmp_path / "m1" / "z-1.tar.gz"),
                  str(tmp_path / "m1" / "sha256" / H), "http://m2.invalid/pub/z-1.tar.gz",
                  f"http://m2.invalid/pub/sha256/{H}"):
        assert place in msg
    assert exc.value.exit_code == 1


def test_write_mirror_then_serve_from_it(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, hex_ = archive
    ss = SourceStore(Store(tmp_path / "store"))
    key = ss.fetch(str(path))
    mirror = tmp_path / "site-mirror"
    assert ss.write_mirror(mirror) == 1
    assert (mirror / "pkg-1.0.tar.gz").read_bytes() == path.read_bytes()
    assert (mirror / "sha256" / hex_).read_bytes() == path.read_bytes()
    assert ss.write_mirror(mirror) == 1  # idempotent
    fresh = SourceStore(Store(tmp_path / "fresh"), [str(mirror)])
    assert fresh.ensure(key).is_file()


# -- local paths --------------------------------------------------------------

def make_app(root: Path) -> Path:
    app = root / "src" / "app"
    (app / "lib").mkdir(parents=True)
    (app / "main.c").write_text("int main(void){return 0;}\n")
    (app / "lib" / "util.c").write_text("int util;\n")
    (app / "build.sh").write_text("#!/bin/sh\nmake\n")
    (app / "build.sh").chmod(0o755)
    (app / "README").symlink_to("main.c")
    (app / ".git").mkdir()
    (app / ".git" / "index").write_text("changes all the time")
    return app


def test_local_dir_key_is_deterministic_and_content_sensitive(tmp_path: Path) -> None:
    app = make_app(tmp_path / "proj")
    ss = SourceStore(Store(tmp_path / "store"))
    decl = SourceDecl(path="src/app")
    key = ss.key_for(decl, tmp_path / "proj")
    assert ss.has(key)
    # mtimes, other permission bits and VCS metadata do not count
    os.utime(app / "main.c", (1, 1))
    (app / "lib" / "util.c").chmod(0o600)
    (app / ".git" / "index").write_text("different")
    assert ss.key_for(decl, tmp_path / "proj") == key
    # a copy elsewhere, in another store, gives the same key
    other = make_app(tmp_path / "elsewhere")
    assert SourceStore(Store(tmp_path / "store2")).key_for(decl, other.parents[1]) == key
    # content, exec bits, names and symlink targets do count
    (app / "main.c").write_text("int main(void){return 1;}\n")
    k2 = ss.key_for(decl, tmp_path / "proj")
    assert k2 != key
    (app / "build.sh").chmod(0o644)
    k3 = ss.key_for(decl, tmp_path / "proj")
    assert k3 != k2
    (app / "README").unlink()
    (app / "README").symlink_to("lib/util.c")
    assert ss.key_for(decl, tmp_path / "proj") != k3


def test_local_dir_unpacks_from_store_alone(tmp_path: Path) -> None:
    app = make_app(tmp_path / "proj")
    ss = SourceStore(Store(tmp_path / "store"))
    key = ss.key_for(SourceDecl(path="src/app"), tmp_path / "proj")
    shutil.rmtree(tmp_path / "proj")
    dest = tmp_path / "build"
    ss.unpack(key, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["README", "build.sh", "lib", "main.c"]
    assert os.access(dest / "build.sh", os.X_OK)
    assert os.readlink(dest / "README") == "main.c"
    assert not app.exists()


def test_local_file_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "fix.patch").write_bytes(b"--- a\n")
    ss = SourceStore(Store(tmp_path / "store"))
    key = ss.key_for(SourceDecl(path="fix.patch"), tmp_path)
    assert key == "sha256:" + hashlib.sha256(b"--- a\n").hexdigest()
    ss.unpack(key, tmp_path / "build")
    assert (tmp_path / "build" / "fix.patch").read_bytes() == b"--- a\n"
    with pytest.raises(UserError, match="does not exist"):
        ss.key_for(SourceDecl(path="nope"), tmp_path)


def test_local_dir_with_escaping_symlink_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(UserError, match="leaves the tree"):
        SourceStore(Store(tmp_path / "store")).key_for(SourceDecl(path="app"), tmp_path)


# -- git ------------------------------------------------------------------------

def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_git_source_from_local_repo(tmp_path: Path) -> None:
    need_git()
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "configure").write_text("#!/bin/sh\necho v1\n")
    (repo / "configure").chmod(0o755)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "v1")
    c1 = git(repo, "rev-parse", "HEAD")
    (repo / "configure").write_text("#!/bin/sh\necho v2\n")
    git(repo, "commit", "-qam", "v2")
    c2 = git(repo, "rev-parse", "HEAD")

    ss = SourceStore(Store(tmp_path / "store"))
    key1 = ss.key_for(SourceDecl(git=str(repo), commit=c1), tmp_path)
    assert key1 == f"git:{c1}" and not ss.has(key1)
    with pytest.raises(BuildError, match="no repository URL"):
        ss.ensure(key1)
    ss.ensure(key1, git_url=str(repo))
    assert ss.has(key1) and not ss.has(f"git:{'0' * 40}")
    ss.ensure(f"git:{c2}", git_url=repo.as_uri())
    shutil.rmtree(repo)  # from now on the cache alone must do
    ss.unpack(key1, tmp_path / "b1")
    ss.unpack(f"git:{c2}", tmp_path / "b2")
    assert (tmp_path / "b1" / "configure").read_text() == "#!/bin/sh\necho v1\n"
    assert (tmp_path / "b2" / "configure").read_text() == "#!/bin/sh\necho v2\n"
    assert os.access(tmp_path / "b1" / "configure", os.X_OK)
    assert ss.ensure(key1) == ss.path(key1)
    with pytest.raises(BuildError, match="not found|failed"):
        ss.ensure(f"git:{'1' * 40}", git_url=str(tmp_path / "gone"))
    with pytest.raises(UserError, match="looks like an option"):
        ss.ensure(f"git:{'1' * 40}", git_url="--upload-pack=touch /tmp/pwned")


def test_unpack_missing_source_is_build_error(sstore: SourceStore) -> None:
    with pytest.raises(BuildError, match="not in the store"):
        sstore.unpack(f"sha256:{H}", sstore.store.root / "x")


def test_kept_archive_is_copied_not_unpacked(tmp_path: Path, shared_sources: Path) -> None:
    ss = SourceStore(Store(tmp_path / "store"))
    wheel = shared_sources / "packaging-24.1-py3-none-any.whl"
    key = ss.fetch(str(wheel))
    ss.unpack(key, tmp_path / "build", filename=wheel.name, keep=True)
    assert [p.name for p in (tmp_path / "build").iterdir()] == [wheel.name]
    assert (tmp_path / "build" / wheel.name).read_bytes() == wheel.read_bytes()
    ss.unpack(key, tmp_path / "unzipped")  # the default still unpacks a zip
    assert (tmp_path / "unzipped" / "packaging" / "version.py").is_file()
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="is a directory: unpack = false"):
        ss.key_for(SourceDecl(path="d", unpack=False), tmp_path)


def test_a_web_server_sees_no_request_when_a_mirror_holds_the_file(
        tmp_path: Path, archive: tuple[Path, str], http_root: tuple[Path, str]) -> None:
    """An offline site's mirror is used first: the upstream URL is never contacted."""
    path, hex_ = archive
    root, base = http_root
    shutil.copy(path, root / "pkg-1.0.tar.gz")
    mirror = tmp_path / "site-mirror"
    (mirror / "sha256").mkdir(parents=True)
    shutil.copy(path, mirror / "sha256" / hex_)
    _Handler.requests.clear()
    ss = SourceStore(Store(tmp_path / "store"), [f"{base}/no-such-mirror/", str(mirror)])
    assert ss.ensure(f"sha256:{hex_}", urls=[f"{base}/pkg-1.0.tar.gz"]).is_file()
    assert _Handler.requests == []


WRONG_PATCH = """
[packages.first]
version = "1"
script = 'mkdir -p "$PREFIX" && touch "$PREFIX/built"'

[packages.second]
version = "1"
deps = ["first"]
patches = [{{ url = "{url}", sha256 = "{wrong}" }}]
script = 'mkdir -p "$PREFIX"'

[packages.third]
version = "1"
sources = [{{ url = "{url}", sha256 = "{wrong}", unpack = false }}]
script = 'mkdir -p "$PREFIX"'
"""


def test_a_patch_with_a_wrong_hash_is_refused_before_any_build_starts(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    patch = tmp_path / "fix.patch"
    patch.write_text("--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+x\n")
    stack = tmp_path / "s.toml"
    stack.write_text(WRONG_PATCH.format(url=patch.as_uri(), wrong="0" * 64))
    proc = run_hdenv("build", str(stack))
    assert proc.returncode == 1, proc.stderr
    assert "hdenv: error: sources that could not be had (nothing was built):\n  second, third:" \
        " could not get sha256:" + "0" * 64 in proc.stderr, proc.stderr
    assert "hash mismatch" in proc.stderr
    assert "building first" not in proc.stderr  # not even the package that needs nothing
    assert run_hdenv("list", "artifacts", check=True).stdout.strip() == ""
    # --keep-going builds what does not need it
    going = run_hdenv("build", "--keep-going", str(stack))
    assert going.returncode == 1 and "built first" in going.stderr, going.stderr


def test_urllib_request_waits_for_the_first_download() -> None:
    """A build whose sources are all in the store (any no-op build) never downloads:
    importing the module must not pull in urllib.request, http.client and ssl (~25 ms
    of every build's start), which a download still finds when it needs them."""
    code = ("import sys; import hdenv.store.sources as s;"
            " print('urllib.request' in sys.modules, 'http.client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False"]

"""Binary caches end to end, through the real `hdenv` program.

Store A (a long root) builds upstream zlib 1.2.13 and libpng 1.6.39 from the
offline mirror plus a small program that links both and has its data
directory compiled in, and pushes the profile to a directory cache (served by
a real HTTP server on loopback) and to a real OCI registry (Debian's
docker-registry on loopback). Then store A is moved away, so nothing can
quietly use it, and empty stores under other roots build the same stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_SOURCES, require, require_tool
from servers import http_server, registry

from hdenv.exchange.relocate import PADDED_ROOT_LENGTH
from hdenv.exchange.signing import SecretKey, sign

pytestmark = pytest.mark.slow

STACK = """
[stack]
name = "pngapp"

[host.gcc]
programs = ["gcc", "cc", "as", "ld", "ar", "ranlib", "nm", "strip"]
family = "compiler"

[packages.zlib]
version = "1.2.13"
sources = [{{ url = "file://{src}/zlib-1.2.13.tar.bz2", sha256 = "71feb7947e3c00ef125f83b79a4e529bde31171e5babe48b391f06758d1ab0a1", strip = 1 }}]
build-deps = ["gcc"]
script = '''
./configure --prefix="$PREFIX"
make -j"$HDENV_JOBS"
make install
'''

[packages.libpng]
version = "1.6.39"
sources = [{{ url = "file://{src}/libpng-1.6.39.tar.gz", sha256 = "a00e9d2f2f664186e4202db9299397f851aea71b36a35e74910b8820e380d441", strip = 1 }}]
deps = ["zlib"]
build-deps = ["gcc"]
env = {{ CFLAGS = "-O2" }}  # no -g: debug info would name store A in binary strings
script = '''
./configure --prefix="$PREFIX" --disable-static
make -j"$HDENV_JOBS"
make install
'''

[packages.app]
version = "1.0"
sources = [{{ path = "app" }}]
deps = ["libpng", "zlib"]
build-deps = ["gcc"]
script = '''
mkdir -p "$PREFIX/bin" "$PREFIX/share/app"
cc -O2 -DDATADIR="\\"$PREFIX/share/app\\"" app.c -o "$PREFIX/bin/app" -lpng16 -lz
echo "message from app" > "$PREFIX/share/app/message"
printf '#!/bin/sh\\nexec %s/bin/app "$@"\\n' "$PREFIX" > "$PREFIX/bin/app-wrapper"
chmod +x "$PREFIX/bin/app-wrapper"
ln -s "$PREFIX/bin/app" "$PREFIX/bin/app-link"
ln -s "$HDENV_DEP_LIBPNG/include/png.h" "$PREFIX/share/app/png.h"
'''

[profiles.pngapp]
packages = ["app"]
"""

APP_C = r"""
#include <stdio.h>
#include <png.h>
#include <zlib.h>
int main(void) {
    char line[64] = "unreadable\n";
    FILE *f = fopen(DATADIR "/message", "r");
    if (f) { fgets(line, sizeof line, f); fclose(f); }
    printf("png %lu zlib %s data %s %s", (unsigned long)png_access_version_number(),
           zlibVersion(), DATADIR, line);
    return 0;
}
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class World:
    work: Path
    stack: Path
    keys: Path
    k1: str  # public keys, NAME:BASE64
    k2: str
    dir_cache: Path
    http_url: str
    oci_url: str
    a_root: Path
    ids: dict[str, str]  # package name -> artifact id
    hd: Run
    phash: str  # the pushed profile's hash

    def store(self, name: str) -> Path:
        return self.work / name

    def run(self, store: Path, *args: str, caches: list[str] | None = None,
            trusted: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {"HDENV_CACHES": " ".join(caches or []),
               "HDENV_TRUSTED_KEYS": " ".join(trusted or [])}
        return self.hd(*args, store=store, env=env)


def hdenv_runner(work: Path) -> Run:
    exe = str(Path(sys.executable).parent / "hdenv")
    (work / "config.toml").write_text("")

    def run(*args: str, store: Path, env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "HDENV_STORE": str(store), "HDENV_CONFIG": str(work / "config.toml"),
                "HDENV_JOBS": "2", "XDG_CONFIG_HOME": str(work / "xdg"), **(env or {})}
        for var in ("HDENV_MIRRORS", "HDENV_CACHES", "HDENV_TRUSTED_KEYS"):
            if not (env or {}).get(var):
                full.pop(var, None)
        proc = subprocess.run([exe, *args], env=full, capture_output=True, text=True,
                              timeout=1200)
        if check:
            assert proc.returncode == 0, f"hdenv {args}: {proc.stdout}\n{proc.stderr}"
        return proc

    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_tool("gcc")
    require(SHARED_SOURCES.is_dir(), f"{SHARED_SOURCES} (offline source mirror) is absent")
    work = tmp_path_factory.mktemp("cache")
    hd = hdenv_runner(work)
    a_root = work / "store-A-built-under-a-rather-long-root"
    (work / "src" / "app").mkdir(parents=True)
    (work / "src" / "app" / "app.c").write_text(APP_C)
    stack = work / "src" / "stack.toml"
    stack.write_text(STACK.format(src=SHARED_SOURCES))
    k1 = hd("cache", "keygen", "k1", store=a_root, check=True).stdout.strip()
    k2 = hd("cache", "keygen", "k2", store=a_root, check=True).stdout.strip()
    keys = work / "xdg" / "hdenv" / "keys"
    hd("build", str(stack), store=a_root, check=True)
    ids = {line.split()[0].split("/")[0]: line.split()[0]
           for line in hd("list", "artifacts", store=a_root, check=True).stdout.splitlines()}
    phash = hd("list", "profiles", store=a_root, check=True).stdout.split()[1]
    dir_cache = work / "dircache"
    with registry(work / "registry") as reg, \
            http_server(dir_cache.parent, work / "http.log") as http:
        oci_url = f"oci://{reg}/hdenv/test-cache"
        for url in (str(dir_cache), oci_url):
            hd("push", "pngapp", "--to", url, "--key", str(keys / "k1.secret"), store=a_root,
               check=True)
        moved = a_root.with_name(a_root.name + "-moved")
        a_root.rename(moved)  # programs from other stores must not reach into A
        yield World(work, stack, keys, k1, k2, dir_cache, f"{http}{dir_cache.name}/", oci_url,
                    a_root, ids, hd, phash)


def assert_relocated_and_running(world: World, store: Path, built: str) -> None:
    assert "0 built" in built, built
    ids = world.ids
    app = store / "artifacts" / Path(ids["app"])
    proc = subprocess.run([str(app / "bin" / "app-wrapper")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert words[:2] == ["png", "10639"] and words[3] == "1.2.13", proc.stdout
    assert words[6:] == ["message", "from", "app"], proc.stdout  # the data dir was relocated
    assert words[5].lstrip("/") == f"{app}/share/app".lstrip("/")  # slash-padded in place
    # every library resolves inside store B
    ldd = subprocess.run([require_tool("ldd"), str(app / "bin" / "app")], capture_output=True,
                         text=True, check=True).stdout
    for lib in ("libpng16.so.16", "libz.so.1"):
        line = next(x for x in ldd.splitlines() if lib in x)
        assert f"=> {store}/artifacts/" in line, ldd
    png = store / "artifacts" / Path(ids["libpng"])
    assert f"libdir='{png}/lib'" in (png / "lib" / "libpng16.la").read_text()
    assert f"prefix={png}" in (png / "lib" / "pkgconfig" / "libpng16.pc").read_text()
    assert str(png) in (png / "bin" / "libpng16-config").read_text()
    assert os.readlink(app / "bin" / "app-link") == f"{app}/bin/app"
    assert os.readlink(app / "share" / "app" / "png.h") == f"{png}/include/png.h"
    assert str(world.a_root) not in (app / "bin" / "app-wrapper").read_text()


@pytest.mark.parametrize("kind", ["http", "oci"])
def test_pull_into_a_shorter_root_runs_no_build(world: World, kind: str) -> None:
    url = world.http_url if kind == "http" else world.oci_url
    store = world.store(f"B{kind[0]}")
    assert len(str(store)) < len(str(world.a_root))
    proc = world.run(store, "build", str(world.stack), caches=[url], trusted=[world.k1])
    assert proc.returncode == 0, proc.stderr
    assert_relocated_and_running(world, store, proc.stderr)
    assert "3 fetched" in proc.stderr and f"fetched {world.ids['app']} from {url}" in proc.stderr
    verify = world.run(store, "verify")
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr
    meta = json.loads((store / "artifacts" / world.ids["app"] / ".hdenv" / "artifact.json")
                      .read_text())
    assert meta["installed_from"]["source"] == url
    assert str(world.a_root) not in json.dumps(meta)
    again = world.run(store, "build", str(world.stack), caches=[url], trusted=[world.k1])
    assert "0 built" in again.stderr and "fetched" not in again.stderr


def test_untrusted_key_builds_from_source(world: World) -> None:
    only_zlib = world.work / "zlib.toml"  # the same zlib spec, so the same id, built alone
    only_zlib.write_text(STACK.format(src=SHARED_SOURCES).split("[packages.libpng]")[0])
    store = world.store("Cu")
    proc = world.run(store, "build", str(only_zlib), caches=[str(world.dir_cache)],
                     trusted=[world.k2])
    assert proc.returncode == 0, proc.stderr
    assert (f"{world.ids['zlib']}: no usable cache copy ({world.dir_cache}: untrusted key:"
            f" signed by k1; trusted: k2); building from source") in proc.stderr
    assert "1 built" in proc.stderr and (store / "artifacts" / world.ids["zlib"]).is_dir()


def tampered_cache(world: World, name: str,
                   change: Callable[[Path, dict[str, Any]], dict[str, Any] | None],
                   tag: str = "") -> Path:
    """A copy of the directory cache where `change` edits the entry of package `name`.

    Its profile envelopes are as an older hdenv pushed them, without the descriptions
    they now carry (signed again by k1, the pusher), so `reproduce --from` reads the
    edited entry itself; the carried copies have tests of their own below."""
    copy = world.work / f"cache-{name}-{change.__name__}{tag}"
    shutil.copytree(world.dir_cache, copy)
    for doc_path in (copy / "profiles").glob("*.json"):
        doc = json.loads(doc_path.read_text())
        if "descriptions" in doc:
            os.chmod(doc_path, 0o644)
            plain = {k: v for k, v in doc.items() if k not in ("descriptions", "signatures")}
            doc_path.write_text(json.dumps(sign(plain, SecretKey.load(world.keys / "k1.secret"))))
    desc_path = copy / "artifacts" / f"{world.ids[name].split('/')[2]}.json"
    os.chmod(desc_path, 0o644)
    new = change(copy, json.loads(desc_path.read_text()))
    if new is not None:
        desc_path.write_text(json.dumps(new))
    return copy


def flip_a_byte(cache: Path, desc: dict[str, Any]) -> None:
    archive = cache / "archives" / f"{desc['archive_sha256']}.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x40
    os.chmod(archive, 0o644)
    archive.write_bytes(bytes(data))


def resign_with_k2(cache: Path, desc: dict[str, Any]) -> dict[str, Any]:
    keys = cache.parent / "xdg" / "hdenv" / "keys"
    desc = {k: v for k, v in desc.items() if k != "signatures"}
    return sign(desc, SecretKey.load(keys / "k2.secret"))


def forge_as_k1(cache: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """An attacker's own key, named k1, over a description that claims another root."""
    desc = {k: v for k, v in desc.items() if k != "signatures"}
    return sign({**desc, "store_root": "/elsewhere"}, SecretKey.generate("k1"))


def keep_signature_change_root(cache: Path, desc: dict[str, Any]) -> dict[str, Any]:
    return {**desc, "store_root": "/elsewhere"}


@pytest.mark.parametrize("change,reason", [
    (flip_a_byte, "hash mismatch: archive is sha256:"),
    (resign_with_k2, "untrusted key: signed by k2; trusted: k1"),
    (forge_as_k1, "bad signature by k1"),
    (keep_signature_change_root, "bad signature by k1"),
])
def test_a_tampered_entry_is_refused_and_built_from_source(
        world: World, change: Callable[[Path, dict[str, Any]], dict[str, Any] | None],
        reason: str) -> None:
    cache = tampered_cache(world, "app", change)
    store = world.store(f"T{change.__name__[:4]}")
    proc = world.run(store, "build", str(world.stack), caches=[str(cache)], trusted=[world.k1])
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith(f"{world.ids['app']}: "))
    assert f"{cache}: {reason}" in line and line.endswith("; building from source"), line
    assert "1 built, 2 fetched" in proc.stderr, proc.stderr
    assert world.run(store, "verify").returncode == 0


def test_a_root_longer_than_the_room_builds_what_cannot_be_relocated(world: World) -> None:
    # compiled-in paths have PADDED_ROOT_LENGTH bytes of room (200), whatever root they
    # were built in; this root is longer, whatever the temporary directory's length
    store = world.work / ("L" * PADDED_ROOT_LENGTH)
    assert len(str(store)) > PADDED_ROOT_LENGTH
    proc = world.run(store, "build", str(world.stack), caches=[world.http_url],
                     trusted=[world.k1])
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith(f"{world.ids['app']}: "))
    assert ("cannot relocate: bin/app holds the old store root" in line
            and "than the room it has there" in line), line
    # libraries whose only mention of the root is their run path do move (patchelf grows it)
    assert f"fetched {world.ids['libpng']}" in proc.stderr
    assert "1 built, 2 fetched" in proc.stderr
    app = store / "artifacts" / world.ids["app"] / "bin" / "app"
    assert subprocess.run([str(app)], capture_output=True).returncode == 0
    assert world.run(store, "verify").returncode == 0


def test_push_skips_what_is_there_and_lists(world: World) -> None:
    moved = world.a_root.with_name(world.a_root.name + "-moved")
    proc = world.hd("push", "pngapp", "--to", world.oci_url, "--key",
                    str(world.keys / "k1.secret"), store=moved)
    assert proc.returncode == 0, proc.stderr
    assert "pushed 0 artifact(s) (0 B sent), 3 already in the cache" in proc.stderr
    for url in (str(world.dir_cache), world.http_url, world.oci_url):
        out = world.hd("cache", "list", url, store=moved, check=True).stdout.splitlines()
        listed = [line for line in out if not line.startswith("profile ")]
        assert sorted(line.split()[0] for line in listed) == sorted(world.ids[n] for n in
                                                                     ("zlib", "libpng", "app"))
        assert all(line.split()[2] == "k1" and int(line.split()[1]) > 0 for line in listed)
        # then the profile, by the name it was pushed by (host specs kept beside it are not)
        assert out[len(listed):] == [f"profile pngapp {world.phash} 3 k1"], out
        rows = json.loads(world.hd("cache", "list", url, "--json", store=moved,
                                   check=True).stdout)
        assert {r["id"] for r in rows if r["kind"] == "artifact"} == {
            world.ids[n] for n in ("zlib", "libpng", "app")}
        assert [(r["name"], r["hash"]) for r in rows if r["kind"] == "profile"] == [
            ("pngapp", world.phash)]
    to_http = world.hd("push", "pngapp", "--to", world.http_url, store=moved)
    assert to_http.returncode == 2 and "HTTP caches are read-only" in to_http.stderr


# -- reproduce HASH --from CACHE: the profile from the cache alone, nothing built -------


def store_is_empty(store: Path) -> None:
    for sub in ("artifacts", "specs", "profiles"):
        assert not (store / sub).is_dir() or os.listdir(store / sub) == [], sub


@pytest.mark.parametrize("kind", ["dir", "http", "oci"])
def test_reproduce_from_a_cache_builds_nothing(world: World, kind: str) -> None:
    url = {"dir": f"file://{world.dir_cache}", "http": world.http_url, "oci": world.oci_url}[kind]
    store = world.store(f"R{kind[0]}")
    assert len(str(store)) < len(str(world.a_root))
    # no compiler, no make on PATH: a build, or capturing gcc for one, would fail
    bare = {"PATH": str(Path(sys.executable).parent)}
    proc = world.hd("reproduce", world.phash, "--from", url, "--name", "again", store=store,
                    env={**bare, "HDENV_TRUSTED_KEYS": world.k1})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"again {world.phash}\n"  # the same profile hash
    assert "3 installed from the cache, 0 built" in proc.stderr, proc.stderr
    for name in ("zlib", "libpng", "app"):
        assert f"fetched {world.ids[name]} from {url} (" in proc.stderr
        meta = json.loads((store / "artifacts" / world.ids[name] / ".hdenv" / "artifact.json")
                          .read_text())
        assert meta["installed_from"]["source"] == url
    assert_relocated_and_running(world, store, proc.stderr)
    # the profile's program, through the profile
    profile = world.run(store, "list", "profiles").stdout.split()
    assert profile[:2] == ["again", world.phash]
    ran = subprocess.run([str(Path(profile[3]) / "bin" / "app-wrapper")], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0 and ran.stdout.endswith("message from app\n"), ran.stderr
    # the host and build-only specs came too: the store can export the state it holds
    zlib = json.loads((store / "specs" / f"{world.ids['zlib'].split('/')[2]}.json").read_text())
    inputs = [*zlib["build_deps"], *([zlib["tools"]] if zlib.get("tools") else [])]
    assert inputs and all((store / "specs" / f"{i.split('/')[2]}.json").is_file() for i in inputs)
    verify = world.run(store, "verify")
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout + verify.stderr


@pytest.mark.parametrize("kind", ["dir", "oci"])
def test_reproduce_from_a_cache_keeps_the_name_it_was_pushed_by(world: World, kind: str) -> None:
    url = {"dir": f"file://{world.dir_cache}", "oci": world.oci_url}[kind]
    store = world.store(f"Rn{kind[0]}")
    proc = world.run(store, "reproduce", world.phash, "--from", url, trusted=[world.k1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"pngapp {world.phash}\n"  # not repro-HASH
    assert world.run(store, "list", "profiles").stdout.split()[:2] == ["pngapp", world.phash]


def test_a_name_changed_in_the_cache_breaks_the_profile_signature(world: World) -> None:
    cache = world.dir_cache.with_name("cache-renamed")
    shutil.copytree(world.dir_cache, cache)
    path = cache / "profiles" / f"{world.phash}.json"
    doc = json.loads(path.read_text())
    assert doc["name"] == "pngapp"
    path.write_text(json.dumps({**doc, "name": "trusted-looking"}))
    store = world.store("Rnx")
    proc = world.run(store, "reproduce", world.phash, "--from", str(cache), trusted=[world.k1])
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: --from {cache}: refusing spec {world.phash}:"
                                  " bad signature by k1"), proc.stderr
    store_is_empty(store)


@pytest.mark.parametrize("trusted,reason", [
    ([], "untrusted key: signed by k1; trusted: none"),
    (["k2"], "untrusted key: signed by k1; trusted: k2"),
])
def test_reproduce_from_a_cache_refuses_an_untrusted_key(
        world: World, trusted: list[str], reason: str) -> None:
    store = world.store(f"Ru{len(trusted)}")
    keys = [world.k2] if trusted else []
    proc = world.run(store, "reproduce", world.phash, "--from", world.oci_url, trusted=keys)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hdenv: error: --from {world.oci_url}:"
                                                   " refusing "), proc.stderr
    assert lines[0].endswith(f"{reason} (trust its signer with trusted-keys in the config or"
                             " HDENV_TRUSTED_KEYS)"), lines[0]
    store_is_empty(store)


def test_reproduce_from_a_cache_refuses_a_forged_description_before_writing(
        world: World) -> None:
    cache = tampered_cache(world, "app", forge_as_k1, "-r")
    store = world.store("Rf")
    proc = world.run(store, "reproduce", world.phash, "--from", str(cache), trusted=[world.k1])
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hdenv: error: --from {cache}: refusing {world.ids['app']}:"
                                  " bad signature by k1"), proc.stderr
    store_is_empty(store)


def test_reproduce_from_a_cache_keeps_only_what_passed_every_check(world: World) -> None:
    cache = tampered_cache(world, "app", flip_a_byte, "-r")  # signed right, archive changed
    store = world.store("Rb")
    proc = world.run(store, "reproduce", world.phash, "--from", str(cache), trusted=[world.k1])
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"hdenv: error: --from {cache}: refusing {world.ids['app']}:"
                           " hash mismatch: archive is sha256:"), last
    assert last.endswith("(a cache is used as it is: nothing is built)"), last
    assert sorted(os.listdir(store / "artifacts")) == sorted(
        world.ids[n].split("/")[0] for n in ("zlib", "libpng"))
    assert not (store / "artifacts" / world.ids["app"]).exists()
    assert world.run(store, "verify").returncode == 0

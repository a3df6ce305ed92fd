"""`hdenv pack`: images of a real profile checked by real tools (skopeo, umoci, podman, bwrap,
unsquashfs, a registry), reproducibility, shared layers, SBOM validation, faults.

The profile is examples/demo (a C program on a C library built with the host
compiler) plus `demo-lib`, a profile of the library alone, so two images
share the library's layer.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, require_tool
from containertools import Podman, bwrap_run, umoci_unpack
from packfixtures import make_artifact
from servers import _serving, free_port, in_thread, registry

from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.store.layout import Store


@dataclass
class Built:
    env: dict[str, str]
    store: Path
    tmp: Path
    demo: str  # profile hash
    lib: str  # profile hash of demo-lib

    def hdenv(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        exe = str(Path(sys.executable).parent / "hdenv")
        return subprocess.run([exe, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def pack(self, *args: str) -> tuple[str, str]:
        """Run `hdenv pack ARGS`, expect success; returns (output, manifest digest)."""
        done = self.hdenv("pack", *args)
        assert done.returncode == 0, done.stderr
        out, digest = done.stdout.split()
        return out, digest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_tool("cc")
    tmp = tmp_path_factory.mktemp("pack")
    shutil.copytree(EXAMPLES / "demo", tmp / "demo")
    stack = tmp / "demo" / "stack.toml"
    stack.write_text(stack.read_text() + '\n[profiles.demo-lib]\npackages = ["libgreet"]\n')
    (tmp / "no-config.toml").write_text("")
    env = dict(os.environ)
    env.update({"HDENV_STORE": str(tmp / "store"), "HDENV_CONFIG": str(tmp / "no-config.toml"),
                "HDENV_SITE_CONFIG": "", "HDENV_JOBS": "2"})
    env.pop("HDENV_MIRRORS", None)
    env.pop("SOURCE_DATE_EPOCH", None)
    b = Built(env, tmp / "store", tmp, "", "")
    done = b.hdenv("build", str(stack))
    assert done.returncode == 0, done.stderr
    names = dict(line.split() for line in done.stdout.splitlines())
    b.demo, b.lib = names["demo"], names["demo-lib"]
    return b


def _inspect(ref: str) -> dict[str, Any]:
    skopeo = require_tool("skopeo")
    done = subprocess.run([skopeo, "inspect", ref], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    found: dict[str, Any] = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return found


def _env_of(inspected: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in inspected["Env"])


def _no_leftovers(directory: Path) -> None:
    left = [p.name for p in directory.iterdir() if p.name.startswith(".") or "tmp" in p.name]
    assert left == [], left


# -- formats and the tools that read them ------------------------------------


def test_pack_oci_inspected_unpacked_and_run(built: Built) -> None:
    out = built.tmp / "oci-demo"
    path, digest = built.pack("demo", "-o", str(out), "--entrypoint", "greet")
    assert path == str(out)
    info = _inspect(f"oci:{out}:latest")
    assert info["Digest"] == digest
    labels = info["Labels"]
    assert labels["dev.hdenv.profile"] == built.demo
    assert labels["org.opencontainers.image.revision"] == built.demo
    assert labels["dev.hdenv.version"]
    layers_of = json.loads(labels["dev.hdenv.layers"])
    assert layers_of[0] == "system" and layers_of[-1] == "profile"
    assert [a.split("/")[0] for a in layers_of[1:-1]] == ["libgreet", "greet"]  # deps first
    manifest = _manifest(out)
    assert [d["annotations"]["dev.hdenv.content"] for d in manifest["layers"]] == layers_of
    prefix = str(built.store / "profiles" / built.demo)
    env = _env_of(info)
    assert env["PATH"].startswith(f"{prefix}/bin:")
    assert env["MANPATH"] == f"{prefix}/share/man:"
    assert env["DEMO_HOME"] == f"{prefix}/share/demo"
    config = json.loads((out / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_text())
    assert config["config"]["WorkingDir"] == "/"
    assert config["config"]["Entrypoint"] == ["greet"]
    rootfs = umoci_unpack(out, "latest", built.tmp / "umoci-demo")
    # nothing of the host: the C library and the loader came with the image
    assert not (rootfs / "bin").exists()
    assert (rootfs / "lib64").is_symlink() or (rootfs / "lib64").is_dir()
    run = bwrap_run(rootfs, ["greet"], env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Hello, world!"
    # the profile's own metadata and the image's record are inside
    image_meta = json.loads((rootfs / ".hdenv-image" / "image.json").read_text())
    assert image_meta["profile"] == built.demo


def test_pack_oci_runs_in_podman(built: Built, request: pytest.FixtureRequest) -> None:
    out = built.tmp / "oci-podman"
    built.pack("demo", "-o", str(out))
    podman = Podman(built.tmp / "podman-oci")
    request.addfinalizer(podman.close)
    run = podman.run(f"oci:{out}:latest", "greet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Hello, world!"
    run = podman.run(f"oci:{out}:latest", "ls")
    assert run.returncode != 0  # no ls in an image of the profile alone: nothing leaks in


def test_pack_docker_archive_loaded_by_podman(built: Built,
                                              request: pytest.FixtureRequest) -> None:
    out = built.tmp / "demo.tar"
    _, digest = built.pack("demo", "--format", "docker-archive", "-o", str(out), "--tag", "t1")
    podman = Podman(built.tmp / "podman-archive")
    request.addfinalizer(podman.close)
    loaded = podman("load", "-i", str(out))
    assert loaded.returncode == 0, loaded.stderr
    assert "localhost/hdenv/demo:t1" in loaded.stdout + loaded.stderr
    run = podman.run("localhost/hdenv/demo:t1", "greet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Hello, world!"
    # the same layers as the OCI layout: the archive's layer files are the same blobs
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    oci = built.tmp / "oci-for-archive"
    built.pack("demo", "-o", str(oci))
    assert [f"{d['digest'][7:]}/layer.tar" for d in _manifest(oci)["layers"]] == \
        manifest[0]["Layers"]
    assert digest == built.pack("demo", "-o", str(built.tmp / "oci-for-archive2"))[1]


def test_pack_push_to_registry_pulled_back_by_skopeo(built: Built) -> None:
    skopeo = require_tool("skopeo")
    with registry(built.tmp / "registry") as host:
        url = f"oci://{host}/hdenv/demo:v1"
        out, digest = built.pack("demo", "--to", url)
        assert out == url
        info = subprocess.run([skopeo, "inspect", "--tls-verify=false",
                               f"docker://{host}/hdenv/demo:v1"], capture_output=True, text=True,
                              timeout=120)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["Digest"] == digest
        pulled = built.tmp / "pulled"
        copy = subprocess.run([skopeo, "copy", "--src-tls-verify=false", "--preserve-digests",
                               f"docker://{host}/hdenv/demo:v1", f"oci:{pulled}:v1"],
                              capture_output=True, text=True, timeout=120)
        assert copy.returncode == 0, copy.stderr
        assert _inspect(f"oci:{pulled}:v1")["Digest"] == digest
        rootfs = umoci_unpack(pulled, "v1", built.tmp / "umoci-pulled")
        run = bwrap_run(rootfs, ["greet"], _env_of(_inspect(f"oci:{pulled}:v1")))
        assert run.stdout.strip() == "Hello, world!", run.stderr
        # a second push sends nothing new and names the same manifest
        again = built.hdenv("pack", "demo", "--to", url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.split()[1] == digest
        assert "0 blob(s) sent" in again.stderr


PY_STACK = """
[stack]
name = "py"

[host.python]
programs = ["python3", "{exe}"]

[packages.hello]
version = "1.0"
sources = [{{ path = "src" }}]
deps = ["python"]
script = '''
mkdir -p "$PREFIX/lib/{exe}/site-packages"
cp hello.py "$PREFIX/lib/{exe}/site-packages/"
'''

[profiles.py]
packages = ["hello", "python"]
"""


def test_pack_python_profile_runs_in_an_empty_base(built: Built,
                                                   request: pytest.FixtureRequest) -> None:
    """A profile on the host's Python (a venv of it): its interpreter, standard library and
    the libraries its extension modules load come along."""
    host_python = shutil.which("python3", path=built.env.get("PATH"))
    assert host_python is not None
    exe = subprocess.run([host_python, "-c", "import sys; print('python%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, env=built.env, check=True).stdout.strip()
    work = built.tmp / "py"
    (work / "src").mkdir(parents=True)
    (work / "src" / "hello.py").write_text("import json, ssl, sqlite3\nprint('hello from python')\n")
    (work / "stack.toml").write_text(PY_STACK.format(exe=exe))
    done = built.hdenv("build", str(work / "stack.toml"))
    assert done.returncode == 0, done.stderr
    py_hash = done.stdout.split()[-1]
    out = built.tmp / "py-oci"
    built.pack("py", "-o", str(out))
    info = _inspect(f"oci:{out}:latest")
    env = _env_of(info)
    rootfs = umoci_unpack(out, "latest", built.tmp / "umoci-py")
    assert (rootfs / str(built.store).lstrip("/") / "profiles" / py_hash / "pyvenv.cfg").is_file()
    run = bwrap_run(rootfs, ["python3", "-c", "import hello"], env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from python"
    podman = Podman(built.tmp / "podman-py")
    request.addfinalizer(podman.close)
    run = podman.run(f"oci:{out}:latest", "python3", "-c", "import hello")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from python"


def test_pack_squashfs_unsquashfs_and_run(built: Built) -> None:
    unsquashfs = require_tool("unsquashfs")
    require_tool("mksquashfs")
    out = built.tmp / "demo.sqfs"
    built.pack("demo", "--format", "squashfs", "-o", str(out), "--entrypoint", "greet")
    tree = built.tmp / "unsquashed"
    done = subprocess.run([unsquashfs, "-d", str(tree), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    env_script = (tree / ".singularity.d" / "env" / "90-hdenv.sh").read_text()
    assert f"DEMO_HOME={built.store}/profiles/{built.demo}/share/demo" in env_script
    prefix = built.store / "profiles" / built.demo
    run = bwrap_run(tree, [f"{prefix}/bin/greet"], {})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Hello, world!"
    assert (tree / "tmp").stat().st_mode & 0o7777 == 0o1777
    # what `apptainer run` starts: the runscript (with the /bin/sh it needs)
    run = bwrap_run(tree, ["/.singularity.d/runscript"], {})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Hello, world!"
    # reproducible: the same bytes again
    again = built.tmp / "demo2.sqfs"
    built.pack("demo", "--format", "squashfs", "-o", str(again), "--entrypoint", "greet")
    assert out.read_bytes() == again.read_bytes()


def test_pack_tar_format_is_the_merged_tree(built: Built) -> None:
    out = built.tmp / "flat.tar"
    built.pack("demo", "--format", "tar", "-o", str(out))
    with tarfile.open(out) as tar:
        names = tar.getnames()
        members = tar.getmembers()
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
    tree = built.tmp / "flat"
    tree.mkdir()
    subprocess.run(["tar", "-C", str(tree), "-xf", str(out)], check=True)
    run = bwrap_run(tree, [f"{built.store}/profiles/{built.demo}/bin/greet"], {})
    assert run.stdout.strip() == "Hello, world!", run.stderr


# -- reproducibility and sharing ---------------------------------------------


def test_pack_twice_same_digest(built: Built) -> None:
    _, first = built.pack("demo", "-o", str(built.tmp / "twice-1"))
    _, by_hash = built.pack(built.demo, "-o", str(built.tmp / "twice-2"))
    _, by_gen = built.pack("demo/1", "-o", str(built.tmp / "twice-3"))
    assert first == by_hash == by_gen
    for n in (1, 2):  # every blob byte-identical
        blobs = sorted(os.listdir(built.tmp / f"twice-{n}" / "blobs" / "sha256"))
        assert blobs == sorted(os.listdir(built.tmp / "twice-3" / "blobs" / "sha256"))
    # another time of day and another umask do not matter
    env = {**built.env, "TZ": "Asia/Tokyo"}
    exe = str(Path(sys.executable).parent / "hdenv")
    done = subprocess.run(["sh", "-c", 'umask 077; exec "$0" "$@"', exe, "pack", "demo", "-o",
                           str(built.tmp / "twice-4")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == first


def test_pack_profiles_sharing_artifacts_share_layers(built: Built) -> None:
    built.pack("demo", "-o", str(built.tmp / "share-demo"))
    built.pack("demo-lib", "-o", str(built.tmp / "share-lib"))
    demo = {d["annotations"]["dev.hdenv.content"]: d["digest"]
            for d in _manifest(built.tmp / "share-demo")["layers"]}
    lib = {d["annotations"]["dev.hdenv.content"]: d["digest"]
           for d in _manifest(built.tmp / "share-lib")["layers"]}
    shared = [k for k in lib if k.startswith("libgreet/")]
    assert len(shared) == 1
    assert demo[shared[0]] == lib[shared[0]]
    assert demo["profile"] != lib["profile"]


def test_pack_root_relocates_the_store(built: Built) -> None:
    out = built.tmp / "relocated"
    built.pack("demo", "--root", "/opt/sw", "-o", str(out))
    info = _inspect(f"oci:{out}:latest")
    env = _env_of(info)
    assert env["PATH"].startswith(f"/opt/sw/profiles/{built.demo}/bin:")
    assert info["Labels"]["dev.hdenv.store-root"] == "/opt/sw"
    rootfs = umoci_unpack(out, "latest", built.tmp / "umoci-relocated")
    assert not (rootfs / str(built.store).lstrip("/")).exists()
    run = bwrap_run(rootfs, ["greet"], env)
    assert run.stdout.strip() == "Hello, world!", run.stderr
    link = os.readlink(rootfs / "opt/sw/profiles" / built.demo / "bin")
    assert link.startswith("/opt/sw/artifacts/greet/")


def test_pack_on_a_base_image(built: Built) -> None:
    base = built.tmp / "base-layout"
    built.pack("demo-lib", "-o", str(base))
    out = built.tmp / "on-base"
    built.pack("demo", "--base", str(base), "-o", str(out))
    base_layers = [d["digest"] for d in _manifest(base)["layers"]]
    layers = [d["digest"] for d in _manifest(out)["layers"]]
    assert layers[:len(base_layers)] == base_layers
    rootfs = umoci_unpack(out, "latest", built.tmp / "umoci-base")
    assert (rootfs / str(built.store).lstrip("/") / "profiles" / built.lib).is_dir()
    run = bwrap_run(rootfs, ["greet"], _env_of(_inspect(f"oci:{out}:latest")))
    assert run.stdout.strip() == "Hello, world!", run.stderr
    # a docker archive is a base too
    archive = built.tmp / "base.tar"
    built.pack("demo-lib", "--format", "docker-archive", "-o", str(archive))
    _, digest = built.pack("demo", "--base", str(archive), "-o", str(built.tmp / "on-base2"))
    assert digest == _inspect(f"oci:{out}:latest")["Digest"]


# -- provenance ----------------------------------------------------------------


def test_pack_sbom_spdx_validates(built: Built) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    out = built.tmp / "sbom-spdx"
    built.pack("demo", "-o", str(out), "--sbom", "spdx")
    beside = built.tmp / "sbom-spdx.sbom.spdx.json"
    doc = parse_file(str(beside))
    problems = [m.validation_message for m in validate_full_spdx_document(doc)]
    assert problems == []
    data = json.loads(beside.read_text())
    names = {p["name"]: p for p in data["packages"]}
    assert {"greet", "libgreet"} <= set(names)
    assert "libc6" in names or not shutil.which("dpkg-query")  # the host's C library, by package
    files = {f["fileName"] for f in data["files"]}
    assert any(f.endswith("/libc.so.6") for f in files)
    rootfs = umoci_unpack(out, "latest", built.tmp / "umoci-sbom")
    assert (rootfs / ".hdenv-image" / "sbom.spdx.json").read_bytes() == beside.read_bytes()


def test_pack_sbom_cyclonedx_validates(built: Built) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    # a download URL recorded for greet's source (specs/HASH.hints.json) reaches the SBOM
    store = Store(built.store)
    greet = next(a for a in json.loads((built.store / "profiles" / built.demo / ".hdenv"
                                        / "profile.json").read_text())["artifacts"]
                 if a.startswith("greet/"))
    key = store.read_spec(greet.rsplit("/", 1)[1])["sources"][0]["key"]
    store.record_source_hints(greet.rsplit("/", 1)[1],
                              [{"key": key, "url": "https://example.org/greet-1.0.tar.gz"}])
    out = built.tmp / "sbom-cdx"
    built.pack("demo", "-o", str(out), "--sbom", "cyclonedx")
    text = (built.tmp / "sbom-cdx.sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    doc = json.loads(text)
    comps = {c["name"]: c for c in doc["components"]}
    assert comps["libgreet"]["version"] == "1.0"
    assert {"name": "hdenv:source", "value": key} in comps["greet"]["properties"]
    assert {"type": "distribution", "url": "https://example.org/greet-1.0.tar.gz"} in \
        comps["greet"]["externalReferences"]
    if key.startswith("sha256:"):
        assert {"alg": "SHA-256", "content": key[7:]} in comps["greet"]["hashes"]
    assert any(c.get("purl", "").startswith("pkg:deb/debian/libc6@") for c in doc["components"]) \
        or not shutil.which("dpkg-query")
    # the SBOM is inside, so the image differs from one without, but is itself reproducible
    _, again = built.pack("demo", "-o", str(built.tmp / "sbom-cdx2"), "--sbom", "cyclonedx")
    assert again == _inspect(f"oci:{out}:latest")["Digest"]


def test_pack_swapped_directory_is_not_followed(tmp_path: Path) -> None:
    """In a group-shared store a member may rename entries inside artifact directories: a
    directory swapped for a symlink (to a secret) after the walk must not be read through."""
    from hdenv.containers.tarlayer import write_layer
    from hdenv.containers.trees import TreeReader

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "data").write_text("top secret\n")
    tree = tmp_path / "artifact"
    (tree / "share").mkdir(parents=True)
    (tree / "share" / "data").write_text("public\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "tool").write_text("#!/bin/sh\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    entries = TreeReader(None, scratch).entries(tree)
    (tree / "share").rename(tmp_path / "moved")
    (tree / "share").symlink_to(secret)
    with open(tmp_path / "layer.tar", "wb") as out, pytest.raises(OSError):
        write_layer(entries, out)
    # the walk itself goes through directory fds as well
    assert not any("secret" in e.name for e in TreeReader(None, scratch).entries(tree))
    assert b"top secret" not in (tmp_path / "layer.tar").read_bytes()


# -- back into a store --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["oci", "docker-archive", "squashfs"])
def test_pack_reproduce_from_image(built: Built, fmt: str, tmp_path: Path) -> None:
    """An image received from a colleague becomes store entries again: the artifacts come
    from its layers (installed, relocated, nothing built), the profile has the same hash."""
    if fmt == "squashfs":
        require_tool("unsquashfs")
    image = tmp_path / f"img-{fmt}"
    built.pack("demo", "--format", fmt, "-o", str(image), "--root", "/opt/colleague")
    other = tmp_path / "other-store"
    env = {**built.env, "HDENV_STORE": str(other)}
    exe = str(Path(sys.executable).parent / "hdenv")
    done = subprocess.run([exe, "reproduce", str(image)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    name, phash = done.stdout.split()
    assert phash == built.demo
    assert name == "demo" or (fmt == "squashfs" and name.startswith("repro-"))
    assert "2 installed from" in done.stderr and "0 built" in done.stderr
    run = subprocess.run([str(other / "profiles" / phash / "bin" / "greet")],
                         capture_output=True, text=True, timeout=30)
    assert run.stdout.strip() == "Hello, world!", run.stderr
    verify = subprocess.run([exe, "verify", phash], env=env, capture_output=True, text=True,
                            timeout=300)
    assert verify.returncode == 0, verify.stderr


# -- bad input and faults --------------------------------------------------------


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("packing ")]
    assert len(lines) == 1 and lines[0].startswith("hdenv: error: "), done.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_pack_bad_input_one_line(built: Built) -> None:
    work = built.tmp / "bad"
    work.mkdir()
    _one_line_error(built.hdenv("pack", "nosuch", "-o", str(work / "x")), 2, "nosuch")
    _one_line_error(built.hdenv("pack", "demo", "--format", "rpm", "-o", str(work / "x")), 2,
                    "rpm")
    (work / "taken").write_text("mine\n")
    _one_line_error(built.hdenv("pack", "demo", "-o", str(work / "taken")), 2, "exists")
    assert (work / "taken").read_text() == "mine\n"
    _one_line_error(built.hdenv("pack", "demo"), 2, "-o")
    _one_line_error(built.hdenv("pack", "demo", "--to", "http://x/y"), 2, "oci://")
    _one_line_error(built.hdenv("pack", "demo", "--sbom", "xml", "-o", str(work / "x")), 2,
                    "xml")
    _one_line_error(built.hdenv("pack", "demo", "--base", str(work / "none"), "-o",
                                str(work / "x")), 2, "--base")
    assert sorted(os.listdir(work)) == ["taken"]


def test_pack_unreadable_host_file_leaves_nothing(built: Built, tmp_path: Path) -> None:
    """A host artifact whose host file is gone (drift): one line, exit 1, nothing written."""
    store = Store(tmp_path / "store")
    store.ensure()
    gone = tmp_path / "tool-that-was-here"
    gone.write_text("#!/bin/sh\n")
    aid = make_artifact(store, "tool", lambda p: (p / "bin").mkdir())
    host_dir = store.artifact_dir(aid)
    meta_path = host_dir / ".hdenv" / "artifact.json"
    meta = json.loads(meta_path.read_text())
    meta["host_files"] = {str(gone): "0" * 64}
    os.chmod(meta_path, 0o644)
    meta_path.write_text(json.dumps(meta))
    spec = profile_spec([aid], {}, None)
    create_profile(store, spec)
    gone.unlink()
    env = {**built.env, "HDENV_STORE": str(store.root)}
    exe = str(Path(sys.executable).parent / "hdenv")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for fmt in ("oci", "squashfs"):
        done = subprocess.run([exe, "pack", profile_hash(spec), "--format", fmt, "-o",
                               str(out_dir / "img")], env=env, capture_output=True, text=True,
                              timeout=120)
        _one_line_error(done, 1, str(gone))
        assert os.listdir(out_dir) == []


class _DyingRegistry(http.server.BaseHTTPRequestHandler):
    """Answers like a registry until the first blob arrives, then hangs up mid-upload."""

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.send_response(202)
        self.send_header("Location", "/v2/x/blobs/uploads/1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self.rfile.read(100)
        self.connection.shutdown(2)
        self.close_connection = True


@pytest.fixture
def dying_registry() -> Iterator[str]:
    with in_thread(_DyingRegistry) as port:
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def _readonly_registry(workdir: Path) -> Iterator[str]:
    """docker-registry in maintenance mode: it refuses every upload (HTTP 405)."""
    exe = require_tool("docker-registry")
    workdir.mkdir(parents=True)
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        "  maintenance:\n    readonly:\n      enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    with _serving([exe, "serve", str(config)], f"http://127.0.0.1:{port}/v2/",
                  workdir / "registry.log"):
        yield f"127.0.0.1:{port}"


def test_pack_registry_refuses_or_dies(built: Built, dying_registry: str) -> None:
    done = built.hdenv("pack", "demo", "--to", f"oci://{dying_registry}/x:v1")
    _one_line_error(done, 1, dying_registry)
    with _readonly_registry(built.tmp / "ro-registry") as host:
        done = built.hdenv("pack", "demo", "--to", f"oci://{host}/hdenv/demo:v1")
        _one_line_error(done, 1)
        skopeo = require_tool("skopeo")
        missing = subprocess.run([skopeo, "inspect", "--tls-verify=false",
                                  f"docker://{host}/hdenv/demo:v1"], capture_output=True,
                                 text=True, timeout=60)
        assert missing.returncode != 0  # no tag: nothing half-pushed is visible


def test_pack_interrupted_leaves_nothing(built: Built, tmp_path: Path) -> None:
    """Ctrl-C while a large layer is written: exit 130 at once, no temporary left."""
    store = Store(tmp_path / "store")
    store.ensure()

    def big(prefix: Path) -> None:
        with open(prefix / "big", "wb") as f:
            f.truncate(1 << 30)  # sparse: written as 1 GiB of tar

    aid = make_artifact(store, "big", big)
    spec = profile_spec([aid], {}, None)
    create_profile(store, spec)
    env = {**built.env, "HDENV_STORE": str(store.root)}
    exe = str(Path(sys.executable).parent / "hdenv")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([exe, "pack", profile_hash(spec), "-o", str(out_dir / "img")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the layer is being written
        layers = [p for d in out_dir.iterdir() for p in (d / "image/blobs/sha256").glob(".layer-*")
                  if d.is_dir()] if any(out_dir.iterdir()) else []
        if any(p.stat().st_size > (64 << 20) for p in layers):
            break
        time.sleep(0.01)
    else:
        proc.kill()
        pytest.fail("pack never started writing the large layer")
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 5
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert os.listdir(out_dir) == []

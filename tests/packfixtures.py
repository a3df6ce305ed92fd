"""Artifacts made without a build, for the exchange tests: the store's own install_artifact."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hdenv.profile.profiles import create_profile, profile_hash, profile_spec
from hdenv.store.artifacts import install_artifact
from hdenv.store.layout import Store


def make_artifact(store: Store, name: str, fill: Callable[[Path], object],
                  deps: list[str] | None = None, salt: str = "") -> str:
    spec = {"kind": "build", "name": name, "version": "1.0", "deps": sorted(deps or []),
            "script": f"test {salt}"}

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        fill(prefix)

    log = store.root / f"log-{name}"
    log.write_text(f"built {name}\n")
    aid, _ = install_artifact(store, spec, populate, runtime_deps=deps or [], log_path=log,
                              extra_meta={"note": f"built in {store.root}/artifacts"})
    return aid


def rich_tree(prefix: Path) -> None:
    """Files, an executable, nested dirs, relative and absolute links, a hardlink, unicode."""
    (prefix / "bin").mkdir()
    (prefix / "bin" / "tool").write_text(f"#!/bin/sh\necho {prefix}/share\n")
    os.chmod(prefix / "bin" / "tool", 0o755)
    (prefix / "lib" / "pkgconfig").mkdir(parents=True)
    (prefix / "lib" / "pkgconfig" / "x.pc").write_text(f"prefix={prefix}\nLibs: -L{prefix}/lib\n")
    (prefix / "lib" / "libx.so.1").write_bytes(b"\x00\x01binary\x00" + str(prefix).encode() + b"\x00")
    (prefix / "lib" / "libx.so").symlink_to("libx.so.1")
    (prefix / "share" / "dätä").mkdir(parents=True)
    (prefix / "share" / "dätä" / "f").write_text("données\n")
    os.link(prefix / "share" / "dätä" / "f", prefix / "share" / "hardlinked")
    (prefix / "share" / "abs").symlink_to(prefix / "bin" / "tool")
    (prefix / "share" / "dirlink").symlink_to("dätä")
    (prefix / "empty").mkdir()


def two_level(store: Store) -> tuple[str, str, str]:
    """dep <- top, a host artifact beside them, and a profile of all three."""
    dep = make_artifact(store, "dep", rich_tree)
    top = make_artifact(store, "top", lambda p: (p / "uses").write_text(
        f"{store.artifact_dir(dep)}/lib\n"), deps=[dep])
    host, _ = install_artifact(store, {"kind": "host", "name": "cc", "version": "1",
                                       "programs": {}}, lambda p, fd, pfd: None, runtime_deps=[])
    spec = profile_spec([top, dep, host], {}, None)
    create_profile(store, spec)
    return dep, top, profile_hash(spec)

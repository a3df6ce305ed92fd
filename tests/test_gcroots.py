"""GC roots: pins, and the registrations of running processes (live and dead)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hdenv.errors import UserError
from hdenv.store.artifacts import install_artifact
from hdenv.store.gcroots import BuildRoots, gc_lock, list_pins, pin, running_roots, unpin
from hdenv.store.layout import Store


def make_artifact(store: Store, name: str) -> str:
    spec = {"kind": "build", "name": name, "version": "1", "sources": [], "deps": [],
            "build_deps": [], "env": {}, "script": name}

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        (prefix / "file").write_text(name)

    return install_artifact(store, spec, populate, runtime_deps=[])[0]


def test_pin_unpin_and_list(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    aid = make_artifact(store, "one")
    pinned = pin(store, aid)
    assert (pinned.kind, pinned.ident) == ("artifact", aid)
    (listed,) = list_pins(store)
    assert (listed.hash, listed.kind, listed.ident) == (aid.rsplit("/", 1)[1], "artifact", aid)
    assert os.path.realpath(store.root / "pins" / listed.hash) == str(store.artifact_dir(aid))
    assert unpin(store, aid).ident == aid
    assert list_pins(store) == []
    with pytest.raises(UserError, match="is not pinned"):
        unpin(store, aid)
    with pytest.raises(UserError, match="unknown REF"):
        pin(store, "nosuchname")


def test_registered_ids_are_seen_while_the_process_lives(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    with BuildRoots(store) as roots:
        roots.add(["a/1/x", "sha256:" + "0" * 64])
        with roots.holding():
            roots.add(["prof"])  # nested: the shared lock is not taken twice
        seen = running_roots(store, clean=True)
        assert seen.ids == {"a/1/x", "sha256:" + "0" * 64, "prof"}
        assert seen.processes == 1
    assert running_roots(store, clean=True).ids == set()
    assert os.listdir(store.locks / "roots") == []


def test_roots_of_a_dead_process_are_dropped(tmp_path: Path) -> None:
    """A build killed with -9 cannot unregister: its file stays, its flock goes."""
    store = Store(tmp_path / "s").ensure()
    code = textwrap.dedent(f"""
        import os
        from hdenv.store.gcroots import BuildRoots
        from hdenv.store.layout import Store
        roots = BuildRoots(Store({str(store.root)!r})).__enter__()
        roots.add(["dead/1/x"])
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9
    assert len(os.listdir(store.locks / "roots")) == 1
    assert running_roots(store, clean=False).ids == set()  # dead: not a root
    assert len(os.listdir(store.locks / "roots")) == 1  # du does not clean
    running_roots(store, clean=True)
    assert os.listdir(store.locks / "roots") == []


def test_registration_waits_for_a_running_gc(tmp_path: Path) -> None:
    store = Store(tmp_path / "s").ensure()
    with gc_lock(store, shared=False):
        code = textwrap.dedent(f"""
            from hdenv.store.gcroots import BuildRoots
            from hdenv.store.layout import Store
            with BuildRoots(Store({str(store.root)!r})) as r:
                r.add(["x/1/y"])
        """)
        proc = subprocess.Popen([sys.executable, "-c", code])
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
    assert proc.wait(timeout=30) == 0

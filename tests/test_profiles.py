"""Profile specs and hashes, atomic creation, names and generations (small real artifacts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hdenv.errors import UserError
from hdenv.profile.profiles import (
    create_profile,
    list_generations,
    profile_hash,
    profile_spec,
    prune,
    rollback,
    set_current,
)
from hdenv.store import tmpdirs
from hdenv.store.artifacts import install_artifact
from hdenv.store.fsutil import read_json
from hdenv.store.layout import Store


def artifact(store: Store, name: str, files: dict[str, str], deps: list[str] | None = None,
             env: dict[str, str] | None = None) -> str:
    spec = {"kind": "build", "name": name, "version": "1.0", "sources": [],
            "deps": sorted(deps or []), "build_deps": [], "env": env or {}, "script": "true"}

    def populate(prefix: Path, _fd: int, _prefix_fd: int) -> None:
        for rel, content in files.items():
            p = prefix / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)

    return install_artifact(store, spec, populate, runtime_deps=deps or [])[0]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").ensure()


@pytest.fixture
def arts(store: Store) -> dict[str, str]:
    zlib = artifact(store, "zlib",
                    {"lib/libz.a": "z", "include/zlib.h": "h", "share/info/dir": "1"})
    app = artifact(store, "app", {"bin/app": "app", "share/info/dir": "2"}, deps=[zlib])
    other = artifact(store, "other", {"bin/other": "o"})
    return {"zlib": zlib, "app": app, "other": other}


def test_spec_is_canonical_and_hash_stable(arts: dict[str, str]) -> None:
    a = profile_spec([arts["zlib"], arts["app"]], {"B": "2", "A": "1"}, None)
    b = profile_spec([arts["app"], arts["zlib"], arts["app"]], {"A": "1", "B": "2"}, None)
    assert a == b and profile_hash(a) == profile_hash(b)
    assert set(a) == {"kind", "artifacts", "env", "family"}  # unused options stay out
    assert a["artifacts"] == sorted([arts["zlib"], arts["app"]])
    variants = [
        profile_spec([arts["zlib"]], {"A": "1", "B": "2"}, None),
        profile_spec([arts["zlib"], arts["app"]], {"A": "1"}, None),
        profile_spec([arts["zlib"], arts["app"]], {"A": "1", "B": "2"}, "compiler"),
        profile_spec([arts["zlib"], arts["app"]], {"A": "1", "B": "2"}, None, exclude=["x"]),
        profile_spec([arts["zlib"], arts["app"]], {"A": "1", "B": "2"}, None, priority=["app"]),
    ]
    hashes = {profile_hash(v) for v in variants}
    assert len(hashes) == len(variants) and profile_hash(a) not in hashes


def test_hash_does_not_depend_on_store_location(tmp_path: Path) -> None:
    ids = []
    for where in ("one", "two"):
        s = Store(tmp_path / where).ensure()
        ids.append(artifact(s, "lib", {"lib/x": "x"}))
    env = {"HOME_OF_DEMO": "@@HDENV_PROFILE@@/share"}
    hashes = {profile_hash(profile_spec([i], env, None)) for i in ids}
    assert len(hashes) == 1


def test_create_profile_links_and_records_metadata(store: Store, arts: dict[str, str]) -> None:
    spec = profile_spec([arts["zlib"], arts["app"]], {"DEMO": "@@HDENV_PROFILE@@/share"}, "x",
                        exclude=["zlib:share/info/dir"])
    prof = create_profile(store, spec)
    h = profile_hash(spec)
    assert prof == store.profile_dir(h) and store.has_profile(h)
    assert (prof / "bin/app").read_text() == "app"
    assert (prof / "share/info/dir").read_text() == "2"
    assert (prof / "lib/libz.a").read_text() == "z"
    meta = read_json(prof / ".hdenv/profile.json")
    assert meta["hash"] == h
    assert meta["artifacts"] == spec["artifacts"]
    assert meta["env"] == {"DEMO": f"{prof}/share"}
    assert meta["family"] == "x"
    assert store.read_spec(h) == spec  # stored for reproduce/diff
    assert tmpdirs.leftovers(store) == []  # nothing left aside
    # idempotent: the same directory, untouched
    mtime = os.stat(prof / ".hdenv/profile.json").st_mtime_ns
    assert create_profile(store, spec) == prof
    assert os.stat(prof / ".hdenv/profile.json").st_mtime_ns == mtime


def test_conflict_leaves_no_profile_behind(store: Store, arts: dict[str, str]) -> None:
    spec = profile_spec([arts["zlib"], arts["app"]], {}, None)
    with pytest.raises(UserError) as e:
        create_profile(store, spec)
    assert "share/info/dir" in str(e.value)
    assert arts["zlib"] in str(e.value) and arts["app"] in str(e.value)
    assert not os.path.lexists(store.profile_dir(profile_hash(spec)))
    assert tmpdirs.leftovers(store) == []
    resolved = profile_spec([arts["zlib"], arts["app"]], {}, None, priority=["app"])
    assert (create_profile(store, resolved) / "share/info/dir").read_text() == "2"


def test_missing_artifact_is_user_error(store: Store) -> None:
    with pytest.raises(UserError, match="not in the store"):
        create_profile(store, profile_spec(["nope/1.0/" + "a" * 32], {}, None))


def test_concurrent_creation_yields_one_profile(store: Store, arts: dict[str, str]) -> None:
    spec = profile_spec([arts["other"], arts["app"]], {}, None)
    code = ("import sys, json; from pathlib import Path; from hdenv.store.layout import Store; "
            "from hdenv.profile.profiles import create_profile; "
            "print(create_profile(Store(Path(sys.argv[1])), json.loads(sys.argv[2])))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(store.root), json.dumps(spec)],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate()[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1
    assert store.has_profile(profile_hash(spec))
    assert tmpdirs.leftovers(store) == []


def make(store: Store, arts: dict[str, str], env_value: str) -> str:
    return create_profile(store, profile_spec([arts["other"]], {"V": env_value}, None)).name


def test_generations_set_current_rollback_prune(store: Store, arts: dict[str, str]) -> None:
    h1, h2, h3 = (make(store, arts, v) for v in ("1", "2", "3"))
    assert set_current(store, "demo", h1) == (1, True)
    assert set_current(store, "demo", h1) == (1, False)
    assert set_current(store, "demo", h2) == (2, True)
    assert set_current(store, "demo", h3) == (3, True)
    assert store.name_current("demo") == store.profile_dir(h3)
    gens = list_generations(store, "demo")
    assert [(g.number, g.hash, g.current) for g in gens] == [
        (1, h1, False), (2, h2, False), (3, h3, True)]
    assert all(g.created[:4].isdigit() for g in gens)
    # every generation is a symlink to its profile: a GC root
    for g in gens:
        link = store.names / "demo" / str(g.number)
        assert os.path.realpath(link) == str(store.profile_dir(g.hash))

    assert rollback(store, "demo") == 2
    assert store.resolve("demo").ident == h2
    assert rollback(store, "demo", to=1) == 1
    assert store.resolve("demo").ident == h1
    with pytest.raises(UserError, match="no generation before"):
        rollback(store, "demo")
    with pytest.raises(UserError, match="no generation 7"):
        rollback(store, "demo", to=7)
    # building h1 again while generation 1 is current changes nothing
    assert set_current(store, "demo", h1) == (1, False)
    # a new hash after a rollback gets the next free number
    h4 = make(store, arts, "4")
    assert set_current(store, "demo", h4) == (4, True)

    assert rollback(store, "demo", to=1) == 1
    assert prune(store, "demo", keep=1) == [2, 3]  # newest (4) and current (1) stay
    assert [g.number for g in list_generations(store, "demo")] == [1, 4]
    assert store.has_profile(h2)  # pruning drops roots only; gc removes profiles
    assert prune(store, "demo", keep=0) == [4]
    assert [g.number for g in list_generations(store, "demo")] == [1]


def test_name_errors(store: Store, arts: dict[str, str]) -> None:
    h = make(store, arts, "x")
    for bad in ("", "a/b", ".hidden", "current", "sp ace"):
        with pytest.raises(UserError):
            set_current(store, bad, h)
    with pytest.raises(UserError, match="no profile"):
        set_current(store, "demo", "a" * 32)
    with pytest.raises(UserError, match="unknown profile name"):
        list_generations(store, "missing")
    with pytest.raises(UserError):
        prune(store, "missing", keep=1)


def test_switch_is_a_symlink_rename(store: Store, arts: dict[str, str]) -> None:
    """`current` is always a symlink (never absent) and no temp links remain."""
    set_current(store, "demo", make(store, arts, "1"))
    set_current(store, "demo", make(store, arts, "2"))
    ndir = store.names / "demo"
    assert os.readlink(ndir / "current") == "2"
    assert sorted(os.listdir(ndir)) == ["1", "2", "current"]


def hdenv(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command line, as a user runs it."""
    exe = Path(sys.executable).with_name("hdenv")
    env = {**os.environ, "HDENV_STORE": str(store.root)}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env)


def test_cli_generations_rollback_prune_and_path(store: Store, arts: dict[str, str]) -> None:
    h1, h2 = make(store, arts, "1"), make(store, arts, "2")
    set_current(store, "demo", h1)
    set_current(store, "demo", h2)
    out = hdenv(store, "profile", "generations", "demo")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert [(r[0], r[1]) for r in rows] == [("1", h1), ("2", h2)]
    assert rows[1][-1] == "current" and rows[0][-1] != "current"
    assert json.loads(hdenv(store, "profile", "generations", "demo", "--json").stdout)[1]["current"]

    assert hdenv(store, "path", "demo").stdout.strip() == str(store.profile_dir(h2))
    # NAME/N names generation N, as a modulefile NAME/VERSION does.
    assert hdenv(store, "path", "demo/1").stdout.strip() == str(store.profile_dir(h1))
    missing = hdenv(store, "path", "demo/7")
    assert (missing.returncode, missing.stderr) == (2, "hdenv: error: profile 'demo' has no "
                                                    "generation 7 (see `hdenv profile generations"
                                                    " demo`)\n")
    back = hdenv(store, "profile", "rollback", "demo")
    assert back.returncode == 0 and back.stdout.split() == ["demo", h1]
    assert hdenv(store, "path", "demo").stdout.strip() == str(store.profile_dir(h1))
    assert hdenv(store, "profile", "rollback", "demo", "--to", "2").returncode == 0
    assert hdenv(store, "path", "demo").stdout.strip() == str(store.profile_dir(h2))

    pruned = hdenv(store, "profile", "prune", "demo", "--keep", "1")
    assert pruned.returncode == 0 and "1" in pruned.stderr
    assert [g.number for g in list_generations(store, "demo")] == [2]

    bad = hdenv(store, "profile", "rollback", "demo", "--to", "9")
    assert bad.returncode == 2
    assert bad.stderr.startswith("hdenv: error: ") and "Traceback" not in bad.stderr

"""The fast load path: REF resolution, load semantics and import weight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from shellfixtures import make_profile

from hdenv.configscan import KNOWN_KEYS
from hdenv.errors import UserError
from hdenv.shell import envdiff, fastload, shellcmd
from hdenv.shell.quoting import get_shell


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    make_profile(root, "demo", env={"DEMO": "1"})
    make_profile(root, "gcc", family="compiler")
    make_profile(root, "clang", family="compiler")
    return root


def run(cmd: str, args: list[str], env: dict[str, str], store: Path) -> dict[str, str]:
    """Apply the command to `env` the way a shell would, via the statements' effect."""
    session = fastload.Session(env, lambda: str(store))
    if cmd == "purge":
        session.purge()
    for ref in args:
        {"load": session.load, "unload": session.unload}[cmd](ref)
    return dict(session.finish())


def test_resolve_name_hash_and_prefix(store: Path) -> None:
    by_name = fastload.resolve(str(store), "demo")
    assert by_name.name == "demo"
    assert fastload.resolve(str(store), by_name.hash).hash == by_name.hash
    assert fastload.resolve(str(store), by_name.hash[:6]).hash == by_name.hash
    with pytest.raises(UserError, match="at least 6 characters"):
        fastload.resolve(str(store), by_name.hash[:4])
    with pytest.raises(UserError, match="unknown REF"):
        fastload.resolve(str(store), "nosuch")


def test_generation_ref_loads_that_generation_under_the_name(store: Path) -> None:
    """`load demo/1` while demo (generation 2) is loaded replaces it: same name."""
    import os

    old = make_profile(store, None, env={"DEMO": "old"}, seed="demo-generation-1")
    new = fastload.resolve(str(store), "demo").hash
    for entry in ("1", "current"):
        os.unlink(store / "names" / "demo" / entry)
    os.symlink(store / "profiles" / old, store / "names" / "demo" / "1")
    os.symlink(store / "profiles" / new, store / "names" / "demo" / "2")
    os.symlink("2", store / "names" / "demo" / "current")
    first = fastload.resolve(str(store), "demo/1")
    assert (first.hash, first.name) == (old, "demo")
    env = run("load", ["demo"], {"PATH": "/usr/bin"}, store)
    env = run("load", ["demo/1"], env, store)
    assert env["DEMO"] == "old" and env[envdiff.LOADED_VAR] == f"demo/1:{old}"
    env = run("unload", ["demo"], env, store)
    assert env == {"PATH": "/usr/bin"}
    with pytest.raises(UserError, match="no generation 3"):
        fastload.resolve(str(store), "demo/3")


def test_prefix_lookup_in_a_store_path_with_braces(tmp_path: Path) -> None:
    root = tmp_path / "store {0} {x}"
    hash_ = make_profile(root, "demo")
    assert fastload.resolve(str(root), hash_[:7]).hash == hash_


def test_ambiguous_prefix(store: Path) -> None:
    import shutil

    hash_ = fastload.resolve(str(store), "demo").hash
    twin = hash_[:6] + ("a" if hash_[6] != "a" else "b") * 26
    shutil.copytree(store / "profiles" / hash_, store / "profiles" / twin)
    with pytest.raises(UserError, match="ambiguous"):
        fastload.resolve(str(store), hash_[:6])
    assert fastload.resolve(str(store), hash_[:7]).hash == hash_


def test_double_load_family_and_not_loaded(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = run("load", ["gcc", "demo"], {"PATH": "/usr/bin"}, store)
    again = run("load", ["demo"], env, store)
    assert again == env
    assert "already loaded" in capsys.readouterr().err
    swapped = run("load", ["clang"], env, store)
    assert "family 'compiler': unloading gcc" in capsys.readouterr().err
    assert [r.name for r in envdiff.decode(swapped[envdiff.RECORD_VAR])] == ["demo", "clang"]
    with pytest.raises(UserError, match="'gcc' is not loaded"):
        run("unload", ["gcc"], swapped, store)
    assert run("purge", [], swapped, store) == {"PATH": "/usr/bin"}


def test_run_emits_only_changes(store: Path) -> None:
    code = fastload.run("load", ["demo"], get_shell("bash"), {"PATH": "/usr/bin", "X": "1"},
                        lambda: str(store))
    assert "export DEMO='1'" in code and "X=" not in code


def test_main_exit_code_and_message(store: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", shellcmd.FAST_CODE, shellcmd.libdir(), "bash",
         "/nonexistent/config.toml", str(store), "load", "nosuch"],
        capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("hdenv: error: unknown REF 'nosuch'")


HEAVY = ("os", "click", "jinja2", "platformdirs", "tomllib", "hdenv.store", "hdenv.store.layout", "hdenv.config",
         "shellingham", "hashlib", "tempfile", "collections.abc")


def fast_load(config: str, default_store: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the shell function's program as it does; also return what it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-I", "-S", "-c", shellcmd.FAST_CODE,
         shellcmd.libdir(), "bash", config, default_store, "load", "demo"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **(env or {})})
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    return proc, imported


def test_fast_path_imports_stay_light(store: Path) -> None:
    """No os (see lightos.py), click, jinja2, platformdirs, tomllib or store module on `load`."""
    proc, imported = fast_load("/nonexistent/config.toml", str(store))
    assert proc.returncode == 0, proc.stderr
    assert "hdenv.shell.fastload" in imported
    for heavy in HEAVY:
        assert heavy not in imported, heavy


def test_store_from_config_toml(store: Path, tmp_path: Path) -> None:
    """A plain config.toml is read without tomllib; anything else through it, same answer."""
    config = tmp_path / "config.toml"
    config.write_text(f"# site settings\nstore = '{store}'  # shared\njobs = 4\n")
    proc, imported = fast_load(str(config), "/nonexistent/default-store")
    assert proc.returncode == 0, proc.stderr
    assert f"{store}/profiles/" in proc.stdout
    for heavy in HEAVY:
        assert heavy not in imported, heavy

    escaped = str(store).replace("/", "\\u002F", 1)  # a TOML escape: tomllib's job
    config.write_text(f'store = "{escaped}"\n')
    proc, imported = fast_load(str(config), "/nonexistent/default-store")
    assert proc.returncode == 0, proc.stderr
    assert f"{store}/profiles/" in proc.stdout and "tomllib" in imported

    config.write_text(f"store = '{store}'\ncolour = 'blue'\n")
    proc, _ = fast_load(str(config), "/nonexistent/default-store")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"hdenv: error: {config}: unknown setting(s) colour; known: "
        + ", ".join(sorted(KNOWN_KEYS)))


def test_upstream_stores_are_searched_after_this_one(tmp_path: Path) -> None:
    """Names: the first store that has one decides; hashes and prefixes: any store."""
    mine, site = tmp_path / "mine", tmp_path / "site"
    own_demo = make_profile(mine, "demo", env={"WHO": "mine"})
    make_profile(site, "demo", env={"WHO": "site"}, seed="site-demo")
    tools = make_profile(site, "tools", seed="site-tools")
    roots = [str(mine), str(site)]
    assert fastload.resolve(roots, "demo").hash == own_demo
    found = fastload.resolve(roots, "tools")
    assert (found.hash, found.prefix) == (tools, f"{site}/profiles/{tools}")
    assert fastload.resolve(roots, tools[:8]).hash == tools
    assert fastload.resolve(roots, tools).prefix == f"{site}/profiles/{tools}"
    with pytest.raises(UserError, match="unknown REF"):
        fastload.resolve([str(mine)], "tools")
    session = fastload.Session({"PATH": "/usr/bin"}, lambda: roots)
    session.load("tools")
    session.load("demo")
    env = session.finish()
    assert env["WHO"] == "mine" and f"{site}/profiles/{tools}/bin" in env["PATH"]


def test_session_records_usage_events(store: Path) -> None:
    session = fastload.Session({"PATH": "/usr/bin"}, lambda: str(store))
    session.load("demo")
    session.load("gcc")
    session.load("clang")  # same family: an automatic swap
    session.swap("demo", "gcc")  # replaces demo, and clang (family)
    session.purge()
    demo, gcc, clang = (fastload.resolve(str(store), n).hash for n in ("demo", "gcc", "clang"))
    assert session.events == [
        ("load", True, ("demo", 1, demo), None),
        ("load", True, ("gcc", 1, gcc), None),
        ("auto-swap", False, ("clang", 1, clang), [("gcc", 1, gcc)]),
        ("swap", True, ("gcc", 1, gcc), [("demo", 1, demo), ("clang", 1, clang)]),
        ("unload", False, ("gcc", 1, gcc), None),
    ]


def test_usage_log_imports_stay_light(store: Path, tmp_path: Path) -> None:
    """With a file: usage log the fast path still imports no os, json or socket."""
    logs = tmp_path / "logs"
    logs.mkdir()
    site = tmp_path / "site.toml"
    site.write_text(f'usage-log = "file:{logs}"\n')
    proc, imported = fast_load("/nonexistent/config.toml", str(store),
                               {"HDENV_SITE_CONFIG": str(site), "USER": "ana"})
    assert proc.returncode == 0, proc.stderr
    assert [m for m in imported if m.startswith("hdenv.usage")] == ["hdenv.usage"]  # one import
    for heavy in (*HEAVY, "json", "socket", "_socket", "syslog"):
        assert heavy not in imported, heavy
    (log,) = logs.iterdir()
    assert '"action":"load"' in log.read_text()
    proc, imported = fast_load("/nonexistent/config.toml", str(store))
    assert not any(m.startswith("hdenv.usage") for m in imported)

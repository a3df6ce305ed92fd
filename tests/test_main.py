"""The bare program's ways in (hdenv/cli/main.py, group.py): lean and lazy, same output.

`hdenv avail` and friends are answered without click; every other command is
imported by the click group only when asked for, and `hdenv --help` lists them
from the generated `commandindex`. These tests run the real program and hold
each way against click's full program (every command imported up front), so
none of the fast ways can drift from the click definitions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from shellfixtures import add_artifact, add_profile, build_profiles

from hdenv.cli import commandindex, group

# click's full program: every subcommand imported before the command line is parsed
EAGER = ("import sys, click; from hdenv.cli import group;"
         " group.cli.all_commands(click.Context(group.cli)); sys.argv[0] = 'hdenv'; group.run()")


def every_command_path() -> list[list[str]]:
    """`[]` (the group), each subcommand, and each subcommand of a subgroup."""
    paths: list[list[str]] = [[]]
    ctx = click.Context(group.cli)
    for name, cmd in group.cli.all_commands(ctx).items():
        paths.append([name])
        if isinstance(cmd, click.Group):
            paths += [[name, sub] for sub in cmd.list_commands(click.Context(cmd))]
    return paths


def run_both(args: list[str], env: dict[str, str], hdenv_exe: str
             ) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """(the bare program, click's full program) on the same command line."""
    bare = subprocess.run([hdenv_exe, *args], env=env, capture_output=True, text=True)
    full = subprocess.run([sys.executable, "-c", EAGER, *args], env=env, capture_output=True,
                          text=True)
    return bare, full


def test_command_index_is_current() -> None:
    """`hdenv --help` lists commands from commandindex.py: it must say what they say."""
    stale = "hdenv/cli/commandindex.py is stale: run `.venv/bin/python -m hdenv.cli.group`"
    assert group.index_entries() == commandindex.INDEX, stale
    assert group.help_texts() == commandindex.HELP, stale
    assert group.visible_names() == commandindex.VISIBLE, stale


@pytest.mark.parametrize("path", every_command_path(), ids=lambda p: " ".join(p) or "hdenv")
@pytest.mark.parametrize("columns", ["80", "60"])
def test_help_is_clicks(path: list[str], columns: str, hdenv_env: dict[str, str],
                        hdenv_exe: str) -> None:
    """Every command's `--help` (the stored text from 80 columns on, the lazy group below)
    equals the eagerly loaded program's."""
    bare, full = run_both([*path, "--help"], {**hdenv_env, "COLUMNS": columns}, hdenv_exe)
    assert full.returncode == 0, full.stderr
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, full.stdout, full.stderr)


@pytest.mark.parametrize("path", [[], ["avail"], ["profile", "prune"]], ids=" ".join)
@pytest.mark.parametrize("columns", ["120", "79"])
def test_short_help_and_wide_terminals(path: list[str], columns: str,
                                       hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """`-h` as `--help`; a wide terminal gets the stored text, one column less click's."""
    bare, full = run_both([*path, "-h"], {**hdenv_env, "COLUMNS": columns}, hdenv_exe)
    assert full.returncode == 0, full.stderr
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, full.stdout, full.stderr)


def test_help_without_terminal_is_clicks(hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """No COLUMNS and no terminal: click's 80 columns, the stored text."""
    env = {k: v for k, v in hdenv_env.items() if k != "COLUMNS"}
    bare, full = run_both(["avail", "--help"], env, hdenv_exe)
    assert (bare.returncode, bare.stdout) == (0, full.stdout)


@pytest.fixture
def catalog_store(store_dir: Path) -> Path:
    """Two named profiles (one with two generations) over three artifacts."""
    for aid in ("lua/5.4.6/" + "a" * 32, "zlib/1.3/" + "b" * 32, "lua/5.1/" + "c" * 32):
        add_artifact(store_dir, aid)
    add_profile(store_dir, "demo", ["lua/5.4.6/" + "a" * 32], description="Demo tools")
    add_profile(store_dir, "demo", ["lua/5.1/" + "c" * 32, "zlib/1.3/" + "b" * 32],
                generation=2)
    add_profile(store_dir, "other", ["zlib/1.3/" + "b" * 32])
    return store_dir


LEAN_LINES = [["--version"], ["avail"], ["avail", "-t"], ["avail", "--json"],
              ["avail", "dem"], ["avail", "nomatch"], ["avail", "--refs"],
              ["avail", "--show-hidden", "--color", "always"], ["spider", "lua"],
              ["spider", "lua/5.1", "--json"], ["spider", "nothing"], ["spider"],
              ["loaded"], ["loaded", "--json"], ["list"], ["list", "-t"],
              ["avail", "--bogus"], ["loaded", "extra"], ["--debug", "avail"], ["commands"]]


@pytest.mark.parametrize("args", LEAN_LINES, ids=" ".join)
def test_lean_path_prints_what_click_prints(args: list[str], catalog_store: Path,
                                            hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """Output, errors and exit codes of the lean commands are the click commands'."""
    bare, full = run_both(args, hdenv_env, hdenv_exe)
    assert (bare.returncode, bare.stdout, bare.stderr) == (
        full.returncode, full.stdout, full.stderr)


def test_lean_store_option(catalog_store: Path, tmp_path: Path, hdenv_env: dict[str, str],
                           hdenv_exe: str) -> None:
    """`--store S avail` lists S, not HDENV_STORE's store, as click's --store does."""
    env = {**hdenv_env, "HDENV_STORE": str(tmp_path / "elsewhere")}
    bare, full = run_both(["--store", str(catalog_store), "avail", "-t"], env, hdenv_exe)
    assert bare.stdout == full.stdout
    assert "demo/2" in bare.stdout


@pytest.mark.parametrize("args", [["avail"], ["spider", "lua"], ["loaded"], ["list"],
                                  ["--version"], ["commands"]], ids=" ".join)
def test_lean_commands_import_no_click(args: list[str], catalog_store: Path,
                                       hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """The read-only commands never import click (or the command modules)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", hdenv_exe, *args],
                          env=hdenv_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "click" not in imported
    assert "dataclasses" not in imported
    assert not {m for m in imported if m.startswith("hdenv.cli.")} - {
        "hdenv.cli.main", "hdenv.cli.commandindex"}


def test_help_imports_no_command_module(hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """`--help` imports no command module (and no click from 80 columns on); a
    narrower terminal's `config --help` imports click and `site` only."""
    for args, columns, wanted in ((["--help"], "80", set()), (["gc", "--help"], "100", set()),
                                  (["--help"], "60", {"click"}),
                                  (["config", "--help"], "60", {"click", "hdenv.cli.site"})):
        proc = subprocess.run([sys.executable, "-X", "importtime", hdenv_exe, *args],
                              env={**hdenv_env, "COLUMNS": columns}, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        commands = {m for m in imported if m.startswith("hdenv.cli.") or m == "click"} - {
            "hdenv.cli.main", "hdenv.cli.group", "hdenv.cli.options", "hdenv.cli.commandindex",
            "hdenv.cli.plain"}
        assert commands == wanted


@pytest.fixture(scope="module")
def built_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real profiles from a real `hdenv build`: what `show` and `list` read."""
    work = tmp_path_factory.mktemp("built")
    root = work / "store"
    build_profiles(root, work, {"demo": {"env": {"DEMO": "1"}, "description": "Demo tools"},
                                "other": {"env": {}}})
    return root


STORE_LINES = [["list", "artifacts"], ["list", "profiles", "--json"], ["list", "--json", "names"],
               ["list", "bogus"], ["list", "names", "extra"], ["show", "demo"],
               ["show", "demo", "--json"], ["show", "demo/1"], ["show", "nosuch"], ["show"],
               ["show", "--bogus", "demo"], ["config"], ["config", "--json"], ["config", "x"],
               ["--debug", "config"]]


@pytest.mark.parametrize("args", STORE_LINES, ids=" ".join)
def test_lean_store_commands_print_what_click_prints(
        args: list[str], built_store: Path, hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """`list WORD`, `show`, `config`: the same output, errors and exit codes both ways."""
    env = {**hdenv_env, "HDENV_STORE": str(built_store)}
    bare, full = run_both(args, env, hdenv_exe)
    assert (bare.returncode, bare.stdout, bare.stderr) == (
        full.returncode, full.stdout, full.stderr)


def test_lean_store_commands_with_store_option(built_store: Path, tmp_path: Path,
                                               hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """`--store S show demo` reads S; `--store FILE` gets click's complaint."""
    env = {**hdenv_env, "HDENV_STORE": str(tmp_path / "elsewhere")}
    bare, full = run_both(["--store", str(built_store), "show", "demo"], env, hdenv_exe)
    assert (bare.returncode, bare.stdout) == (0, full.stdout)
    afile = tmp_path / "afile"
    afile.write_text("")
    bare, full = run_both(["--store", str(afile), "list", "names"], env, hdenv_exe)
    assert (bare.returncode, bare.stderr) == (2, full.stderr)


@pytest.mark.parametrize("args", [["list", "artifacts"], ["show", "demo"], ["config"]],
                         ids=" ".join)
def test_lean_store_commands_import_no_click(args: list[str], built_store: Path,
                                             hdenv_env: dict[str, str], hdenv_exe: str) -> None:
    """Nor `dataclasses`, which imports `inspect` (15 ms of a 65 ms `list artifacts`)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", hdenv_exe, *args],
                          env={**hdenv_env, "HDENV_STORE": str(built_store)},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "click" not in imported
    assert "dataclasses" not in imported

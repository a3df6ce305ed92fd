"""avail, spider and loaded: what they print, their JSON, and how light they are.

The store is written by the layout contract (as a build leaves it); the fast
path's own program is run for the import check, as the shell function runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Runner
from shellfixtures import add_artifact, add_profile, fake_hash

from hdenv.errors import UserError
from hdenv.shell import catalog, envdiff, shellcmd
from hdenv.shell.envdiff import LoadRecord

LUA = "lua/5.4.4/" + fake_hash("lua")
LUA_OLD = "lua/5.3.6/" + fake_hash("lua-old")
HELLO = "hello/2.10/" + fake_hash("hello")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    for aid in (LUA, LUA_OLD, HELLO):
        add_artifact(root, aid)
    (root / "specs").mkdir(parents=True, exist_ok=True)
    (root / "specs" / f"{LUA.rsplit('/', 1)[1]}.about.json").write_text(
        json.dumps({"description": "Lua, a scripting language"}))
    add_profile(root, "gnu", [HELLO, LUA_OLD], generation=1, current=False,
                description="GNU tools (old)")
    add_profile(root, "gnu", [HELLO, LUA], generation=2, description="GNU tools")
    add_profile(root, "tools", [HELLO], description="Just hello")
    return root


def loaded_env(store: Path, name: str, generation: int) -> dict[str, str]:
    import os

    hash_ = os.path.basename(os.readlink(store / "names" / name / str(generation)))
    env: dict[str, str] = {}
    envdiff.store_records(env, [LoadRecord(hash_, name, generation=generation)])
    return env


def test_avail_lists_generations_descriptions_and_packages(store: Path) -> None:
    text = catalog.run("avail", [], loaded_env(store, "gnu", 1), [str(store)])
    # the header's shape, whatever the length of the store path: dashes, the path, dashes
    assert re.fullmatch(rf"-{{2,}} {re.escape(str(store))} -{{2,}}", text.splitlines()[0])
    assert ("   gnu/1 (L)   gnu/2 (D)\n      GNU tools\n"
            "      packages: hello/2.10 lua/5.4.4\n") in text
    assert "   tools/1 (D)\n      Just hello\n      packages: hello/2.10\n" in text
    assert "D:  default generation" in text and "L:  loaded" in text


def test_avail_filters_by_name_description_or_package(store: Path) -> None:
    assert "tools/1" not in catalog.run("avail", ["lua"], {}, [str(store)])
    assert "gnu/2" in catalog.run("avail", ["LUA"], {}, [str(store)])
    assert "gnu/2" not in catalog.run("avail", ["just"], {}, [str(store)])
    with pytest.raises(UserError, match=r"no profile matches 'zzz' \(packages: hdenv spider zzz\)"):
        catalog.run("avail", ["zzz"], {}, [str(store)])
    assert json.loads(catalog.run("avail", ["--json", "zzz"], {}, [str(store)])) == []


def test_avail_json(store: Path) -> None:
    data = json.loads(catalog.run("avail", ["--json"], loaded_env(store, "gnu", 2), [str(store)]))
    gnu = next(e for e in data if e["name"] == "gnu")
    assert gnu["default"] == 2 and gnu["description"] == "GNU tools"
    assert [(g["ref"], g["current"], g["loaded"]) for g in gnu["generations"]] == [
        ("gnu/1", False, False), ("gnu/2", True, True)]
    assert [p["id"] for p in gnu["packages"]] == [HELLO, LUA]


def test_spider_finds_every_generation_and_says_how_to_load(store: Path) -> None:
    text = catalog.run("spider", ["lua"], {}, [str(store)])
    assert text == ("lua/5.3.6\n    in: gnu/1\n    load it with: hdenv load gnu/1\n"
                    "    or the package alone: hdenv load lua/5.3.6\n"
                    "lua/5.4.4 - Lua, a scripting language\n    in: gnu/2 (D)\n"
                    "    load it with: hdenv load gnu\n"
                    "    or the package alone: hdenv load lua/5.4.4\n")
    one = json.loads(catalog.run("spider", ["--json", "lua/5.4.4"], {}, [str(store)]))
    assert [(e["package"], e["version"], e["ids"], e["load"]) for e in one] == [
        ("lua", "5.4.4", [LUA], "hdenv load gnu")]
    hello = json.loads(catalog.run("spider", ["--json", "hello"], {}, [str(store)]))
    assert [p["ref"] for p in hello[0]["profiles"]] == ["gnu/1", "gnu/2", "tools/1"]


def test_spider_misses_suggest(store: Path) -> None:
    with pytest.raises(UserError, match=r"no package matches 'lau'; did you mean lua\?"):
        catalog.run("spider", ["lau"], {}, [str(store)])
    with pytest.raises(UserError, match="gnu is a profile: hdenv avail gnu"):
        catalog.run("spider", ["gnu"], {}, [str(store)])
    with pytest.raises(UserError, match="usage: hdenv spider TEXT"):
        catalog.run("spider", [], {}, [str(store)])


def test_loaded(store: Path) -> None:
    assert catalog.run("loaded", [], {}, []) == "No profiles loaded.\n"
    env = loaded_env(store, "gnu", 2)
    assert catalog.run("loaded", [], env, []) == "Currently loaded profiles:\n  1) gnu/2\n"
    [entry] = json.loads(catalog.run("loaded", ["--json"], env, []))
    assert (entry["ref"], entry["name"], entry["generation"]) == ("gnu/2", "gnu", 2)


def test_unknown_options_go_to_the_full_program(store: Path) -> None:
    for cmd in ("avail", "spider", "loaded"):
        with pytest.raises(catalog.Delegate):
            catalog.run(cmd, ["--help"], {}, [str(store)])


def test_completion_offers_hashes_only_after_six_characters(store: Path) -> None:
    from hdenv.store.index import Index

    refs = catalog.complete_refs(Index([str(store)]))
    assert refs == ["gnu", "tools", "gnu/1", "gnu/2", "tools/1"]
    current = fake_hash("gnu-2")
    assert catalog.complete_refs(Index([str(store)]), current[:6])[-1] == current


HEAVY = ("click", "jinja2", "platformdirs", "tomllib", "hdenv.store.layout", "hdenv.config",
         "shellingham", "hashlib", "tempfile", "difflib", "json")


@pytest.mark.parametrize("args", [["avail"], ["spider", "lua"], ["loaded"]])
def test_fast_path_stays_light(store: Path, args: list[str]) -> None:
    """What the shell function runs for avail/spider/loaded imports no heavy module."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-I", "-S", "-c", shellcmd.FAST_CODE,
         shellcmd.libdir(), "bash", "/nonexistent/config.toml", str(store), *args],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hdenv.shell.catalog" in imported
    for heavy in HEAVY:
        assert heavy not in imported, heavy
    assert proc.stdout  # and it printed the answer itself


VARIANT_STACK = """
[stack]
name = "s"

[matrix]
level = ["fast", "small"]

[packages.tool]
version = "1"
env = { OPT = "{{ level }}" }
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho $OPT\\n" > "$PREFIX/bin/tool"'
"""


def test_spider_keeps_variants_apart_and_names_a_profile_holding_each(
        run_hdenv: Runner, tmp_path: Path) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text(VARIANT_STACK)
    run_hdenv("build", str(stack), check=True)
    text = run_hdenv("spider", "tool", check=True).stdout
    assert text == ("tool/1 [OPT=fast]\n    in: s-fast/1 (D)\n    load it with: hdenv load s-fast\n"
                    "    or the package alone: hdenv load tool/1-fast\n"
                    "tool/1 [OPT=small]\n    in: s-small/1 (D)\n"
                    "    load it with: hdenv load s-small\n"
                    "    or the package alone: hdenv load tool/1-small\n")
    for name in ("tool/1-fast", "tool/1-small"):  # what spider says, load takes
        assert run_hdenv("is-avail", name).returncode == 0, name
    entries = json.loads(run_hdenv("spider", "--json", "tool/1", check=True).stdout)
    assert [(e["variant"], e["load"], len(e["ids"])) for e in entries] == [
        ("OPT=fast", "hdenv load s-fast", 1), ("OPT=small", "hdenv load s-small", 1)]

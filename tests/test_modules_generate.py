"""`hdenv modulefiles` end to end on quickly built stacks (no compiler needed).

The store path holds spaces, quotes and `$`; a profile variable holds hostile
values. Real Lmod loads the Lua tree, real Environment Modules 5 the Tcl tree,
and the environment must come back exactly, and go back exactly on unload and
purge. Then: re-runs replace the tree and drop what is gone, bad input leaves
it untouched, and Lmod's own checker and spider cache accept it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from modulerunner import LMOD_LIBEXEC, ModuleShell, need_lmod, path_entries

HDENV = str(Path(sys.executable).parent / "hdenv")
STORE_DIR = "st ore 'q' \"dq\" $x"
# Environment Modules 5 finds no modulefile under a path with $ [ ] { }.
OUT_DIR = "mod files 'q' \"dq\""
VALUES = {
    "H_DESIGN": "'\";&&e-$ èрт🚒♞中片-j",
    "H_LUA": "]] ]=] ]==] [[x]] [=[",
    "H_TCL": "{a} } { \\ $HOME [exec id] {*}x",
    "H_SHELL": "$(id) `id` ;\"' !x -j",
    "H_DASH": "-x",
}

STACK = """
[stack]
name = "mods"

[parameters]
label = "one"

[packages.tool]
version = "1.0"
description = "A tool with a man page"
script = '''
mkdir -p "$PREFIX/bin" "$PREFIX/share/man/man1" "$PREFIX/lib/pkgconfig" "$PREFIX/include"
printf '#!/bin/sh\\necho tool {{ label }}\\n' > "$PREFIX/bin/hdenvtool"
chmod +x "$PREFIX/bin/hdenvtool"
echo '.TH T 1' > "$PREFIX/share/man/man1/hdenvtool.1"
'''

[packages.lib]
version = "2.0"
script = 'mkdir -p "$PREFIX/lib" && echo {{ label }} > "$PREFIX/lib/data"'

[packages.app]
version = "0.1"
deps = ["lib"]
script = 'mkdir -p "$PREFIX/bin" && printf "#!/bin/sh\\necho app\\n" > "$PREFIX/bin/hdenvapp" && chmod +x "$PREFIX/bin/hdenvapp"'

[profiles.mods]
description = "Tools for the module tests"
packages = ["tool", "app"]
env = ENV

[profiles.other]
packages = ["lib"]
"""


def stack_text(label: str = "one") -> str:
    env = "{ " + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}"
                           for k, v in VALUES.items()) + ', MODS_HOME = "{{ profile }}" }'
    return STACK.replace("ENV", env).replace('label = "one"', f'label = "{label}"')


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.store = root / STORE_DIR
        self.stack = root / "stack.toml"
        self.env = {**os.environ, "HDENV_STORE": str(self.store),
                    "HDENV_CONFIG": str(root / "none.toml")}
        self.env.pop("HDENV_MIRRORS", None)
        (root / "none.toml").write_text("")

    def hdenv(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([HDENV, *args], env=self.env, capture_output=True, text=True,
                              timeout=300)
        if check:
            assert proc.returncode == 0, f"hdenv {args}: {proc.stderr}"
        return proc

    def artifact(self, name: str) -> tuple[str, str]:
        """(id, path) of the one artifact called `name`."""
        rows = json.loads(self.hdenv("list", "artifacts", "--json").stdout)
        found = [r for r in rows if r["id"].startswith(f"{name}/")]
        assert len(found) == 1, found
        return found[0]["id"], found[0]["path"]

    def build(self, label: str = "one") -> dict[str, str]:
        self.stack.write_text(stack_text(label))
        out = self.hdenv("build", str(self.stack)).stdout
        return dict(line.split() for line in out.splitlines())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Env:
    env = Env(tmp_path_factory.mktemp("modgen"))
    env.build()
    return env


def tree(root: Path) -> dict[str, str]:
    """Every file under root (dotfiles too) with its content."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("kind,fmt", [("lmod", "lmod"), ("em", "tcl")])
def test_profile_module_round_trips_hostile_values(built: Env, tmp_path: Path, kind: str,
                                                   fmt: str) -> None:
    out = tmp_path / OUT_DIR
    core = built.hdenv("modulefiles", "--format", fmt, "--out", str(out)).stdout.strip()
    assert core == str(out / "Core")
    prefix = built.hdenv("path", "mods").stdout.strip()
    sh = ModuleShell(kind, tmp_path)
    sh.run(Path(core), [
        "dump before", "module load mods", "dump loaded", "hdenvtool > \"$HOME/ran\"",
        "module unload mods", "dump unloaded",
        "module load mods other", "module purge", "dump purged",
    ])
    before, loaded = sh.env("before"), sh.env("loaded")
    for var, value in VALUES.items():
        assert loaded[var] == value, var
    assert loaded["MODS_HOME"] == prefix
    assert path_entries(loaded, "PATH")[0] == f"{prefix}/bin"
    assert path_entries(loaded, "MANPATH")[0] == f"{prefix}/share/man"
    assert path_entries(loaded, "CMAKE_PREFIX_PATH") == [prefix]
    assert path_entries(loaded, "CPATH") == [f"{prefix}/include"]
    assert (tmp_path / "ran").read_text() == "tool one\n"
    watched = ["PATH", "MANPATH", "PKG_CONFIG_PATH", "CMAKE_PREFIX_PATH", "CPATH",
               "LIBRARY_PATH", "MODS_HOME", *VALUES]
    for label in ("unloaded", "purged"):
        after = sh.env(label)
        assert {v: after.get(v) for v in watched} == {v: before.get(v) for v in watched}, label
    # its help says what it sets beyond `hdenv load` (the two above), not "the same"
    helped = " ".join(sh.run(Path(core), ["module help mods 2>&1"]).stdout.split())
    assert "and also CPATH and LIBRARY_PATH" in helped, helped


def test_avail_lists_profiles_and_artifacts(built: Env, tmp_path: Path) -> None:
    out = tmp_path / "lua"
    built.hdenv("modulefiles", "--out", str(out))
    got = ModuleShell("lmod", tmp_path).run(out / "Core", ["module -t avail 2>&1"]).stdout
    names = {line.strip() for line in got.splitlines()}
    assert {"mods/1", "other/1", "tool/1.0", "app/0.1", "lib/2.0"} <= names
    tcl = tmp_path / "tcl"
    built.hdenv("modulefiles", "--format", "tcl", "--out", str(tcl))
    got = ModuleShell("em", tmp_path).run(tcl / "Core", ["module -t avail 2>&1"]).stdout
    assert {"mods/1", "other/1", "tool/1.0"} <= {line.strip() for line in got.splitlines()}


def test_artifact_module_sets_root_and_loads_runtime_deps(built: Env, tmp_path: Path) -> None:
    out = tmp_path / "lua"
    built.hdenv("modulefiles", "--out", str(out))
    text = (out / "Core" / "app" / "0.1.lua").read_text()
    assert 'depends_on("lib/2.0")' in text
    assert 'whatis("Description: app 0.1")' in text
    sh = ModuleShell("lmod", tmp_path)
    sh.run(out / "Core", ["module load app", "dump app", "module list -t 2>&1",
                          "module unload app", "dump gone"])
    app = sh.env("app")
    assert app["LIB_ROOT"] == built.artifact("lib")[1]  # loaded by depends_on
    assert app["APP_ROOT"] == built.artifact("app")[1]
    assert "LIB_ROOT" not in sh.env("gone")
    tool = (out / "Core" / "tool" / "1.0.lua").read_text()
    assert 'whatis("Description: A tool with a man page")' in tool
    mods = (out / "Core" / "mods" / "1.lua").read_text()
    assert 'whatis("Description: Tools for the module tests")' in mods


def test_rerun_replaces_the_tree_and_drops_what_is_gone(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.build("one")
    out = tmp_path / "mods"
    env.hdenv("modulefiles", "--out", str(out))
    first = tree(out)
    old_lib = [k for k in first if k.startswith("Core/lib/")]
    assert old_lib == ["Core/lib/2.0.lua"]
    env.build("two")  # lib and tool change: generation 2 of both profiles
    env.hdenv("modulefiles", "--out", str(out))
    second = tree(out)
    assert "Core/mods/1.lua" in second and "Core/mods/2.lua" in second
    assert any(k.startswith("Core/lib/2.0-") for k in second)  # two libs 2.0 now
    assert "Core/mods/.modulerc.lua" in second  # default: the current generation
    assert 'module_version("mods/2", "default")' in second["Core/mods/.modulerc.lua"]
    for name in ("mods", "other"):
        env.hdenv("profile", "prune", name, "--keep", "1")
    env.hdenv("modulefiles", "--out", str(out))
    third = tree(out)
    assert "Core/mods/1.lua" not in third and "Core/mods/2.lua" in third
    assert [k for k in third if k.startswith("Core/lib/")] == ["Core/lib/2.0.lua"]
    assert "Core/mods/.modulerc.lua" not in third
    assert third["Core/lib/2.0.lua"] != first["Core/lib/2.0.lua"]  # the new lib
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".mods.")]
    assert leftovers == []


def test_bad_input_changes_nothing(built: Env, tmp_path: Path) -> None:
    out = tmp_path / "mods"
    built.hdenv("modulefiles", "--out", str(out))
    before = tree(out)
    bad = built.hdenv("modulefiles", "--out", str(out), "no-such-profile", check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("hdenv: error: unknown REF 'no-such-profile'")
    assert len(bad.stderr.splitlines()) == 1
    assert tree(out) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    bad = built.hdenv("modulefiles", "--out", str(foreign), check=False)
    assert bad.returncode == 2 and "not written by hdenv modulefiles" in bad.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    bad = built.hdenv("modulefiles", "--format", "yaml", "--out", str(out), check=False)
    assert bad.returncode == 2
    assert tree(out) == before


def test_refs_select_generations_and_artifacts(built: Env, tmp_path: Path) -> None:
    out = tmp_path / "mods"
    built.hdenv("modulefiles", "--out", str(out), "other/1")
    assert sorted(tree(out)) == [".hdenv-modulefiles.json", "Core/lib/2.0.lua",
                                 "Core/other/1.lua"]
    built.hdenv("modulefiles", "--out", str(out), built.artifact("app")[0])
    assert sorted(tree(out)) == [".hdenv-modulefiles.json", "Core/app/0.1.lua",
                                 "Core/lib/2.0.lua"]


def test_line_breaks_in_values_are_refused(tmp_path: Path) -> None:
    """build refuses them (FILE:LINE); a profile.json with one (from another store,
    written by an older hdenv) is refused by modulefiles too."""
    env = Env(tmp_path)
    text = ('[stack]\nname = "nl"\n[packages.p]\nversion = "1"\n'
            'script = "mkdir -p $PREFIX/bin"\n'
            '[profiles.nl]\npackages = ["p"]\nenv = { BAD = "a\\nrm -rf ~" }\n')
    env.stack.write_text(text)
    refused = env.hdenv("build", str(env.stack), check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"hdenv: error: {env.stack}:8: profiles.nl.env.BAD: "
                                     "it contains a line break")
    env.stack.write_text(text.replace("a\\nrm -rf ~", "ok"))
    env.hdenv("build", str(env.stack))
    meta = Path(os.path.realpath(env.store / "names" / "nl" / "current")) / ".hdenv"
    data = json.loads((meta / "profile.json").read_text())
    data["env"]["BAD"] = "a\nrm -rf ~"
    os.chmod(meta, 0o755)
    os.chmod(meta / "profile.json", 0o644)
    (meta / "profile.json").write_text(json.dumps(data))
    bad = env.hdenv("modulefiles", "--out", str(tmp_path / "m"), check=False)
    assert bad.returncode == 2
    assert "the value of BAD contains a line break" in bad.stderr
    assert not (tmp_path / "m").exists()


def test_lmod_checker_accepts_the_tree_and_rejects_a_broken_one(built: Env,
                                                                 tmp_path: Path) -> None:
    need_lmod()
    checker = LMOD_LIBEXEC / "check_module_tree_syntax"
    out = tmp_path / "mods"
    built.hdenv("modulefiles", "--out", str(out))
    sh = ModuleShell("lmod", tmp_path)
    ok = sh.run(None, [f"'{checker}' '{out}/Core' 2>&1"], check=False)
    assert ok.returncode == 0 and "No errors found" in ok.stdout, ok.stdout + ok.stderr
    (out / "Core" / "other" / "1.lua").write_text('setenv("X", [=[broken)\n')
    broken = sh.run(None, [f"'{checker}' '{out}/Core' 2>&1"], check=False)
    assert "No errors found" not in broken.stdout


def test_spider_cache_is_built_and_used(built: Env, tmp_path: Path) -> None:
    need_lmod()
    refused = built.hdenv("modulefiles", "--spider-cache", "--out", str(tmp_path / "m"),
                          check=False)  # Lmod writes store paths into the cache unescaped
    assert refused.returncode == 2 and "spider cache cannot hold" in refused.stderr
    assert not (tmp_path / "m").exists()
    env = Env(tmp_path)
    env.store = tmp_path / "plainstore"
    env.env["HDENV_STORE"] = str(env.store)
    env.build()
    out = tmp_path / "mods"
    got = env.hdenv("modulefiles", "--spider-cache", "--out", str(out))
    rc = out / ".lmod-cache" / "lmodrc.lua"
    assert f"LMOD_RC={rc}" in got.stderr
    assert (out / ".lmod-cache" / "spiderT.lua").is_file()
    # Remove a module behind Lmod's back: only a spider that reads the cache still finds it.
    (out / "Core" / "tool" / "1.0.lua").rename(tmp_path / "away.lua")
    sh = ModuleShell("lmod", tmp_path)
    cached = sh.run(out / "Core", [f"export LMOD_RC='{rc}'", "module -t spider tool 2>&1"])
    plain = sh.run(out / "Core", ["module -t spider tool 2>&1"], check=False)
    assert "tool/1.0" in cached.stdout
    assert "tool/1.0" not in plain.stdout
    bad = env.hdenv("modulefiles", "--spider-cache", "--out", str(tmp_path / "a b"),
                    check=False)
    assert bad.returncode == 2 and "cannot handle" in bad.stderr
    assert not (tmp_path / "a b").exists()

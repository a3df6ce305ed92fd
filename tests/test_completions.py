"""The completion scripts in completions/, run by the real shells.

bash: `__hdenv_complete` is called with COMP_WORDS/COMP_CWORD set, as bash's
programmable completion calls it. fish: `complete -C` asks fish's own
completion engine. zsh's completion system only runs inside the line editor,
so there `compadd` is replaced by a function that prints its words: the test
checks what `_hdenv` offers, and zsh itself does the prefix filtering.

The profiles are built for real by `hdenv build`, and PATH no longer holds
hdenv once the function is defined: completion must go through the function.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import require_tool
from shellfixtures import build_profiles

from hdenv.cli.group import cli as cli_group

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("completion")
    root = work / "store"
    build_profiles(root, work, {"demo": {"env": {"DEMO": "1"}}, "other": {"env": {}}})
    return root


def profile_hashes(store: Path) -> set[str]:
    return {p.name for p in (store / "profiles").iterdir()}


def run(shell: str, script: str, store: Path, tmp_path: Path) -> dict[str, set[str]]:
    """Run `script`; each output line `LABEL| w1 w2 ...` becomes {LABEL: {w1, w2, ...}}."""
    flags = {"bash": ["--norc", "--noprofile"], "zsh": ["-f"], "fish": ["--no-config"]}[shell]
    script = script.replace("HASH6", demo_hash(store)[:6])
    path = tmp_path / f"complete.{shell}"
    path.write_text(script, encoding="utf-8")
    (tmp_path / "none.toml").write_text("")
    (tmp_path / "stack.toml").write_text("")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HDENV_STORE": str(store), "HDENV_CONFIG": str(tmp_path / "none.toml"), "TERM": "dumb"}
    proc = subprocess.run([require_tool(shell), *flags, str(path)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        label, _, words = line.partition("|")
        results[label.strip()] = set(words.split())
    return results


def demo_hash(store: Path) -> str:
    return Path(os.path.realpath(store / "names" / "demo" / "current")).name


def expected(store: Path, *, filtered: bool) -> dict[str, set[str]]:
    """What each labelled request must offer; `filtered`: the shell itself applies the prefix.

    Names and NAME/N come first and alone: a profile hash only once six of its
    characters are typed. `unload` offers what is loaded and not yet on the line.
    """
    refs = {"demo", "demo/1", "other", "other/1"}
    packages = {"pkg-demo", "pkg-demo/1", "pkg-other", "pkg-other/1"}  # load takes them too
    want = {
        "cmds": {name for name, cmd in cli_group.all_commands(click.Context(cli_group)).items()
                 if not cmd.hidden},
        "init": {"bash", "zsh", "fish", "tcsh"},
        "profile": {"generations", "rollback", "prune"},
        "list": {"artifacts", "profiles", "names"},
        "load": refs | packages,
        "show": refs,
        "load-hash": {demo_hash(store)},
        "unload": {"demo/1", "other/1"},
        "unload-more": {"other/1"},
        "build": {"stack.toml"},
    }
    assert not refs & profile_hashes(store)
    if filtered:
        want |= {"lo": {"load", "loaded"}, "load-de": {"demo", "demo/1"}}
    else:  # zsh matches the typed prefix itself: the hash is among the words only now
        want["load-hash"] |= refs | packages
    return want


def test_bash(store: Path, tmp_path: Path) -> None:
    script = r'''eval "$(hdenv init bash)"
export PATH=/usr/bin:/bin
t() {
    local label=$1; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
    __hdenv_complete
    echo "$label| ${COMPREPLY[*]}"
}
t cmds hdenv ""
t lo hdenv lo
t init hdenv init ""
t profile hdenv profile ""
t load hdenv load ""
t load-de hdenv load de
t show hdenv show ""
t list hdenv list ""
t load-hash hdenv load HASH6
t build hdenv build sta
hdenv load demo other
t unload hdenv unload ""
t unload-more hdenv unload demo ""
'''
    assert run("bash", script, store, tmp_path) == expected(store, filtered=True)


def test_fish(store: Path, tmp_path: Path) -> None:
    script = r'''hdenv init fish | source
set -gx PATH /usr/bin /bin
function t
    echo $argv[1]"|" (string split -f1 \t -- (complete -C $argv[2]))
end
t cmds 'hdenv '
t lo 'hdenv lo'
t init 'hdenv init '
t profile 'hdenv profile '
t load 'hdenv load '
t load-de 'hdenv load de'
t show 'hdenv show '
t list 'hdenv list '
t load-hash 'hdenv load HASH6'
t build 'hdenv build sta'
hdenv load demo other
t unload 'hdenv unload '
t unload-more 'hdenv unload demo/1 '
'''
    assert run("fish", script, store, tmp_path) == expected(store, filtered=True)


def test_zsh(store: Path, tmp_path: Path) -> None:
    script = r'''compdef() { : }
compadd() {
    if [[ $1 == -a ]]; then print -rn -- " ${(P)2}"; else print -rn -- " ${@:#--}"; fi
}
_files() { print -rn -- " stack.toml"; }  # zsh's own file completion, outside the line editor
eval "$(hdenv init zsh)"
export PATH=/usr/bin:/bin
t() {
    local label=$1; shift
    words=("$@"); CURRENT=$#
    print -rn -- "$label|"; _hdenv; print
}
t cmds hdenv ""
t init hdenv init ""
t profile hdenv profile ""
t load hdenv load ""
t show hdenv show ""
t list hdenv list ""
PREFIX=HASH6 t load-hash hdenv load HASH6
t build hdenv build sta
hdenv load demo other
t unload hdenv unload ""
t unload-more hdenv unload demo ""
'''
    assert run("zsh", script, store, tmp_path) == expected(store, filtered=False)


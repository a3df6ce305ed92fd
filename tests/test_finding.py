"""whatis, help, keyword (issue 22 item 6); use/unuse and hidden profiles (item 8).

Through the real shell function in bash, on stores built by `hdenv build`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_shell_function import base_env, bash, write_init

HDENV = str(Path(sys.executable).parent / "hdenv")
SCRIPT = """script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho hello from {name}\\n' > "$PREFIX/bin/hello-{name}"
chmod +x "$PREFIX/bin/hello-{name}"
'''
"""
STACK = f"""
[packages.zlibby]
version = "1.3"
description = "A tiny compression library"
homepage = "https://example.org/zlibby"
help = '''
Link with -lzlibby. Thread-safe since 1.2.'''
{SCRIPT.format(name="zlibby")}
[packages.tool]
version = "2"
{SCRIPT.format(name="tool")}
[profiles.science]
packages = ["zlibby"]
description = "Numerical tools for the group"
help = "Ask the HPC desk about quotas before large runs."
homepage = "https://example.org/science"

[profiles.secret]
packages = ["tool"]
hidden = true
"""
THEIRS = f"""
[packages.theirpkg]
version = "1"
{SCRIPT.format(name="theirs")}
[profiles.theirs]
packages = ["theirpkg"]
description = "A colleague's stack"
"""


def _build(store: Path, home: Path, text: str, name: str) -> None:
    (home / name).write_text(text)
    proc = subprocess.run([HDENV, "build", str(home / name)], env=base_env(home, store),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


def _setup(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    (tmp_path / "none.toml").write_text("")
    store = tmp_path / "store"
    _build(store, tmp_path, STACK, "stack.toml")
    env = base_env(tmp_path, store)
    return store, env, write_init("bash", env)


def test_6_whatis_help_keyword_find_by_text(tmp_path: Path) -> None:
    _store, env, init = _setup(tmp_path)
    script = f""". {init}
echo WHATIS; hdenv whatis science; hdenv whatis zlibby/1.3
echo HELP; hdenv help science; hdenv help zlibby
echo KW1; hdenv keyword compression
echo KW2; hdenv keyword QUOTAS
echo KW3; hdenv keyword thread-safe
hdenv keyword nothing-at-all; echo "miss=$?"
hdenv whatis nosuch; echo "unknown=$?"
"""
    proc = bash(script, env, tmp_path)
    out = proc.stdout
    whatis = out.split("WHATIS\n")[1].split("HELP\n")[0]
    assert whatis == ("science/1: Numerical tools for the group\n"
                      "zlibby/1.3: A tiny compression library\n"), out
    helped = out.split("HELP\n")[1].split("KW1\n")[0]
    assert "homepage: https://example.org/science" in helped
    assert "Ask the HPC desk about quotas before large runs." in helped
    assert "Link with -lzlibby. Thread-safe since 1.2." in helped
    assert "load it with: hdenv load science" in helped
    assert out.split("KW1\n")[1].split("KW2")[0] == "zlibby/1.3: A tiny compression library\n"
    assert out.split("KW2\n")[1].startswith("science/1: Numerical tools for the group\n")
    assert out.split("KW3\n")[1].startswith("zlibby/1.3: ")
    assert "miss=2\n" in out and "unknown=2\n" in out
    assert "hdenv: error: nothing mentions 'nothing-at-all'" in proc.stderr
    assert "Traceback" not in proc.stderr



def test_6_keyword_lists_only_the_matching_build_of_a_version_with_spiders_label(
        tmp_path: Path) -> None:
    """Two builds of one version, one described as fast: `keyword fast` lists that one
    alone (only matching builds are named, each read once), labelled as `spider` labels
    it among both; `keyword library` lists both."""
    (tmp_path / "none.toml").write_text("")
    store = tmp_path / "store"
    for flavour, about in (("first", "Plain library"), ("second", "Fast library")):
        _build(store, tmp_path, f"""
[packages.vlib]
version = "1"
description = "{about}"
{SCRIPT.format(name=flavour)}
[profiles.{flavour}]
packages = ["vlib"]
""", f"{flavour}.toml")
    env = base_env(tmp_path, store)
    init = write_init("bash", env)
    out = bash(f""". {init}
echo FAST; hdenv keyword fast; echo BOTH; hdenv keyword library; echo SPIDER
hdenv spider vlib/1
""", env, tmp_path).stdout
    fast = out.split("FAST\n")[1].split("BOTH\n")[0].splitlines()
    both = out.split("BOTH\n")[1].split("SPIDER\n")[0].splitlines()
    spider = out.split("SPIDER\n")[1]
    assert len(fast) == 1 and fast[0].endswith(": Fast library"), out
    assert len(both) == 2 and fast[0] in both, out
    assert any(b.endswith(": Plain library") for b in both), out
    for line in both:  # vlib/1 [LABEL]: ..., the label spider gives that build
        ref = line.split(": ")[0]
        assert ref.startswith("vlib/1 [") and ref.split("[")[1].rstrip("]") in spider, out


def test_8_hidden_profiles_left_out_unless_asked(tmp_path: Path) -> None:
    _store, env, init = _setup(tmp_path)
    script = f""". {init}
echo AVAIL; hdenv avail -t
echo SHOWN; hdenv avail -t --show-hidden
echo REFS; hdenv avail --refs
echo SPIDER; hdenv spider tool; echo "spider=$?"; hdenv spider --show-hidden -t tool
hdenv load secret && hello-tool
"""
    proc = bash(script, env, tmp_path)
    out = proc.stdout
    assert out.split("AVAIL\n")[1].split("SHOWN")[0] == "science/1\n", out
    assert out.split("SHOWN\n")[1].split("REFS")[0] == "science/1\nsecret/1\n", out
    assert "secret" not in out.split("REFS\n")[1].split("SPIDER")[0]
    assert "spider=2\n" in out and out.split("spider=2\n")[1].startswith("tool/2\n")
    assert out.endswith("hello from tool\n"), proc.stderr  # hidden, still loadable


def test_8_use_and_unuse_a_store_for_this_shell(tmp_path: Path) -> None:
    store, env, init = _setup(tmp_path)
    theirs = tmp_path / "theirs"
    _build(theirs, tmp_path, THEIRS, "theirs.toml")
    script = f""". {init}
hdenv load theirs; echo "before=$?"
hdenv use {theirs}; echo "HDENV_USE=$HDENV_USE"
hdenv avail | grep -c theirs/1
hdenv load theirs && hello-theirs
bash -c 'hdenv avail -t' | grep -c theirs
hdenv unload theirs; hdenv unuse {theirs}; echo "after=${{HDENV_USE-unset}}"
hdenv avail -t
hdenv use {tmp_path}/nowhere; echo "bad=$?"
"""
    proc = bash(script, env, tmp_path)
    out = proc.stdout
    assert "before=2\n" in out
    assert f"HDENV_USE={theirs}\n1\nhello from theirs\n1\nafter=unset\nscience/1\n" in out, \
        (out, proc.stderr)
    assert "bad=2\n" in out and "is not an hdenv store" in proc.stderr


def test_6_the_function_answers_whatis_help_keyword_as_the_full_program(
        tmp_path: Path) -> None:
    """The function prints these on its fast path (no click); same words, errors, codes."""
    _store, env, init = _setup(tmp_path)
    for words in (["whatis", "science"], ["whatis", "zlibby/1.3"], ["help", "zlibby"],
                  ["keyword", "QUOTAS"], ["keyword", "nothing-at-all"], ["whatis", "nosuch"],
                  ["help", "science", "extra"]):
        line = " ".join(words)
        via_function = bash(f". {init}\nhdenv {line}", env, tmp_path)
        full = subprocess.run([HDENV, *words], env=env, capture_output=True, text=True)
        assert (via_function.returncode, via_function.stdout, via_function.stderr) == (
            full.returncode, full.stdout, full.stderr), line

"""Lua and Tcl literals read back as the exact value by the real interpreters."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require

from hdenv.modules.quote import lua_escaped, lua_quote, tcl_quote

HOSTILE = [
    "", "plain", "with space", "'\";&&e-$ èрт🚒♞中片-j", "]]", "]=]", "]==]", "a]", "a]=",
    "[[", "[=[x]=]", "\nleading newline", "trailing\n", "\r\n", "cr\ronly", "{", "}", "}{",
    "{a}", "{*}x", "\\", "\\}", "a\\", "x\\\ny", "$HOME", "[exec id]", "$(id) `id`",
    "tab\there", "\x01\x1f\x7f", "#comment", ";", "-x", "--set-if-undef",
]


def _random_values(count: int) -> list[str]:
    rng = random.Random(12)
    alphabet = [chr(c) for c in range(1, 128)] + list("èрт🚒♞中片") + ["]=", "]]", "{", "}"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
            for _ in range(count)]


VALUES = HOSTILE + _random_values(300)


def lua_exe() -> str:
    found = shutil.which("lua") or shutil.which("lua5.3") or shutil.which("lua5.1")
    require(found is not None, "no lua interpreter (Lmod brings lua5.3)")
    assert found is not None
    return found


def read_back(cmd: list[str], program: Path) -> list[str]:
    out = subprocess.run([*cmd, str(program)], capture_output=True, check=True,
                         env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}).stdout
    return out.decode("utf-8").split("\0")[:-1]


@pytest.mark.parametrize("quote", [lua_quote, lua_escaped])
def test_lua_reads_back_every_value(quote: object, tmp_path: Path) -> None:
    program = tmp_path / "values.lua"
    program.write_text("".join(f'io.write({quote(v)}, "\\0")\n' for v in VALUES),  # type: ignore[operator]
                       encoding="utf-8")
    assert read_back([lua_exe()], program) == VALUES


def test_tcl_reads_back_every_value(tmp_path: Path) -> None:
    require(shutil.which("tclsh") is not None, "tclsh is not installed")
    program = tmp_path / "values.tcl"
    lines = ["fconfigure stdout -encoding utf-8 -translation lf"]
    lines += [f"puts -nonewline {tcl_quote(v)}; puts -nonewline \\0" for v in VALUES]
    program.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_back(["tclsh"], program) == VALUES


def test_tcl_words_are_exact_in_a_proc_body_too(tmp_path: Path) -> None:
    """ModulesHelp puts its text from inside a braced proc body."""
    require(shutil.which("tclsh") is not None, "tclsh is not installed")
    program = tmp_path / "help.tcl"
    body = "".join(f"    puts -nonewline {tcl_quote(v)}; puts -nonewline \\0\n" for v in VALUES)
    program.write_text("fconfigure stdout -encoding utf-8 -translation lf\n"
                       f"proc show {{}} {{\n{body}}}\nshow\n", encoding="utf-8")
    assert read_back(["tclsh"], program) == VALUES


def test_lua_literal_forms() -> None:
    assert lua_quote("PATH") == '"PATH"'
    assert lua_quote("a]]b") == "[=[a]]b]=]"
    assert lua_quote("a]=]b") == "[==[a]=]b]==]"
    assert lua_quote("x]") == "[=[x]]=]"
    assert lua_quote("x]=") == "[==[x]=]==]"  # `]=]` would close inside the value
    assert lua_quote("\nx") == "[=[\n\nx]=]"
    assert lua_quote("a\rb").startswith('"')


def test_tcl_literal_forms() -> None:
    assert tcl_quote("PATH") == "PATH"
    assert tcl_quote("") == "{}"
    assert tcl_quote("a b $c [d]") == "{a b $c [d]}"
    assert tcl_quote("}{") == "\\}\\{"
    assert tcl_quote("a\\b") == "a\\\\b"

"""tomlfile.LineIndex: the line of each key, read over the whole text at once, is the line
the straightforward reading a line at a time finds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import tomli

from hdenv.tomlfile import LineIndex

REPO = Path(__file__).resolve().parent.parent

STACK = '''\
[stack]
name = "x"

[packages.app]
version = "1.0"
script = """
[packages.fake]
not = "a key"
"""
env = { CFLAGS = "-O2" }

[packages."lib.b"]
deps = ["app"]
notes = \'\'\'one
still = "inside", and "\"\"\" here
\'\'\'
after = 1
  [[packages."lib.b".sources]]
  url = "x"
'''


def by_lines(text: str) -> dict[tuple[str, ...], int]:
    """The reading a line at a time (`str.splitlines`), as the index does for a text
    with line breaks other than \\n."""
    index = LineIndex.__new__(LineIndex)
    index.lines = {}
    index._scan_lines(text)
    return index.lines


def test_each_key_has_its_line_and_a_multi_line_string_hides_what_it_holds() -> None:
    assert tomli.loads(STACK)["packages"]["lib.b"]["notes"].startswith("one\nstill")
    index = LineIndex(STACK)
    assert index.lines == {
        ("stack",): 1, ("stack", "name"): 2,
        ("packages", "app"): 4, ("packages", "app", "version"): 5,
        ("packages", "app", "script"): 6, ("packages", "app", "env"): 10,
        ("packages", "lib.b"): 12, ("packages", "lib.b", "deps"): 13,
        ("packages", "lib.b", "notes"): 14, ("packages", "lib.b", "after"): 17,
        ("packages", "lib.b", "sources"): 18, ("packages", "lib.b", "sources", "url"): 19,
    }
    assert index.line("packages", "app", "env", "CFLAGS") == 10  # the longest prefix known
    assert index.line("nothing") == 1


@pytest.mark.parametrize("path", sorted(
    p for pattern in ("examples/*/stack.toml", "recipes/*.toml")
    for p in REPO.glob(pattern)), ids=lambda p: str(p.relative_to(REPO)))
def test_the_repository_s_toml_files_are_indexed_as_line_by_line(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert LineIndex(text).lines == by_lines(text) != {}


PIECES = ['[a]', '[[b.c]]', ' [ "x.y" . z ] # c', 'k = 1', 'k.j = 2', '"q k" = 3',
          "'l' . m = 4", 'm = """', 'n = """x"""', "o = '''", 'p = \'\'\'a\'\'\' """', '"""',
          "'''", 'x """ y """ z """', 'text', '', '# comment', 'a = [', ']', ' =',
          'r = "a""""', '\tt\t=\t5', 'u = """ \'\'\'', 'ü = 1', '[ bad', 'v="x"',
          '\u3000w = 1', 'a.b.c = """ """ """', "'''x'''", '"a\nb" = 1']


def test_any_arrangement_of_tricky_lines_is_indexed_as_line_by_line() -> None:
    """Headers, dotted and quoted keys, strings opened and closed on one line or not,
    odd quote counts, Unicode spaces: 20,000 texts from a fixed seed."""
    rng = random.Random(25)
    for _ in range(20_000):
        text = "\n".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14)))
        text += "\n" if rng.random() < 0.5 else ""
        assert LineIndex(text).lines == by_lines(text), text


@pytest.mark.parametrize("newline", ["\r\n", "\u2028", "\x0c"])
def test_other_line_breaks_count_as_str_splitlines_counts_them(newline: str) -> None:
    text = f"[a]{newline}x = 1{newline}[b]\ny = 2\n"
    assert LineIndex(text).lines == {("a",): 1, ("a", "x"): 2, ("b",): 3, ("b", "y"): 4}

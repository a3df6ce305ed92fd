"""configscan reads the plain subset of TOML exactly as tomllib does, and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hdenv.configscan import check_whole, read_config, scan
from hdenv.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUPPORTED = [
    "",
    "# only a comment\n",
    'store = "/data/hdenv"\n',
    "store = '/data/my store/$HOME \"q\"'\n",
    'store = "/dätä/文字/🚒" # trailing comment, with "quotes" and # signs\n',
    'store = "/a#b"\n',
    '\ufeffstore = "/bom"\n',
    'store = "/crlf"\r\njobs = 4\r\n',
    '  store\t=\t"/tabs"  \n\n\n',
    "jobs = 0\nbuild-jobs = +3\nsandbox = true\n",
    "sandbox = false",
    'mirrors = ["/m1", \'https://m2/x\']\n',
    'mirrors = [\n  "/m1",  # first\n  "/m2",\n  # a comment line\n]\nstore = "/s"\n',
    "mirrors = []\n",
    "mirrors = [ ]\n",
    'mirrors = ["a", 1, true]\n',
    "jobs = -0\n",
]

UNSUPPORTED = [
    'store = "C:\\\\hdenv"\n',  # escapes
    'store = """/multi"""\n',
    "store = '''/multi'''\n",
    "[section]\nstore = '/x'\n",
    'a.b = "dotted"\n',
    '"store" = "/quoted-key"\n',
    "jobs = 1.5\n",
    "jobs = 1_000\n",
    "when = 2024-01-01\n",
    "x = inf\n",
    "mirrors = [[\"nested\"]]\n",
    "x = { a = 1 }\n",
]

INVALID_TOML = [
    "store =\n",
    'store = "/unterminated\n',
    "store = '/unterminated\n",
    'store = "/a" "/b"\n',
    'store = "/a"\nstore = "/b"\n',
    "jobs = 07\n",
    "mirrors = [\"a\" \"b\"]\n",
    "mirrors = [\"a\",\n",
    "store\n",
    'store = "/tab\x01"\n',
    "# bad \x01 control\n",
    "= 3\n",
    'store = "/a"\rjobs = 1\n',
    "sandbox = True\n",
]


@pytest.mark.parametrize("text", SUPPORTED)
def test_reads_the_subset_as_tomllib_does(text: str) -> None:
    assert scan(text) == tomllib.loads(text.lstrip("\ufeff"))


@pytest.mark.parametrize("text", UNSUPPORTED)
def test_leaves_valid_but_unusual_toml_to_tomllib(text: str) -> None:
    tomllib.loads(text)  # valid TOML ...
    assert scan(text) is None  # ... that this module does not claim to read


@pytest.mark.parametrize("text", INVALID_TOML)
def test_never_accepts_what_toml_rejects(text: str) -> None:
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    assert scan(text) is None


def test_read_config_errors_name_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert read_config(str(config), explicit=False) == {}
    with pytest.raises(UserError, match="config file does not exist"):
        read_config(str(config), explicit=True)
    config.write_bytes(b"store = '/caf\xe9'\n")  # Latin-1, not UTF-8
    with pytest.raises(UserError, match="not UTF-8 text") as exc:
        read_config(str(config), explicit=True)
    assert exc.value.file == str(config)
    config.write_text("store = '/x'\n[table]\nk = 1.5\n")  # tomllib's to read
    with pytest.raises(UserError, match="unknown setting.s. table"):
        read_config(str(config), explicit=True)


def test_host_tables_end_the_scan_without_tomllib(tmp_path: Path) -> None:
    """The load path reads the top-level settings; `[host.NAME]` tables are for builds."""
    text = 'store = "/s"\njobs = 2\n\n[host.gcc]\nprograms = ["gcc"]\nfamily = "compiler"\n'
    assert scan(text) == {"store": "/s", "jobs": 2, "host": {}}
    assert scan('[hosts]\nx = 1\n') is None  # not a host table: tomllib's to judge
    config = tmp_path / "config.toml"
    config.write_text(text + "[typo]\nk = 1\n")
    assert read_config(str(config), explicit=True)["store"] == "/s"
    with pytest.raises(UserError, match="unknown setting.s. typo") as exc:
        check_whole(str(config))
    assert exc.value.file == str(config)

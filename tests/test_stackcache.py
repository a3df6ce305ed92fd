"""Big stack files kept parsed (build/stackcache.py): the same reading, never stale,
never trusted, and errors still name their line."""

from __future__ import annotations

import json
import os
import posix
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli

from hdenv.build import stackcache
from hdenv.build.stackfile import load_stack
from hdenv.errors import UserError
from hdenv.tomlfile import LineIndex

HDENV = str(Path(sys.executable).parent / "hdenv")


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache directory, set where xdg.py reads it in-process (`posix.environ`)."""
    home = tmp_path / "cache"
    monkeypatch.setitem(posix.environ, b"XDG_CACHE_HOME", os.fsencode(home))
    return home


def big_stack(packages: int = 600, extra: str = "") -> str:
    """A chain of packages, well over stackcache.MIN_BYTES."""
    parts = ['[stack]\nname = "big"\n\n[parameters]\nflags = "-O2"\n']
    for i in range(packages):
        deps = f'deps = ["p{i - 1}"]\n' if i else ""
        parts.append(f'\n[packages.p{i}]\nversion = "1.{i}"\n{deps}'
                     f'env = {{ FLAGS = "{{{{ flags }}}}" }}\n'
                     f"script = 'echo {i} > \"$PREFIX/p{i}\"'\n")
    text = "".join(parts) + extra
    assert len(text) >= stackcache.MIN_BYTES
    return text


def saved(cache_home: Path) -> list[Path]:
    return sorted((cache_home / "hdenv").glob("stack-*.json"))


def read_once_and_alter(tmp_path: Path, cache_home: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A big stack read once, its saved parse's file, and that parse with p7 at version
    7.7: what only a read that believed a saved parse could return."""
    path = tmp_path / "stack.toml"
    path.write_text(big_stack())
    load_stack(path)
    [entry] = saved(cache_home)
    kept = json.loads(entry.read_text())
    kept["data"]["packages"]["p7"]["version"] = "7.7"
    return path, entry, kept


def test_a_big_stack_reads_the_same_from_its_saved_parse(tmp_path: Path,
                                                         cache_home: Path) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(big_stack())
    first = stackcache.read(path, "stack file")
    [entry] = saved(cache_home)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    second = stackcache.read(path, "stack file")
    assert second[0] == first[0] == tomli.loads(path.read_text())
    assert second[2].lines == first[2].lines == LineIndex(path.read_text()).lines
    assert load_stack(path).variants == load_stack(path).variants


def test_the_saved_parse_is_what_is_read_until_the_text_changes(tmp_path: Path,
                                                               cache_home: Path) -> None:
    path, entry, kept = read_once_and_alter(tmp_path, cache_home)
    entry.write_text(json.dumps(kept))
    assert load_stack(path).variants[0].packages["p7"].version == "7.7"

    path.write_text(big_stack().replace('version = "1.7"', 'version = "1.8"'))
    assert load_stack(path).variants[0].packages["p7"].version == "1.8"
    assert json.loads(entry.read_text())["data"]["packages"]["p7"]["version"] == "1.8"
    assert saved(cache_home) == [entry]  # an edit replaces the stack's entry


@pytest.mark.parametrize("planted", [
    b"not json", b"[1, 2]", b'{"key": "another text", "data": {}, "lines": {}}',
    "lines of another type", "a symlink"])
def test_a_malformed_or_planted_saved_parse_is_a_miss(tmp_path: Path, cache_home: Path,
                                                      planted: bytes | str) -> None:
    path, entry, kept = read_once_and_alter(tmp_path, cache_home)
    if planted == "lines of another type":
        kept["lines"] = {k: str(v) for k, v in kept["lines"].items()}
        entry.write_text(json.dumps(kept))
    elif planted == "a symlink":  # a link to a file that would be believed
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(kept))
        entry.unlink()
        entry.symlink_to(target)
    else:
        assert isinstance(planted, bytes)
        entry.write_bytes(planted)
    assert load_stack(path).variants[0].packages["p7"].version == "1.7"
    if planted != "a symlink":  # rewritten whole by the parse that replaced it
        assert json.loads(entry.read_text())["key"] == kept["key"]


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                    reason="giving a file to another user takes root")
def test_a_saved_parse_another_user_owns_is_a_miss(tmp_path: Path, cache_home: Path) -> None:
    """`sudo hdenv build` keeps $HOME: root must not read what the user left there."""
    path, entry, kept = read_once_and_alter(tmp_path, cache_home)
    entry.write_text(json.dumps(kept))
    os.chown(entry, 65534, 65534)
    assert load_stack(path).variants[0].packages["p7"].version == "1.7"
    assert entry.stat().st_uid == os.geteuid()  # replaced by this user's own


def test_errors_name_the_same_line_from_a_saved_parse(tmp_path: Path,
                                                      cache_home: Path) -> None:
    path = tmp_path / "stack.toml"
    text = big_stack().replace('[packages.p500]\nversion = "1.500"\n',
                               '[packages.p500]\nversion = "1.500"\nflavour = "x"\n')
    path.write_text(text)
    line = text.splitlines().index('flavour = "x"') + 1
    errors = []
    for _ in range(2):
        with pytest.raises(UserError) as info:
            load_stack(path)
        errors.append(info.value)
    assert len(saved(cache_home)) == 1  # the TOML was good: the second read was the saved one
    assert [(e.line, e.message) for e in errors] == [(line, errors[0].message)] * 2
    assert "flavour" in errors[0].message


def test_a_syntax_error_is_one_line_and_saves_nothing(tmp_path: Path, cache_home: Path) -> None:
    path = tmp_path / "stack.toml"
    text = big_stack(extra='\n[packages.broken\nversion = "1"\n')
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_stack(path)
    assert info.value.file == str(path)
    assert info.value.line == len(text.splitlines()) - 1
    assert saved(cache_home) == []


def test_dates_and_small_files_are_parsed_each_time(tmp_path: Path, cache_home: Path) -> None:
    dated = tmp_path / "dated.toml"
    dated.write_text(big_stack(extra="\n[extra]\nwhen = 2026-12-07T08:00:00Z\n"))
    assert stackcache.read(dated, "stack file")[0] == tomli.loads(dated.read_text())
    small = tmp_path / "small.toml"
    small.write_text(big_stack()[: stackcache.MIN_BYTES // 2].rpartition("\n[")[0])
    assert stackcache.read(small, "stack file")[0] == tomli.loads(small.read_text())
    assert saved(cache_home) == []


def test_a_dry_run_sees_an_edit_made_between_runs(tmp_path: Path) -> None:
    """The real program, twice, with the stack edited in between."""
    path = tmp_path / "stack.toml"
    path.write_text(big_stack())
    env = {**os.environ, "HDENV_STORE": str(tmp_path / "store"), "HDENV_CONFIG": "/dev/null",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def dry_run() -> str:
        done = subprocess.run([HDENV, "build", "--dry-run", str(path)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    before = dry_run()
    assert len(saved(tmp_path / "cache")) == 1
    assert dry_run() == before
    path.write_text(big_stack().replace('version = "1.599"', 'version = "2.0"'))
    after = dry_run()
    assert "p599/2.0/" in after and "p599/2.0/" not in before

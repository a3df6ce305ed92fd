"""Input problems that planning would hit are found before the store is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from hdenv.build.preflight import preflight
from hdenv.build.stackfile import load_stack
from hdenv.errors import UserError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def test_missing_path_source_has_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[packages.a]\nversion = "1"\nscript = "true"\n'
                           'sources = [{ path = "nowhere" }]\n')
    with pytest.raises(UserError) as info:
        preflight(load_stack(path))
    assert info.value.render() == (f"{path}:4: packages.a: source path "
                                   f"{str(tmp_path / 'nowhere')!r} does not exist")


def test_missing_host_program_has_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '\n[host.x]\nprograms = ["sh", "surely-not-installed-zz"]\n')
    with pytest.raises(UserError) as info:
        preflight(load_stack(path))
    assert info.value.render().startswith(f"{path}:2: host.x: host program")


def test_good_stack_passes(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "d" / "inner").symlink_to("f")
    path = write(tmp_path, '[host.x]\nprograms = ["sh"]\n[packages.a]\nversion = "1"\n'
                           'sources = [{ path = "d" }, { path = "d/f" }]\n')
    preflight(load_stack(path))

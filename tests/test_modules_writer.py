"""Replacing a modulefile tree: one swap, no leftovers, never someone else's directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hdenv.errors import UserError
from hdenv.modules import writer


def listing(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != writer.MARKER}


def siblings(root: Path) -> list[str]:
    return sorted(p.name for p in root.parent.iterdir() if p.name != root.name)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-fallback"])
def test_a_rerun_replaces_everything(exchange: bool, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not exchange:
        monkeypatch.setattr(writer, "_exchange", lambda a, b: False)
    out = tmp_path / "mods"
    writer.replace_tree(out, {"Core/a/1.lua": "old a", "Core/b/1.lua": "b"}, ["Compiler/x/1"],
                        {})
    inode = os.stat(out).st_ino
    writer.replace_tree(out, {"Core/a/2.lua": "new a"}, [], {"format": "lmod"})
    assert listing(out) == {"Core/a/2.lua": "new a"}  # b and Compiler/ are gone
    assert not (out / "Compiler").exists()
    assert os.stat(out).st_ino != inode  # a new directory, swapped in
    assert siblings(out) == []  # neither the old tree nor the aside one is left
    assert (out / writer.MARKER).is_file()


def test_exchange_is_used_where_the_kernel_has_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "in-a").touch()
    if not writer._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported here")
    assert (b / "in-a").exists() and not (a / "in-a").exists()


def test_a_failure_while_writing_leaves_the_old_tree(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "mods"
    writer.replace_tree(out, {"Core/a/1.lua": "old"}, [], {})

    def broken(root: Path, *args: object) -> None:
        (root / "Core").mkdir()
        (root / "Core" / "half.lua").write_text("half")
        raise KeyboardInterrupt  # Ctrl-C halfway through writing

    monkeypatch.setattr(writer, "_write", broken)
    with pytest.raises(KeyboardInterrupt):
        writer.replace_tree(out, {"Core/a/2.lua": "new"}, [], {})
    assert listing(out) == {"Core/a/1.lua": "old"}
    assert siblings(out) == []


def test_foreign_directories_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("mine")
    with pytest.raises(UserError, match="not written by hdenv modulefiles"):
        writer.replace_tree(home, {"Core/a/1.lua": "x"}, [], {})
    assert (home / ".bashrc").read_text() == "mine"
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(UserError):
        writer.replace_tree(afile, {}, [], {})
    empty = tmp_path / "empty"
    empty.mkdir()
    writer.replace_tree(empty, {"Core/a/1.lua": "x"}, [], {})
    assert listing(empty) == {"Core/a/1.lua": "x"}


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        writer.replace_tree(tmp_path / "mods", {"Core/a/1.lua": "x"}, [], {})
    finally:
        os.umask(old)
    assert (tmp_path / "mods" / "Core" / "a" / "1.lua").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "mods").stat().st_mode & 0o777 == 0o750

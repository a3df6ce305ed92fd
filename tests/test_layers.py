"""The layer order in pyproject.toml's import-linter contracts holds, and bites.

The contract is only worth having if it fails on the mistakes it exists for,
so each test below plants one in a copy of the package (an upward import
hidden inside a function, click in the core, a subpackage nobody placed)
and checks that `lint-imports` names it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    require(LINT.exists(), "import-linter is not installed in this environment")
    # lint-imports puts its working directory first on sys.path, so the copy
    # under test wins over an installed hdenv.
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_checkout_keeps_every_contract() -> None:
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "hdenv", tmp_path / "hdenv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code)


def test_an_upward_import_inside_a_function_breaks_the_layers(copy: Path) -> None:
    _append(copy / "hdenv/store/layout.py",
            "def _sneaky() -> None:\n    from ..profile import profiles  # noqa\n")
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "layers: each part of hdenv imports only the parts below it BROKEN" in proc.stdout
    assert "hdenv.store.layout -> hdenv.profile.profiles" in proc.stdout


def test_an_import_between_independent_siblings_breaks_the_layers(copy: Path) -> None:
    _append(copy / "hdenv/exchange/pack.py", "from ..profile import farm  # noqa\n")
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "hdenv.exchange.pack -> hdenv.profile.farm" in proc.stdout


def test_click_outside_the_cli_breaks_the_forbidden_contract(copy: Path) -> None:
    _append(copy / "hdenv/shell/catalog.py", "def _echo() -> None:\n    import click  # noqa\n")
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "click belongs to the command line: the core knows nothing of it BROKEN" in proc.stdout
    assert "hdenv.shell.catalog -> click" in proc.stdout


def test_a_subpackage_left_out_of_the_order_is_reported(copy: Path) -> None:
    (copy / "hdenv/newthing").mkdir()
    (copy / "hdenv/newthing/__init__.py").write_text("")
    proc = _lint(copy)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "hdenv.newthing" in proc.stdout + proc.stderr

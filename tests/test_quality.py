"""The code stays ruff- and mypy-clean: part of the test command, so CI enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "hdenv", "tests", "benchmarks"],
        ["mypy", "hdenv", "tests", "benchmarks"],
    ],
    ids=["ruff", "mypy"],
)
def test_static_checks(command: list[str]) -> None:
    tool = BIN / command[0]
    require(tool.exists(), f"{command[0]} is not installed in this environment")
    proc = subprocess.run([str(tool), *command[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

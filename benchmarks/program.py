"""The hdenv program the benchmarks start, and a word when it is an editable install.

An editable install (`pip install -e`) puts its import finder into `site`, which every
start of the full program then runs (pathlib, re and more: ~10 ms a start on this VM,
a third of `hdenv --version`). Users install with `pip install .` (the README) and never
pay it, so a figure measured through an editable install says hdenv is slower than it is.
The shell function's fast path (`python -I -S`) skips `site` and is the same either way.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

HDENV = str(Path(sys.executable).parent / "hdenv")


def editable() -> bool:
    """Whether hdenv is installed editable here (PEP 610's direct_url.json says so)."""
    try:
        text = metadata.distribution("hdenv").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    try:
        return bool(json.loads(text or "{}").get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def warn_if_editable(program: str = HDENV) -> None:
    """One line before the figures when they carry an editable install's start-up (of
    this venv's program: another one given to time, `--hdenv`, is not looked into)."""
    if program == HDENV and editable():
        print("note: hdenv is an editable install in this venv: every start of the program"
              " pays its import finder (~10 ms here), which `pip install .` (the README's"
              " install) does not; for the figures users see, run it from a venv made as"
              " the README makes one")

"""Locate the files shipped beside the code: templates/, shell/, completions/.

In a wheel they live in `hdenv/_data/<kind>/` (pyproject maps them there); in a
source checkout or editable install they are the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """`kind` is one of "templates", "shell", "completions"."""
    installed = _PACKAGE / "_data" / kind
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / kind

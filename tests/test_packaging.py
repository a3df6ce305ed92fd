"""The wheel lists its packages by hand (the data directories are mapped in from
the top of the repository, which automatic discovery cannot do), so a new
subpackage is easy to forget: a non-editable install, as CI makes, then lacks it
and every command that imports it fails."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_shipped_in_the_wheel() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(REPO).parts)
               for init in (REPO / "hdenv").rglob("__init__.py")}
    assert on_disk, "no packages found under hdenv/"
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    for mapped in ("hdenv._data.templates", "hdenv._data.shell", "hdenv._data.completions"):
        assert mapped in listed

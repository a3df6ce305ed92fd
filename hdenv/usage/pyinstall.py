"""Put the Python usage hook (usage/pyhook.py) into a profile's virtual environment.

The hook runs in the profile's interpreter, which may not have hdenv (or its
dependencies) importable, so the modules it needs are copied into
`site-packages/_hdenv_usage/` with the layout they have in hdenv: their
relative imports work unchanged, and a profile keeps working when hdenv is
upgraded or removed. The module -> distribution map is computed here, once:
a profile never changes, and reading every distribution's metadata at each
interpreter exit would cost what `importlib.metadata` costs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..fastjson import json_dumps

PACKAGE = "_hdenv_usage"
PTH = f"{PACKAGE}.pth"
# hdenv modules the hook imports, relative to the hdenv package
HOOK_MODULES = ("errors.py", "fastjson.py", "configscan.py", "configfiles.py",
                "usage/__init__.py", "usage/pyhook.py")
_HDENV = Path(__file__).resolve().parents[1]


def install(site_packages: Path, profile_hash: str, python: Path | None = None) -> None:
    """Copy the hook and its module map into `site_packages` (a real directory of the farm).

    With `python` (the profile's interpreter), the hook is byte-compiled now:
    in a store users may only read, Python could never cache it, and would
    compile it at every start.
    """
    site_packages.mkdir(parents=True, exist_ok=True)
    package = site_packages / PACKAGE
    (package / "usage").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    for rel in HOOK_MODULES:
        (package / rel).write_bytes((_HDENV / rel).read_bytes())
    data = {"hash": profile_hash, "modules": module_map(site_packages)}
    (package / "usage" / "modules.json").write_text(json_dumps(data) + "\n", encoding="utf-8")
    # `site` executes a .pth line that starts with "import"
    (site_packages / PTH).write_text(f"import {PACKAGE}.usage.pyhook as h; h.start()\n",
                                     encoding="utf-8")
    if python is not None:
        import subprocess

        subprocess.run([str(python), "-I", "-m", "compileall", "-q", str(package)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=120)


def _distribution_name(meta_dir: Path) -> str:
    """The Name: of a .dist-info/.egg-info, else what its directory name says."""
    for candidate in ("METADATA", "PKG-INFO"):
        try:
            with open(meta_dir / candidate, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Name:"):
                        return line.split(":", 1)[1].strip()
                    if not line.strip():
                        break
        except OSError:
            continue
    return meta_dir.name.split("-")[0]


def _top_levels(meta_dir: Path) -> set[str]:
    """Top-level import names a distribution installs: top_level.txt, else its RECORD."""
    try:
        text = (meta_dir / "top_level.txt").read_text(encoding="utf-8")
        return {line.strip().replace("/", ".").partition(".")[0]
                for line in text.splitlines() if line.strip()}
    except OSError:
        pass
    names: set[str] = set()
    try:
        text = (meta_dir / "RECORD").read_text(encoding="utf-8")
    except OSError:
        return names
    for row in text.splitlines():
        path = row.split(",", 1)[0]
        first = path.split("/", 1)[0]
        if (not first or first.startswith("..") or first.endswith((".dist-info", ".data"))
                or first == "__pycache__" or first.endswith(".pth")):
            continue
        if "/" in path:
            names.add(first)
        elif first.endswith(".py"):
            names.add(first[:-3])
        elif ".cpython-" in first or first.endswith((".so", ".pyd")):
            names.add(first.split(".", 1)[0])
    return names


def module_map(site_packages: Path) -> dict[str, str]:
    """Top-level module -> distribution name, for every distribution in `site_packages`."""
    out: dict[str, str] = {}
    try:
        entries = sorted(os.listdir(site_packages))
    except OSError:
        return out
    for entry in entries:
        if not entry.endswith((".dist-info", ".egg-info")):
            continue
        meta_dir = site_packages / entry
        if not meta_dir.is_dir():
            continue
        name = _distribution_name(meta_dir)
        for module in _top_levels(meta_dir):
            if module and not module.startswith("_hdenv"):
                out.setdefault(module, name)
    return out


def installed_map(site_packages: Path) -> dict[str, str]:
    """The map a profile's hook uses (for tests and `show`)."""
    with open(site_packages / PACKAGE / "usage" / "modules.json", encoding="utf-8") as f:
        return dict(json.load(f)["modules"])

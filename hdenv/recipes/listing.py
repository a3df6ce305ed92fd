"""What `hdenv recipes` and `hdenv info` print: rows and text, no click.

Text from a recipe (descriptions, help) may come from anyone's repository,
so it is stripped of control characters before it reaches a terminal.
"""

from __future__ import annotations

import json
from typing import Any

from ..sanitize import printable
from .recipe import Recipe
from .repos import Repositories


def rows(repos: Repositories, text: str = "") -> list[dict[str, Any]]:
    """One row per recipe whose name or description contains `text` (any case)."""
    needle = text.lower()
    out = []
    for recipe in repos.all():
        if needle and needle not in recipe.name.lower() and needle not in \
                recipe.description.lower():
            continue
        out.append({"name": recipe.name, "versions": recipe.versions,
                    "build-system": recipe.build_system, "description": recipe.description,
                    "provides": recipe.provides, "repository": recipe.origin,
                    "file": recipe.file})
    return out


def rows_text(found: list[dict[str, Any]], as_json: bool) -> str:
    if as_json:
        return json.dumps(found, indent=2) + "\n"
    if not found:
        return ""
    width = max(len(r["name"]) for r in found)
    several = len({r["repository"] for r in found}) > 1  # then say where each comes from
    lines = []
    for r in found:
        versions = ", ".join(r["versions"]) or "-"
        origin = f"  [{printable(r['repository'])}]" if several else ""
        lines.append(f"{r['name']:<{width}}  {versions:<10} {r['build-system']:<9}"
                     f" {printable(r['description'])}{origin}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A parameter value as the recipe writes it (true, not Python's True)."""
    return json.dumps(value) if isinstance(value, (bool, str)) else str(value)


def info_text(recipe: Recipe, as_json: bool) -> str:
    """One recipe whole: what it is, where it comes from, and the file itself."""
    if as_json:
        return json.dumps({"name": recipe.name, "file": recipe.file,
                           "repository": recipe.origin, "versions": recipe.versions,
                           "build-system": recipe.build_system,
                           "parameters": {k: {"default": p.default, "values": p.values,
                                              "description": p.description}
                                          for k, p in recipe.parameters.items()},
                           "recipe": recipe.data}, indent=2, default=str) + "\n"
    head = [f"{recipe.name}: {printable(recipe.description)}" if recipe.description
            else recipe.name,
            f"  from      {printable(recipe.file)}",
            f"  build     {recipe.build_system}"]
    if recipe.versions:
        head.append(f"  versions  {', '.join(recipe.versions)} (default {recipe.versions[0]})")
    for name, param in recipe.parameters.items():
        allowed = f" of {', '.join(map(_toml, param.values))}" if param.values else ""
        about = f": {printable(param.description)}" if param.description else ""
        head.append(f"  parameter {name} = {_toml(param.default)}{allowed}{about}")
    return "\n".join(head) + "\n\n" + printable(recipe.text).rstrip() + "\n"

"""Modulefile text from the Jinja2 templates in `templates/modules/`.

The templates hold the syntax; every value reaches them as data and leaves
through the format's quote filter (`q`), so no value is ever spliced into Lua
or Tcl as code. StrictUndefined turns a template typo into an error, not an
empty string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..resources import data_dir
from .content import DefaultMark, Module
from .quote import lua_quote, tcl_quote


@dataclass(frozen=True)
class Format:
    name: str
    extension: str  # of module files
    module_template: str
    default_file: str  # the one file that marks a name's default
    default_template: str
    quote: Callable[[str], str]


FORMATS = {
    "lmod": Format("lmod", ".lua", "module.lua.j2", ".modulerc.lua", "modulerc.lua.j2",
                   lua_quote),
    "tcl": Format("tcl", "", "module.tcl.j2", ".version", "version.tcl.j2", tcl_quote),
}


class Renderer:
    def __init__(self, fmt: Format):
        import jinja2

        self.format = fmt
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(data_dir("templates") / "modules")),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["q"] = fmt.quote
        self._module = self.env.get_template(fmt.module_template)
        self._default = self.env.get_template(fmt.default_template)

    def files(self, modules: list[Module], marks: list[DefaultMark]) -> dict[str, str]:
        """Relative path -> text for every file of the tree."""
        out = {f"{m.path}{self.format.extension}": self._module.render(m=m) for m in modules}
        for mark in marks:
            out[f"{mark.dir}/{self.format.default_file}"] = self._default.render(mark=mark)
        return out

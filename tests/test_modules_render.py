"""Rendered modulefiles parse in Lua and Tcl whatever the values; the wheel ships them."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require

from hdenv.modules.content import DefaultMark, Module
from hdenv.modules.render import FORMATS, Renderer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HOSTILE = "'\";&&e-$ èрт🚒♞中片-j ]] ]=] {a} } [exec id] \\"


def module() -> Module:
    return Module(path="Core/x/1", name="x", version="1", whatis=[f"Description: {HOSTILE}"],
                  help=f"line one\n{HOSTILE}\n", family="compiler", depends=["y/2"],
                  prepend=[("PATH", f"/st ore/{HOSTILE}/bin")], setenv=[("X_ROOT", HOSTILE)],
                  modulepath=[f"/m {HOSTILE}/Compiler/x/1"])


# Stand-ins for the module commands: each prints its name and arguments, NUL-separated.
LUA_STUBS = """
local function rec(name) return function(...)
  io.write(name) for _, a in ipairs({...}) do io.write("\\0", a) end io.write("\\0\\n\\0")
end end
for _, n in ipairs({"whatis", "help", "family", "depends_on", "prepend_path", "setenv",
                    "module_version"}) do _G[n] = rec(n) end
dofile(arg[1])
"""
TCL_STUBS = """
fconfigure stdout -encoding utf-8 -translation lf
proc rec {name args} {
  puts -nonewline $name
  foreach a $args { puts -nonewline "\\0$a" }
  puts -nonewline "\\0\\n\\0"
}
foreach n {module-whatis family depends-on prepend-path setenv} { interp alias {} $n {} rec $n }
source -encoding utf-8 [lindex $argv 0]
if {[info procs ModulesHelp] ne {}} {
  rename puts real_puts
  proc puts {channel text} {real_puts -nonewline "help\\0$text\\0\\n\\0"}
  ModulesHelp
} else { puts -nonewline "version\\0$ModulesVersion\\0\\n\\0" }
"""


def calls(output: str) -> list[list[str]]:
    return [c.strip("\0").split("\0") for c in output.split("\0\n\0") if c.strip("\0")]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_value_reaches_the_module_command_exactly(fmt: str, tmp_path: Path) -> None:
    m = module()
    files = Renderer(FORMATS[fmt]).files([m], [DefaultMark("Core/x", "x", "1")])
    assert sorted(files) == sorted([f"Core/x/1{FORMATS[fmt].extension}",
                                    f"Core/x/{FORMATS[fmt].default_file}"])
    if fmt == "lmod":
        interp = shutil.which("lua") or shutil.which("lua5.3")
        require(interp is not None, "lua is not installed (Lmod brings lua5.3)")
    else:
        interp = shutil.which("tclsh")
        require(interp is not None, "tclsh is not installed")
    stubs = tmp_path / ("stubs.lua" if fmt == "lmod" else "stubs.tcl")
    stubs.write_text(LUA_STUBS if fmt == "lmod" else TCL_STUBS, encoding="utf-8")
    got = []
    for rel in sorted(files):
        path = tmp_path / rel.replace("/", "_")
        path.write_text(files[rel], encoding="utf-8")
        run = subprocess.run([str(interp), str(stubs), str(path)], capture_output=True,
                             env={"LANG": "C.UTF-8"})
        assert run.returncode == 0, (files[rel], run.stderr)
        got += calls(run.stdout.decode("utf-8"))
    names = {"lmod": {"prepend-path": "prepend_path", "depends-on": "depends_on",
                      "module-whatis": "whatis"}, "tcl": {}}[fmt]
    expected = [["whatis", m.whatis[0]], ["help", m.help], ["family", "compiler"],
                ["depends-on", "y/2"], ["prepend-path", "PATH", m.prepend[0][1]],
                ["setenv", "X_ROOT", HOSTILE], ["prepend-path", "MODULEPATH", m.modulepath[0]]]
    expected = [[names.get(c[0], c[0]), *c[1:]] for c in expected]
    if fmt == "tcl":  # the default mark (.version) sorts first, help comes at the end
        expected[0][0] = "module-whatis"
        expected = [["version", "1"], *expected[:1], *expected[2:], expected[1]]
    else:
        expected = [["module_version", "x/1", "default"], *expected]
    assert got == expected


def test_the_wheel_ships_every_template() -> None:
    """package-data patterns are not recursive: each templates/ subdirectory is a
    package of its own (mapped in package-dir), with a pattern for its files."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "hdenv.modules" in config["packages"]
    root = REPO / "templates"
    files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    assert any(f.parts[0] == "modules" for f in files)
    unshipped = []
    for f in files:
        package = ".".join(("hdenv._data.templates", *f.parts[:-1]))
        mapped = config["package-dir"].get(package)
        patterns = config["package-data"].get(package, [])
        if (package not in config["packages"] or mapped != "/".join(("templates", *f.parts[:-1]))
                or not any(fnmatch.fnmatch(f.name, pat) for pat in patterns)):
            unshipped.append(str(f))
    assert unshipped == []

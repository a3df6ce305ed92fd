"""Build-system templates: a recipe's arguments -> the build script that is hashed.

One template per build system (`templates/buildsystems/NAME.sh.j2`), with
ordered stages (pre-configure, configure, build, install, post-install), the
out-of-tree directory where the tool wants one, and `-j$HDENV_JOBS`. What a
template renders is the spec's script: a change to a template changes the
ids of what used it, exactly as an edited script would, and a recipe whose
rendered script is byte-identical to a hand-written one gives the same id.

Arguments are words, each passed to the tool as one argument: `$NAME` and
`${NAME}` expand (`--with-zlib=$HDENV_DEP_ZLIB`), nothing else of the shell
does (`$(...)`, backquotes, globs and spaces stay literal), so a recipe
needs no shell quoting and cannot be broken by a value with a space.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..resources import data_dir
from .recipe import BUILD_SYSTEMS

if TYPE_CHECKING:
    import jinja2

COMPILING = frozenset({"autotools", "cmake", "meson", "make", "python"})
"""Build systems that run the toolchain's compilers: they get `[stack] toolchain`."""

_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")

# the compiler drivers a toolchain's programs are recognised by, for CC/CXX/FC
C_COMPILERS = ("gcc", "clang", "icx", "icc", "cc")
CXX_COMPILERS = ("g++", "clang++", "icpx", "icpc", "c++")
FORTRAN_COMPILERS = ("gfortran", "flang-new", "flang", "ifx", "ifort")


def word(arg: str) -> str:
    """`arg` as one double-quoted shell word in which only `$NAME`/`${NAME}` expand."""
    out = []
    pos = 0
    for m in _VARIABLE.finditer(arg):
        out.append(_literal(arg[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_literal(arg[pos:]))
    return '"' + "".join(out) + '"'


def _literal(text: str) -> str:
    return re.sub(r'([\\"`$])', r"\\\1", text)


def words(args: Sequence[str]) -> str:
    """Each argument as a `word`, each after a space (nothing for no arguments)."""
    return "".join(" " + word(a) for a in args)


def _environment() -> jinja2.Environment:
    import jinja2  # here: a stack without recipes renders no build-system template

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates") / "buildsystems")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["words"] = words
    env.filters["word"] = word
    return env


_ENV: jinja2.Environment | None = None


def render_script(system: str, args: Mapping[str, Sequence[str]], *, pre_configure: str = "",
                  post_install: str = "", wheel: str | None = None) -> str:
    """The script of `system` with a recipe's (and a stack's) arguments and stages."""
    global _ENV
    if system not in BUILD_SYSTEMS or system == "script":
        raise ValueError(f"no template for build system {system!r}")
    if _ENV is None:
        _ENV = _environment()
    values = {key.replace("-", "_"): list(args.get(key, ())) for key in
              ("configure-args", "cmake-args", "meson-args", "make-args", "install-args")}
    text = _ENV.get_template(f"{system}.sh.j2").render(
        **values, wheel=wheel,
        pre_configure=pre_configure.strip() + "\n" if pre_configure.strip() else "",
        post_install=post_install.strip() + "\n" if post_install.strip() else "")
    return text.rstrip() + "\n"


def compiler_env(programs: Sequence[str]) -> dict[str, str]:
    """CC, CXX and FC from the programs a toolchain declares (host gcc: gcc, g++, gfortran)."""
    names = {p.rsplit("/", 1)[-1]: p for p in programs}
    out = {}
    for var, known in (("CC", C_COMPILERS), ("CXX", CXX_COMPILERS), ("FC", FORTRAN_COMPILERS)):
        for candidate in known:
            if candidate in names:
                out[var] = candidate
                break
    return out

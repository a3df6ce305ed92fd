"""Why a jailed build did not find a header or a library, and what would let it.

In the jail (`jail.py`) a build that includes `<yaml.h>` or links `-lyaml`
without declaring them fails with the compiler's own words ("fatal error:
yaml.h: No such file or directory", "cannot find -lyaml"), which on a machine
that has libyaml-dev installed reads like a bug. After a failed build the
log is read for those messages; for each name the host does have, the error
says where it is, which distro package owns it (`dpkg -S`, `rpm -qf`; no
package named where there is neither) and the declaration that allows it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from .. import hostpkgs
from .jail import library_areas

HEADER_RE = (
    re.compile(r"^\S+:\d+(?::\d+)?: fatal error: ([^\s:']+): No such file or directory", re.M),
    re.compile(r"^\S+:\d+(?::\d+)?: fatal error: '([^']+)' file not found", re.M),  # clang
)
LIBRARY_RE = (
    re.compile(r"cannot find -l([\w.+-]+?)(?::|$|\s)", re.M),  # GNU ld
    re.compile(r"unable to find library -l([\w.+-]+)", re.M),  # lld
)
INCLUDE_DIRS = ("/usr/include", "/usr/local/include")
CHECKING_RE = re.compile(r"^configure:\d+: checking ", re.M)
CONFIGURE_ERROR_RE = re.compile(r"^configure:\d+: error: ", re.M)
MAX_NAMED = 5


def missing_names(log: str) -> tuple[list[str], list[str]]:
    """(headers, libraries) the log says were not found, each once, in order."""
    headers = [m.group(1) for r in HEADER_RE for m in r.finditer(log)]
    libs = [m.group(1) for r in LIBRARY_RE for m in r.finditer(log)]
    return list(dict.fromkeys(headers)), list(dict.fromkeys(libs))


def _multiarch_include() -> list[str]:
    return [os.path.join("/usr/include", os.path.basename(a)) for a in library_areas()
            if "-linux-" in a]


def host_header(name: str) -> str | None:
    """Where the host has header `name` (`yaml.h`, `sys/foo.h`), if anywhere."""
    if name.startswith("/") or ".." in name.split("/"):
        return None
    for d in [*_multiarch_include(), *INCLUDE_DIRS]:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def host_library(name: str) -> str | None:
    """Where the host has what `-lNAME` links (`libNAME.so`, else `libNAME.a`), if anywhere."""
    dirs = [*library_areas(), "/usr/lib", "/usr/local/lib"]
    for suffix in (".so", ".a"):
        for d in dirs:
            p = os.path.join(d, f"lib{name}{suffix}")
            if os.path.exists(p):
                return p
    return None


def host_name(package: str) -> str:
    """A `[host.NAME]` for a distro package: `libyaml-dev` -> `yaml`."""
    name = re.sub(r"-(dev|devel)$", "", package)
    name = re.sub(r"^lib(?=[a-z])", "", name)
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", name) or package


def explain(log: str) -> list[str]:
    """One line per header or library the log missed that the host has (at most MAX_NAMED)."""
    headers, libs = missing_names(log)
    found: list[tuple[str, str]] = []
    for h in headers:
        path = host_header(h)
        if path:
            found.append((h, path))
    for lib in libs:
        path = host_library(lib)
        if path:
            found.append((f"-l{lib}", path))
    return [_line(what, path) for what, path in found[:MAX_NAMED]]


def _owner(path: str) -> str | None:
    owners = hostpkgs.owners([path])
    return owners[0].name if owners else None


def _line(what: str, path: str) -> str:
    package = _owner(path)
    if package is None:  # no package database (nothing said of one), or no owner
        owner = ", which no package owns" if hostpkgs.manager() is not None else ""
        return (f"{what} is hidden from builds (the jail): the host has {path}{owner};"
                " declare it as host software ([host.NAME] with libraries or pkgconfig) or"
                " depend on a package of this stack that installs it")
    name = host_name(package)
    return (f"{what} is hidden from builds (the jail): the host has {path}, from package"
            f" {package}; declare it with [host.{name}] packages = [\"{package}\"] and"
            f" \"{name}\" in deps (or build-deps), or depend on a package of this stack"
            " that installs it")


def undeclared_hint(paths: list[str]) -> str:
    """For `strict-links`: the packages owning system libraries a build loads undeclared,
    and how to declare them (or turn the check off); '' without a package database."""
    owners = hostpkgs.owners(paths)
    if not owners:
        return ("; declare them as host software ([host.NAME] libraries = [...]),"
                " or set strict-links = false in config.toml")
    named = ", ".join(f"{p.name} ({', '.join(os.path.basename(f) for f in p.files)})"
                      for p in owners)
    decl = "; ".join(f"[host.{host_name(p.name)}] packages = [\"{p.name}\"] and"
                     f" \"{host_name(p.name)}\" in deps" for p in owners)
    return (f"; from package {named}: declare it with {decl} (its -dev package, if installed,"
            " brings headers too), or set strict-links = false in config.toml")


def explain_file(path: str | os.PathLike[str], limit: int = 1 << 20) -> list[str]:
    """`explain` of the last `limit` bytes of a build log; [] when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            return explain(f.read().decode("utf-8", "replace"))
    except OSError:
        return []


def explain_config_log(path: str | os.PathLike[str], limit: int = 4 << 20) -> list[str]:
    """`explain` of the check that made autoconf's configure stop: from the last `checking`
    line before its `error:` to the error (libpng's "zlib not installed" says nothing of
    `-lz` in the build log; config.log has `cannot find -lz` under that check). Only that
    check: config.log is full of probes that fail on purpose."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    errors = list(CONFIGURE_ERROR_RE.finditer(text))
    if not errors:
        return []
    end = errors[-1].start()
    checks = [m.start() for m in CHECKING_RE.finditer(text, 0, end)]
    return explain(text[checks[-1]:end]) if checks else []


def joined(lines: Iterable[str]) -> str:
    """The lines as they follow a build error: each on its own, `hdenv:`-free."""
    return "".join(f"\n{line}" for line in lines)

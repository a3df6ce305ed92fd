"""The host's OS packages (Debian's dpkg, or rpm), both ways round.

`owners`: which package each host file of an image comes from, for the SBOM.
Asked once per image with all the paths (one `dpkg-query -S`, one
`dpkg-query -W`); on a merged-/usr system dpkg knows `/lib/...` where the
loader found `/usr/lib/...`, so both spellings are asked. A file no package
owns (built by hand, or no package manager at all) is simply not listed.

`installed`: the version and files of packages a stack names
(`[host.NAME] packages = [...]`), for a host artifact that holds exactly them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from .errors import UserError

TIMEOUT = 60


@dataclass
class HostPackage:
    name: str
    version: str
    arch: str
    manager: str  # "deb" or "rpm"
    files: list[str] = field(default_factory=list)

    @property
    def purl(self) -> str:
        kind = "deb/debian" if self.manager == "deb" else "rpm"
        return f"pkg:{kind}/{self.name}@{self.version}?arch={self.arch}"


def _spellings(path: str) -> list[str]:
    return [path, path[4:]] if path.startswith("/usr/") else [path, "/usr" + path]


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def owners(paths: list[str]) -> list[HostPackage]:
    """The packages owning `paths`, sorted by name; [] without a package manager."""
    if not paths:
        return []
    if shutil.which("dpkg-query"):
        return _dpkg(paths)
    if shutil.which("rpm"):
        return _rpm(paths)
    return []


def _dpkg(paths: list[str]) -> list[HostPackage]:
    asked = {s: p for p in paths for s in _spellings(p)}
    found: dict[str, list[str]] = {}
    for line in _run(["dpkg-query", "-S", *asked]).splitlines():
        pkgs, sep, path = line.partition(": ")
        if not sep or path not in asked or "diversion" in pkgs:
            continue
        for pkg in pkgs.split(", "):
            files = found.setdefault(pkg.split(":")[0], [])
            if asked[path] not in files:
                files.append(asked[path])
    if not found:
        return []
    out = []
    fmt = "${Package}\t${Version}\t${Architecture}\n"
    for line in _run(["dpkg-query", "-W", "-f", fmt, *sorted(found)]).splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in found:
            out.append(HostPackage(parts[0], parts[1], parts[2], "deb", sorted(found[parts[0]])))
    return sorted(out, key=lambda p: p.name)


def _rpm(paths: list[str]) -> list[HostPackage]:
    found: dict[tuple[str, str, str], list[str]] = {}
    for path in paths:
        out = _run(["rpm", "-qf", "--queryformat", "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n",
                    path])
        for line in out.splitlines()[:1]:
            parts = line.split("\t")
            if len(parts) == 3:
                found.setdefault((parts[0], parts[1], parts[2]), []).append(path)
    return sorted((HostPackage(n, v, a, "rpm", sorted(f)) for (n, v, a), f in found.items()),
                  key=lambda p: p.name)


SKIPPED = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/lintian/",
           "/usr/share/bug/")
"""What a package's file list holds that no build or program uses: documentation."""


def manager() -> str | None:
    """"deb" (dpkg-query), "rpm", or None: which package database this host has."""
    if shutil.which("dpkg-query"):
        return "deb"
    if shutil.which("rpm"):
        return "rpm"
    return None


def matching(patterns: list[str]) -> list[str]:
    """The installed packages whose names match `patterns` (dpkg's globs; rpm: exact names),
    in order; those not installed are left out quietly (for sets hdenv itself names)."""
    kind = manager()
    if kind == "deb":
        out = _run(["dpkg-query", "-W", "-f", "${db:Status-Status}\t${Package}\n", *patterns])
        return list(dict.fromkeys(name for status, _, name in
                                  (line.partition("\t") for line in out.splitlines())
                                  if status == "installed" and name))
    if kind == "rpm":
        out = _run(["rpm", "-q", "--queryformat", "%{NAME}\n", *patterns])
        return list(dict.fromkeys(line.strip() for line in out.splitlines()
                                  if line.strip() and " " not in line.strip()))
    return []


def files_of(names: list[str]) -> list[str]:
    """The files (not directories, not documentation) of installed packages `names`, in one
    query (`dpkg-query -L A B ...`, `rpm -ql A B ...`): for sets hdenv names itself, where
    a version per package is not needed and every subprocess counts (the build jail)."""
    kind = manager()
    if kind is None or not names:
        return []
    argv = ["dpkg-query", "-L", *names] if kind == "deb" else ["rpm", "-ql", *names]
    listed = _run(argv).splitlines()
    return sorted(p for p in dict.fromkeys(listed) if p.startswith("/")
                  and not p.startswith(SKIPPED) and _is_file(p))


def installed(names: list[str], who: str) -> list[HostPackage]:
    """Each package of `names`, installed here, with its version and files (not directories,
    not documentation); UserError (one line, naming `who`) for one that is not installed
    or a host with no package database."""
    kind = manager()
    if kind is None:
        raise UserError(f"{who}: packages = [...] needs dpkg or rpm, and this host has"
                        " neither; name the files with programs, libraries or pkgconfig")
    out = []
    for name in names:
        if kind == "deb":
            line = _run(["dpkg-query", "-W", "-f",
                         "${db:Status-Status}\t${Version}\t${Architecture}\n", name])
            parts = line.splitlines()[0].split("\t") if line.strip() else []
            if len(parts) != 3 or parts[0] != "installed":
                raise UserError(f"{who}: package {name!r} is not installed (dpkg-query -W"
                                f" {name}); install it, or drop it from packages")
            listed = _run(["dpkg-query", "-L", name]).splitlines()
        else:
            line = _run(["rpm", "-q", "--queryformat", "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n",
                         name])
            parts = ["installed", *line.split("\t")[1:]] if line.count("\t") == 2 else []
            if not parts:
                raise UserError(f"{who}: package {name!r} is not installed (rpm -q {name});"
                                " install it, or drop it from packages")
            listed = _run(["rpm", "-ql", name]).splitlines()
        files = sorted(p for p in dict.fromkeys(listed) if p.startswith("/")
                       and not p.startswith(SKIPPED) and _is_file(p))
        out.append(HostPackage(name, parts[1].strip(), parts[2].strip(), kind, files))
    return out


def _is_file(path: str) -> bool:
    """A file or a symlink (to anything but a directory): what a package puts in place."""
    return os.path.lexists(path) and not os.path.isdir(path)

"""Which OS package (Debian's dpkg, or rpm) each host file of an image comes from, for the SBOM.

Asked once per image with all the paths (one `dpkg-query -S`, one
`dpkg-query -W`); on a merged-/usr system dpkg knows `/lib/...` where the
loader found `/usr/lib/...`, so both spellings are asked. A file no package
owns (built by hand, or no package manager at all) is simply not listed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

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

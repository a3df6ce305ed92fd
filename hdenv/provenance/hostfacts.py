"""Facts about this machine for bug reports and bundles: OS, kernel, CPU, libc, compilers.

A maintainer reading a report wants what could explain a difference between
two machines, in one screen: not every CPU flag, but the x86-64 level
(v1..v4, as glibc and compilers name them) and the vector extensions that
decide which code paths numerical libraries take.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from typing import Any

from .. import __version__
from ..build.host import version_output

COMPILERS = ("gcc", "g++", "gfortran", "clang", "icx", "nvc")
NOTABLE_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl", "amx_tile",
                 "asimd", "sve", "sve2")
# x86-64 micro-architecture levels (psABI), by the flags each adds.
X86_LEVELS = (
    ("x86-64-v2", ("cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3")),
    ("x86-64-v3", ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")),
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)


def _os_release() -> str:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        except OSError:
            continue
        return fields.get("PRETTY_NAME", fields.get("NAME", "")).strip('"') or "unknown"
    return f"{platform.system()} {platform.release()}"


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = "", list[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_summary(flags: list[str]) -> dict[str, Any]:
    have = set(flags)
    level = None
    if "lm" in have or "sse2" in have:
        level = "x86-64-v1"
        for name, needed in X86_LEVELS:
            if not set(needed) <= have:
                break
            level = name
    return {"level": level, "notable": [f for f in NOTABLE_FLAGS if f in have]}


def _libc() -> str:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    except (ValueError, OSError, AttributeError):
        name, version = platform.libc_ver()
        return f"{name} {version}".strip() or "unknown"


def compiler_versions() -> dict[str, str]:
    """First line of `--version` of each compiler found on PATH."""
    out = {}
    for name in COMPILERS:
        found = shutil.which(name)
        if found is None:
            continue
        text = version_output(name, os.path.realpath(found))
        out[name] = text.splitlines()[0] if text else "?"
    return out


def host_facts() -> dict[str, Any]:
    uname = os.uname()
    model, flags = _cpuinfo()
    return {
        "os": _os_release(),
        "kernel": f"{uname.sysname} {uname.release}",
        "machine": uname.machine,
        "cpu": {"model": model, "cores": os.cpu_count() or 1, **cpu_summary(flags)},
        "libc": _libc(),
        "compilers": compiler_versions(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "hdenv_version": __version__,
    }


def format_facts(facts: dict[str, Any], indent: str = "  ") -> list[str]:
    cpu = facts.get("cpu", {})
    flags = " ".join(filter(None, [cpu.get("level"), *cpu.get("notable", [])]))
    lines = [
        f"os:        {facts.get('os')}",
        f"kernel:    {facts.get('kernel')} {facts.get('machine', '')}".rstrip(),
        f"cpu:       {cpu.get('model')} ({cpu.get('cores')} cores{'; ' + flags if flags else ''})",
        f"libc:      {facts.get('libc')}",
        f"python:    {facts.get('python')}",
        f"hdenv:     {facts.get('hdenv_version')}",
    ]
    for name, version in sorted(facts.get("compilers", {}).items()):
        lines.append(f"{name + ':':<10} {version}")
    return [indent + line for line in lines]

"""Hardening, round two (issue 21), stack files: what a stranger's stack file may cost.

The first tests for items 11-16 and 7 are in test_attacks2.py; these cover the
ways around them that were still open (`test_21_14_...` is item 14).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import Runner, require

MEMORY_CEILING = 400 << 20  # bytes of RSS: hdenv itself plus the 256 MiB a render may add
ONE_MB = "('x' * 1000000)"
DOUBLE = "{% set a = a ~ a %}"
TEMPLATES = {  # name: (template, what the error says)
    "bytes": (f"{{{{ {ONE_MB}.encode() * 1000 }}}}", "'*' would make"),
    "list-repr": (f"{{{{ [{ONE_MB}] * 1000 }}}}", "'*' would make"),
    "str-join": (f"{{{{ ''.join([{ONE_MB}] * 1000) }}}}", "'*' would make"),
    "plus": (f"{{% set a = {ONE_MB} %}}" + "{% set a = a + a %}" * 10 + "{{ a }}",
             "'+' would make"),
    "tilde": (f"{{% set a = {ONE_MB} %}}" + DOUBLE * 10 + "{{ a }}", "MiB of memory"),
    "namespace": (f"{{% set ns = namespace(a={ONE_MB}) %}}{{% for i in range(10) %}}"
                  "{% set ns.a = ns.a ~ ns.a %}{% endfor %}{{ ns.a }}", "MiB of memory"),
    "nested-format": ("{{ '{0:{1}}'.format(1, 900000000) }}", "nested format specs"),
    "lipsum": ("{{ lipsum(1000000) }}", "lipsum() would make"),
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_21_14_a_template_cannot_eat_memory_by_other_ways(
        hdenv_exe: str, hdenv_env: dict[str, str], tmp_path: Path, store_dir: Path,
        name: str) -> None:
    """bytes and nested lists repeated, `+` and `~` doubling, a namespace grown in a loop,
    a computed format width, lipsum(): each one FILE:LINE line, and the process never
    holds more than a bounded amount of memory while it finds out."""
    template, why = TEMPLATES[name]
    stack = tmp_path / "t.toml"
    stack.write_text('[packages.t]\nversion = "1"\n'
                     f'env = {{ X = "{template}" }}\nscript = "true"\n')
    err = tmp_path / "stderr"
    with err.open("w") as errf:
        child = subprocess.Popen([hdenv_exe, "build", "--dry-run", str(stack)], env=hdenv_env,
                                 stdout=subprocess.DEVNULL, stderr=errf)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    stderr = err.read_text()
    assert child.returncode == 2, stderr
    assert stderr.startswith(f"hdenv: error: {stack}:3: unsafe template in packages.t.env.X: "),\
        stderr
    assert usage.ru_maxrss * 1024 < MEMORY_CEILING, f"{usage.ru_maxrss >> 10} MiB: {stderr}"
    assert why in stderr and len(stderr.splitlines()) == 1, stderr
    assert not store_dir.exists()


# -- 16: every field generated code uses is checked when the stack is read ------------

LINE_BREAK_ENV = {
    "profile": '[packages.t]\nversion = "1"\nscript = "true"\n'
               '[profiles.p]\npackages = ["t"]\nenv = {{ X = "{value}" }}\n',
    "host": '[host.h]\nprograms = ["sh"]\nenv = {{ X = "{value}" }}\n'
            '[profiles.p]\npackages = ["h"]\n',
}


@pytest.mark.parametrize("value", ["a\\nb", "a\\rb", "a\\u0000b"])
@pytest.mark.parametrize("where", sorted(LINE_BREAK_ENV))
def test_21_16_an_env_value_modulefiles_cannot_write_is_refused_at_build(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path, where: str, value: str) -> None:
    """A line break in a profile's (or host's) env value built, and then
    `hdenv modulefiles` failed for the whole store."""
    stack = tmp_path / "e.toml"
    stack.write_text(LINE_BREAK_ENV[where].format(value=value))
    line = 6 if where == "profile" else 3
    for flags in (["--dry-run"], []):
        proc = run_hdenv("build", *flags, str(stack))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"hdenv: error: {stack}:{line}: "), proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not store_dir.exists()


# -- 11: a dry run runs no program someone else could swap ------------------------------

def test_21_11_a_dry_run_does_not_run_a_root_file_in_a_strangers_directory(
        run_hdenv: Runner, tmp_path: Path) -> None:
    """Root's file in a directory another user owns: that user can replace it (or a
    link to it) between the check and the run, so it is not a system file."""
    bindir = tmp_path / "stranger-bin"
    bindir.mkdir()
    helper = bindir / "helper"
    helper.write_text(f"#!/bin/sh\ntouch {tmp_path}/RAN\necho 'helper 1.0'\n")
    helper.chmod(0o755)
    require(os.geteuid() == 0, "needs root to give the file to root, the directory to another")
    os.chown(helper, 0, 0)
    os.chown(bindir, 65534, 65534)  # the stranger's directory; the file is root's
    stack = tmp_path / "h.toml"
    stack.write_text(f'[host.tool]\nprograms = ["{helper}"]\n\n'
                     '[packages.p]\nversion = "1"\nbuild-deps = ["tool"]\nscript = "true"\n')
    proc = run_hdenv("build", "--dry-run", str(stack))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:1: host.tool.programs names "
                                  f"{helper}, which is not a system file"), proc.stderr
    assert not (tmp_path / "RAN").exists()

"""Checks after install (`check`, `import`), `--skip-checks`, `[stack] checks`, and
`--keep-failed`: a package that built but does not work is not done."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import Runner

STACK = """
[stack]
name = "chk"
{stack_extra}

[host.python]
programs = ["python3"]

[packages.tool]
version = "1"
build-deps = ["python"]
script = '''
mkdir -p "$PREFIX/bin"
printf '#!/bin/sh\\necho hi\\n' > "$PREFIX/bin/tool"
chmod +x "$PREFIX/bin/tool"
site=$(python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
mkdir -p "$PREFIX/lib/$site/site-packages/hdenvext"
echo "from . import _speedups  # the C extension the build {ext}" \\
  > "$PREFIX/lib/$site/site-packages/hdenvext/__init__.py"
{make_ext}
'''
check = ["tool | grep -qx hi", "test -x \\"$PREFIX/bin/tool\\""]
import = ["hdenvext"]
"""
WITH_EXT = ('echo "VALUE = 1" > "$PREFIX/lib/$site/site-packages/hdenvext/_speedups.py"')


def stack(tmp_path: Path, *, ext: bool, stack_extra: str = "") -> Path:
    path = tmp_path / f"chk-{ext}-{len(stack_extra)}.toml"
    path.write_text(STACK.format(ext="made" if ext else "quietly skipped",
                                 make_ext=WITH_EXT if ext else "", stack_extra=stack_extra))
    return path


def ids(run_hdenv: Runner) -> list[str]:
    return [line.split()[0] for line in run_hdenv("list", "artifacts", check=True
                                                  ).stdout.splitlines()
            if line.startswith("tool/")]


def test_checks_run_after_install_and_a_working_package_passes(run_hdenv: Runner,
                                                               tmp_path: Path) -> None:
    run_hdenv("build", str(stack(tmp_path, ext=True)), check=True)
    (aid,) = ids(run_hdenv)
    log = (Path(run_hdenv("path", aid, check=True).stdout.strip()) / ".hdenv" / "build.log"
           ).read_text()
    assert "hdenv: check: tool | grep -qx hi\n" in log
    assert "hdenv: check: python3 -c 'import hdenvext'\n" in log
    spec = json.loads(run_hdenv("show", aid, "--json", check=True).stdout)["spec"]
    assert spec["checks"] == ["tool | grep -qx hi", 'test -x "$PREFIX/bin/tool"',
                              "python3 -c 'import hdenvext'"]


def test_a_quietly_missing_extension_fails_its_import_check(run_hdenv: Runner,
                                                            tmp_path: Path) -> None:
    proc = run_hdenv("build", str(stack(tmp_path, ext=False)))
    assert proc.returncode == 1, proc.stderr
    assert "check `python3 -c 'import hdenvext'` of tool/1/" in proc.stderr
    assert "failed (exit 1)" in proc.stderr
    assert "cannot import name '_speedups'" in proc.stderr  # the log's tail says why
    assert ids(run_hdenv) == []


def test_skip_checks_and_stack_checks_never_build_the_same_id_and_say_so(
        run_hdenv: Runner, tmp_path: Path) -> None:
    run_hdenv("build", "--skip-checks", str(stack(tmp_path, ext=False)), check=True)
    (skipped,) = ids(run_hdenv)
    log = (Path(run_hdenv("path", skipped, check=True).stdout.strip()) / ".hdenv" /
           "build.log").read_text()
    assert "hdenv: 3 check(s) skipped" in log and "hdenv: check:" not in log
    never = stack(tmp_path, ext=False, stack_extra='checks = "never"')
    proc = run_hdenv("build", str(never), check=True)
    assert "0 built" in proc.stderr  # the same spec: checks do not enter the id twice
    bad = stack(tmp_path, ext=False, stack_extra='checks = "sometimes"')
    proc = run_hdenv("build", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"hdenv: error: {bad}:4: stack.checks must be")


def test_keep_failed_keeps_the_build_directory_and_says_where(run_hdenv: Runner,
                                                              tmp_path: Path,
                                                              store_dir: Path) -> None:
    proc = run_hdenv("build", "--keep-failed", str(stack(tmp_path, ext=False)))
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("build directory kept: ")]
    kept = Path(line.split(": ", 1)[1])
    assert kept.parent == store_dir / "logs"
    assert (kept / "hdenv-build.sh").is_file() and (kept / "src").is_dir()
    assert os.access(kept / "src", os.W_OK)
    plain = run_hdenv("build", str(stack(tmp_path, ext=False)))
    assert "build directory kept" not in plain.stderr


BROKEN = """
[packages.dep]
version = "1"
script = 'mkdir -p "$PREFIX/share" && echo data > "$PREFIX/share/dep.txt"'

[packages.broken]
version = "1"
deps = ["dep"]
sources = [{ path = "src" }]
patches = ["fix.patch"]
env = { GREETING = "hello" }
script = 'cat "$HDENV_DEP_DEP/share/dep.txt"; cat notes.txt; exit 3'
"""
PATCH = """--- a/notes.txt
+++ b/notes.txt
@@ -1 +1 @@
-before
+after the patch
"""


def test_build_env_runs_a_command_inside_the_failed_packages_build(
        run_hdenv: Runner, tmp_path: Path, store_dir: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("before\n")
    (tmp_path / "fix.patch").write_text(PATCH)
    stack = tmp_path / "broken.toml"
    stack.write_text(BROKEN)
    assert run_hdenv("build", str(stack)).returncode == 1  # dep is built, broken fails
    probe = ('sh ../hdenv-build.sh; echo "rc=$?"; echo "G=$GREETING"; echo "P=$PREFIX";'
             ' echo "H=$HOME"; pwd')
    proc = run_hdenv("build-env", str(stack), "broken", "--", "sh", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    out = [x for x in proc.stdout.splitlines() if not x.startswith(("hdenv: applying",
                                                                      "patching file"))]
    assert out[:2] == ["data", "after the patch"]  # the dependency and the patched sources
    assert out[2:4] == ["rc=3", "G=hello"]
    kept = store_dir / "logs" / f"{_broken_id(run_hdenv, stack)}.env"
    assert out[4:] == [f"P={kept}/prefix", f"H={kept}/home", f"{kept}/src"]
    assert "build directory" in proc.stderr
    assert run_hdenv("build-env", str(stack), "nosuch").returncode == 2


def _broken_id(run_hdenv: Runner, stack: Path) -> str:
    dry = run_hdenv("build", "--dry-run", str(stack), check=True).stdout
    (aid,) = [w for w in dry.split() if w.startswith("broken/1/")]
    return aid.replace("/", "-")

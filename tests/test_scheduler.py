"""Scheduling seen from inside real builds: how many cores each build is given."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Runner

STACK = """
[packages.left]
version = "1"
script = 'mkdir -p "$PREFIX/share" && echo "$HDENV_JOBS" > "$PREFIX/share/left-jobs"'

[packages.right]
version = "1"
script = 'mkdir -p "$PREFIX/share" && echo "$HDENV_JOBS" > "$PREFIX/share/right-jobs"'

[packages.top]
version = "1"
deps = ["left", "right"]
script = 'mkdir -p "$PREFIX/share" && echo "$HDENV_JOBS" > "$PREFIX/share/top-jobs"'
"""


def jobs_seen(run_hdenv: Runner, tmp_path: Path, *args: str,
              env: dict[str, str] | None = None) -> dict[str, int]:
    stack = tmp_path / "jobs.toml"
    stack.write_text(STACK)
    out = run_hdenv("build", str(stack), *args, env=env, check=True).stdout.split()
    prefix = Path(run_hdenv("path", out[0], check=True).stdout.strip())
    return {name: int((prefix / "share" / f"{name}-jobs").read_text())
            for name in ("left", "right", "top")}


def test_running_builds_share_the_cores(run_hdenv: Runner, tmp_path: Path) -> None:
    """Two builds side by side split the cores; the lone build after them gets all."""
    cores = len(os.sched_getaffinity(0))
    seen = jobs_seen(run_hdenv, tmp_path, "-j", "2")
    assert seen == {"left": max(1, cores // 2), "right": max(1, cores // 2), "top": cores}


def test_build_jobs_setting_fixes_every_build(run_hdenv: Runner, tmp_path: Path) -> None:
    seen = jobs_seen(run_hdenv, tmp_path, "-j", "2", env={"HDENV_BUILD_JOBS": "7"})
    assert seen == {"left": 7, "right": 7, "top": 7}


def test_bad_build_jobs_is_a_one_line_error(run_hdenv: Runner, tmp_path: Path,
                                            store_dir: Path) -> None:
    stack = tmp_path / "jobs.toml"
    stack.write_text(STACK)
    proc = run_hdenv("build", str(stack), env={"HDENV_BUILD_JOBS": "many"})
    assert proc.returncode == 2
    assert proc.stderr == "hdenv: error: build-jobs must be a whole number, got 'many'\n"
    assert not store_dir.exists()

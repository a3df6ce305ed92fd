"""Which sbatch options hdenv must refuse, and the one-line errors a user gets for them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Runner

from hdenv.cluster.slurm import check_options, check_time, reserved_option


@pytest.mark.parametrize("option, reserved", [
    ("--dependency=afterok:1", "--dependency"), ("-d", "--dependency"),
    ("-dafterok:1", "--dependency"), ("--dep=afterany:2", "--dependency"),
    ("--hold", "--hold"), ("-H", "--hold"), ("--output=/tmp/x", "--output"),
    ("-o", "--output"), ("--error=x", "--error"), ("--wrap=id", "--wrap"),
    ("--cpus-per-task=8", "--cpus-per-task"), ("-c8", "--cpus-per-task"),
    ("--chdir=/", "--chdir"), ("--kill-on-invalid-dep=no", "--kill-on-invalid-dep"),
    ("--array=1-3", "--array"), ("--wait", "--wait"), ("--parsable", "--parsable"),
    ("--partition=debug", None), ("-p", None), ("--account=abc", None), ("--time=10", None),
    ("--mem=4G", None), ("--qos=long", None), ("debug", None), ("--exclusive", None),
    ("--export=NONE", None),
])
def test_reserved_options(option: str, reserved: str | None) -> None:
    assert reserved_option(option) == reserved


def test_check_options_says_why() -> None:
    assert check_options(["--partition=debug", "-A", "proj"], "slurm-options") is None
    assert check_options(["--hold"], "slurm-options") == (
        "slurm-options: '--hold' cannot be used (--hold: hdenv sets it for every job)")
    assert "slurm = { cpus = N }" in (check_options(["-c", "4"], "x") or "")
    assert check_options(["--comment=a\nb"], "x") == "x: '--comment=a\\nb' is not an sbatch option"


@pytest.mark.parametrize("value, ok", [
    ("10", True), ("10:00", True), ("2:00:00", True), ("1-0", True), ("1-12:30", True),
    ("3-00:00:00", True), ("UNLIMITED", True), ("soon", False), ("1h", False), ("", False),
    ("1:2:3:4", False),
])
def test_check_time(value: str, ok: bool) -> None:
    assert check_time(value) is ok


STACK = '[packages.a]\nversion = "1"\nscript = "true"\n'


@pytest.mark.parametrize("slurm, message", [
    ("slurm = { cpus = 0 }", "packages.a.slurm.cpus must be a whole number of at least 1"),
    ("slurm = { cpus = true }", "packages.a.slurm.cpus must be a whole number of at least 1"),
    ('slurm = { tasks = 2 }', "unknown key 'tasks' in [packages.a.slurm]"),
    ('slurm = { time = "soon" }', "packages.a.slurm.time: 'soon' is not a Slurm time"),
    ('slurm = { options = ["-o", "x"] }', "packages.a.slurm.options: '-o' cannot be used"),
    ('slurm = { options = "--mem=1G" }', "packages.a.slurm.options must be a list of strings"),
])
def test_bad_package_slurm_table(run_hdenv: Runner, tmp_path: Path, store_dir: Path,
                                 slurm: str, message: str) -> None:
    stack = tmp_path / "s.toml"
    stack.write_text(STACK.replace('version = "1"\n', f'version = "1"\n{slurm}\n'))
    proc = run_hdenv("build", str(stack), "--executor", "slurm", "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {stack}:")
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert not store_dir.exists()


@pytest.mark.parametrize("config, message", [
    ('executor = "grid"', "'executor' must be one of local, slurm, got 'grid'"),
    ('slurm-options = "--time=10"', "'slurm-options' must be a list of strings"),
    ('slurm-options = ["--dependency=singleton"]', "slurm-options: '--dependency=singleton'"
                                                   " cannot be used"),
])
def test_bad_slurm_config(run_hdenv: Runner, tmp_path: Path, store_dir: Path,
                          config: str, message: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(config + "\n")
    stack = tmp_path / "s.toml"
    stack.write_text(STACK)
    proc = run_hdenv("build", str(stack), "--executor", "slurm",
                     env={"HDENV_CONFIG": str(cfg)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"hdenv: error: {cfg}: ")
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not store_dir.exists()
    # only building cares: the rest of hdenv works with that config
    assert run_hdenv("list", env={"HDENV_CONFIG": str(cfg)}).returncode == 0


def test_no_slurm_on_path_is_one_line(run_hdenv: Runner, tmp_path: Path) -> None:
    """Without sbatch, --executor slurm says so (dry-run still works: it submits nothing)."""
    import os

    stack = tmp_path / "s.toml"
    stack.write_text(STACK)
    # PATH as it is, minus Slurm's commands: every directory shadowed by links
    shadows = []
    for n, d in enumerate(p for p in os.environ.get("PATH", "").split(os.pathsep) if p):
        if not Path(d).is_dir():
            continue
        shadow = tmp_path / f"path{n}"
        shadow.mkdir()
        for entry in os.listdir(d):
            if entry not in ("sbatch", "scontrol", "squeue", "scancel"):
                (shadow / entry).symlink_to(Path(d) / entry)
        shadows.append(str(shadow))
    env = {"PATH": os.pathsep.join(shadows)}
    dry = run_hdenv("build", str(stack), "--executor", "slurm", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would submit 1 Slurm job(s)" in dry.stdout
    proc = run_hdenv("build", str(stack), "--executor", "slurm", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("hdenv: error: --executor slurm needs Slurm's sbatch, scontrol,"
                           " squeue, scancel on PATH (run hdenv where you would run sbatch)\n")

"""`hdenv build --executor slurm` against a real single-node Slurm cluster.

The cluster (munged, slurmctld, slurmd) comes from `slurmfixture`; the jobs
run the real `hdenv build-node` with this interpreter, into a store every
"node" shares. What is checked is what a user sees: job ids in the logs,
the order of the builds, squeue's view of the jobs, the profile hashes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurmfixture import SlurmCluster, slurm_cluster

__all__ = ["slurm_cluster"]  # the session fixture, imported for pytest to find

pytestmark = pytest.mark.slow

HOST = os.uname().nodename.split(".")[0]

# A diamond: base <- left, right <- top. Each build records when it started
# and finished (from inside the build) and the HDENV_JOBS it was given.
STAMP = '''
mkdir -p "$PREFIX/share/times"
date +%s.%N > "$PREFIX/share/times/{name}.started"
sleep 1
echo "$HDENV_JOBS" > "$PREFIX/share/times/{name}.jobs"
date +%s.%N > "$PREFIX/share/times/{name}.finished"
'''


def package(name: str, deps: list[str], extra: str = "") -> str:
    return (f"[packages.{name}]\nversion = \"1\"\ndeps = {json.dumps(deps)}\n{extra}"
            f"script = '''{STAMP.format(name=name)}'''\n\n")


DIAMOND = ("[stack]\nname = \"diamond\"\n\n"
           "[profiles.diamond]\npackages = [\"top\"]\nexclude = [\"share/times\"]\n\n"
           + package("base", [])
           + package("left", ["base"], 'slurm = { cpus = 2, time = "10:00" }\n')
           + package("right", ["base"])
           + package("top", ["left", "right"]))


def hdenv_env(tmp: Path, cluster: SlurmCluster, config: str = "") -> dict[str, str]:
    cfg = tmp / "config.toml"
    cfg.write_text(config)
    env = dict(os.environ)
    env.pop("HDENV_MIRRORS", None)
    env.pop("HDENV_BUILD_JOBS", None)
    env.update(cluster.env, HDENV_STORE=str(tmp / "store"), HDENV_CONFIG=str(cfg))
    return env


def hdenv(hdenv_exe: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([hdenv_exe, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def submitted(stderr: str) -> dict[str, str]:
    """package name -> job id, from the `submitted job N for ID` progress lines."""
    return {m.group(2): m.group(1)
            for m in re.finditer(r"^submitted job (\d+) for ([^/\s]+)/", stderr, re.M)}


def all_jobs(cluster: SlurmCluster) -> set[str]:
    return set(cluster.queue(all_states=True))


@pytest.fixture(scope="module")
def hdenv_exe_mod() -> str:
    import sys

    return str(Path(sys.executable).parent / "hdenv")


@pytest.fixture(scope="module")
def diamond(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory,
            hdenv_exe_mod: str) -> Iterator[tuple[Path, dict[str, str],
                                                  subprocess.CompletedProcess[str]]]:
    """The diamond built once through Slurm, chosen by config (no --executor flag)."""
    tmp = tmp_path_factory.mktemp("diamond")
    (tmp / "diamond.toml").write_text(DIAMOND)
    env = hdenv_env(tmp, slurm_cluster,
                    'executor = "slurm"\nslurm-options = ["--time=30"]\n')
    proc = hdenv(hdenv_exe_mod, env, "build", str(tmp / "diamond.toml"))
    assert proc.returncode == 0, proc.stderr + slurm_cluster.logs()
    yield tmp, env, proc


def artifact(store: Path, name: str) -> Path:
    (found,) = (store / "artifacts" / name / "1").iterdir()
    return found


def test_diamond_builds_one_job_per_package(diamond: tuple[Path, dict[str, str],
                                                           subprocess.CompletedProcess[str]],
                                            slurm_cluster: SlurmCluster) -> None:
    tmp, _, proc = diamond
    jobs = submitted(proc.stderr)
    assert sorted(jobs) == ["base", "left", "right", "top"], proc.stderr
    assert re.fullmatch(r"diamond [a-z2-7]{32}\n", proc.stdout)
    for name, job in jobs.items():
        prefix = artifact(tmp / "store", name)
        log = (prefix / ".hdenv" / "build.log").read_text()
        assert log.splitlines()[0] == f"hdenv: slurm job {job} on {HOST}", log
        meta = json.loads((prefix / ".hdenv" / "artifact.json").read_text())
        assert meta["slurm"] == {"job_id": job, "node": HOST}
        assert slurm_cluster.queue([job], all_states=True) == {job: "COMPLETED"}
    # slurm-options reach every job; a package's own time comes after them and wins
    assert slurm_cluster.job_field(jobs["base"], "%l") == "30:00"
    assert slurm_cluster.job_field(jobs["left"], "%l") == "10:00"


def test_diamond_order_follows_the_dag(diamond: tuple[Path, dict[str, str],
                                                      subprocess.CompletedProcess[str]]) -> None:
    tmp, _, _ = diamond

    def stamp(name: str, what: str) -> float:
        return float((artifact(tmp / "store", name) / "share" / "times" / f"{name}.{what}")
                     .read_text())

    for name, deps in {"left": ["base"], "right": ["base"], "top": ["left", "right"]}.items():
        for dep in deps:
            assert stamp(name, "started") >= stamp(dep, "finished"), (name, dep)


def test_cores_follow_the_package_cpus(diamond: tuple[Path, dict[str, str],
                                                      subprocess.CompletedProcess[str]],
                                       slurm_cluster: SlurmCluster) -> None:
    """`slurm = { cpus = 2 }` is the job's --cpus-per-task and the build's HDENV_JOBS."""
    tmp, _, proc = diamond
    jobs = submitted(proc.stderr)
    seen = {name: int((artifact(tmp / "store", name) / "share" / "times" / f"{name}.jobs")
                      .read_text()) for name in jobs}
    assert seen == {"base": 1, "left": 2, "right": 1, "top": 1}
    assert slurm_cluster.job_field(jobs["left"], "%c") == "2"


def test_slurm_settings_do_not_change_ids(diamond: tuple[Path, dict[str, str],
                                                         subprocess.CompletedProcess[str]],
                                          hdenv_exe_mod: str, tmp_path: Path,
                                          slurm_cluster: SlurmCluster) -> None:
    """The same stack built locally gives the same profile hash: `slurm` is not in the spec."""
    tmp, _, proc = diamond
    (tmp_path / "diamond.toml").write_text(DIAMOND)
    local = hdenv(hdenv_exe_mod, hdenv_env(tmp_path, slurm_cluster), "build",
                  str(tmp_path / "diamond.toml"))
    assert local.returncode == 0, local.stderr
    assert local.stdout == proc.stdout
    assert "submitted" not in local.stderr


def test_second_run_submits_nothing(diamond: tuple[Path, dict[str, str],
                                                   subprocess.CompletedProcess[str]],
                                    hdenv_exe_mod: str, slurm_cluster: SlurmCluster) -> None:
    tmp, env, first = diamond
    before = all_jobs(slurm_cluster)
    again = hdenv(hdenv_exe_mod, env, "build", str(tmp / "diamond.toml"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert "submitted" not in again.stderr
    assert "0 built, 5 already present" in again.stderr
    assert all_jobs(slurm_cluster) == before


def test_dry_run_lists_jobs_and_submits_nothing(hdenv_exe_mod: str, tmp_path: Path,
                                                slurm_cluster: SlurmCluster) -> None:
    (tmp_path / "diamond.toml").write_text(DIAMOND)
    env = hdenv_env(tmp_path, slurm_cluster, 'slurm-options = ["--partition=hdenvtest"]\n')
    before = all_jobs(slurm_cluster)
    proc = hdenv(hdenv_exe_mod, env, "build", str(tmp_path / "diamond.toml"),
                 "--executor", "slurm", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    jobs = [ln for ln in proc.stdout.splitlines() if ln.startswith("  job ")]
    assert "would submit 4 Slurm job(s), held until all are submitted" in proc.stdout
    assert [re.match(r"  job (\d): (\w+)/", ln).groups() for ln in jobs] == [  # type: ignore[union-attr]
        ("1", "base"), ("2", "left"), ("3", "right"), ("4", "top")]
    assert jobs[0].endswith("--cpus-per-task=1 --partition=hdenvtest")
    assert "--cpus-per-task=2 --partition=hdenvtest --time=10:00  afterok: job 1 (base)" in jobs[1]
    assert jobs[3].endswith("afterok: job 2 (left), job 3 (right)")
    assert all_jobs(slurm_cluster) == before
    assert not (tmp_path / "store" / "artifacts").exists() or not any(
        (tmp_path / "store" / "artifacts").iterdir())


FAILING = (package("base", [])
           + "[packages.bad]\nversion = \"1\"\ndeps = [\"base\"]\n"
             "script = 'echo the-bad-package-says-why; exit 3'\n\n"
           + package("needs-bad", ["bad"])
           + package("fine", ["base"]))


def test_failure_cancels_dependents_and_reports_the_log(hdenv_exe_mod: str, tmp_path: Path,
                                                        slurm_cluster: SlurmCluster) -> None:
    (tmp_path / "fail.toml").write_text(FAILING)
    env = hdenv_env(tmp_path, slurm_cluster)
    proc = hdenv(hdenv_exe_mod, env, "build", str(tmp_path / "fail.toml"), "--executor",
                 "slurm", "--keep-going")
    assert proc.returncode == 1, proc.stderr
    jobs = submitted(proc.stderr)
    assert set(jobs) == {"base", "bad", "needs-bad", "fine"}
    assert re.search(rf"^FAILED bad/1/\w+: job {jobs['bad']} failed .*: build of bad/1/\w+"
                     r" failed \(exit 3\); log: (\S+)$", proc.stderr, re.M), proc.stderr
    log = re.search(r"failed \(exit 3\); log: (\S+)", proc.stderr).group(1)  # type: ignore[union-attr]
    assert "the-bad-package-says-why" in Path(log).read_text()
    assert "--- last lines of the build log ---\nhdenv: slurm job" in proc.stderr
    assert "\nthe-bad-package-says-why\n" in proc.stderr
    assert re.search(rf"^cancelled job {jobs['needs-bad']} \(needs-bad/1/\w+\): needs bad/1/",
                     proc.stderr, re.M), proc.stderr
    assert slurm_cluster.queue([jobs["needs-bad"]], all_states=True) == {
        jobs["needs-bad"]: "CANCELLED"}
    # --keep-going: what does not depend on the failure is built
    assert (tmp_path / "store" / "artifacts" / "fine").is_dir()
    assert not (tmp_path / "store" / "artifacts" / "needs-bad").exists()
    assert proc.stderr.endswith("hdenv: error: 1 build(s) failed: bad; 1 skipped\n")
    assert proc.stdout == ""


def test_failure_without_keep_going_stops_pending_jobs(hdenv_exe_mod: str, tmp_path: Path,
                                                       slurm_cluster: SlurmCluster) -> None:
    """As locally: after a failure nothing new starts; what runs finishes."""
    stack = ("[packages.bad]\nversion = \"1\"\nscript = 'sleep 1; exit 1'\n\n"
             "[packages.slow]\nversion = \"1\"\nscript = 'sleep 8; mkdir -p \"$PREFIX/x\"'\n\n"
             + package("later", ["slow"]))
    (tmp_path / "stop.toml").write_text(stack)
    proc = hdenv(hdenv_exe_mod, hdenv_env(tmp_path, slurm_cluster), "build",
                 str(tmp_path / "stop.toml"), "--executor", "slurm")
    assert proc.returncode == 1, proc.stderr
    jobs = submitted(proc.stderr)
    assert re.search(rf"^cancelled job {jobs['later']} \(later/1/\w+\): stopping after a"
                     " failure", proc.stderr, re.M), proc.stderr
    assert slurm_cluster.queue([jobs["later"]], all_states=True) == {jobs["later"]: "CANCELLED"}
    assert slurm_cluster.queue([jobs["slow"]], all_states=True) == {jobs["slow"]: "COMPLETED"}
    assert (tmp_path / "store" / "artifacts" / "slow").is_dir()


SLEEPER = ("[packages.sleeper]\nversion = \"1\"\n"
           "script = 'mkdir -p \"$PREFIX/bin\"; echo sleeper-is-sleeping; sleep 300'\n\n"
           + package("after", ["sleeper"]))


def start_sleeper(hdenv_exe: str, tmp_path: Path, cluster: SlurmCluster
                  ) -> tuple[subprocess.Popen[str], Path, dict[str, str]]:
    """`hdenv build` of SLEEPER, returned once the sleeper's build script is running."""
    (tmp_path / "sleep.toml").write_text(SLEEPER)
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        proc = subprocess.Popen([hdenv_exe, "build", str(tmp_path / "sleep.toml"),
                                 "--executor", "slurm"],
                                env=hdenv_env(tmp_path, cluster), stdout=subprocess.PIPE,
                                stderr=f, text=True)
    # the build writes its $PREFIX in its private root alias (build/rootalias.py)
    tmp = tmp_path / "store" / "tmp"
    deadline = time.monotonic() + 120
    while not (re.search(r"^job \d+ on \S+: building sleeper", err.read_text(), re.M)
               and list(tmp.glob("*/*.root-*/artifacts/sleeper/1/*/bin"))):  # it is running
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(err.read_text() + cluster.logs())
        time.sleep(0.2)
    jobs = submitted(err.read_text())
    assert cluster.queue(list(jobs.values())) == {
        jobs["sleeper"]: "RUNNING", jobs["after"]: "PENDING"}
    return proc, err, jobs


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_cancels_exactly_this_runs_jobs(hdenv_exe_mod: str, tmp_path: Path,
                                               slurm_cluster: SlurmCluster,
                                               signum: signal.Signals) -> None:
    foreign = slurm_cluster.run("sbatch", "--parsable", "--hold", "--wrap", "true")
    assert foreign.returncode == 0, foreign.stderr
    foreign_id = foreign.stdout.strip()
    proc, err, jobs = start_sleeper(hdenv_exe_mod, tmp_path, slurm_cluster)
    try:
        proc.send_signal(signum)
        assert proc.wait(timeout=90) == 128 + signum, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert f"cancelled 2 Slurm job(s) of this run: {jobs['sleeper']}, {jobs['after']}" in text
    assert text.endswith(f"hdenv: interrupted by {signum.name}\n")
    assert slurm_cluster.queue(list(jobs.values())) == {}
    # another job of the same user is not this run's: left alone
    assert slurm_cluster.queue([foreign_id]) == {foreign_id: "PENDING"}
    slurm_cluster.run("scancel", foreign_id)
    # the cancelled build, once its job's processes have ended, left no half-built artifact
    assert slurm_cluster.wait_for_steps(), "the cancelled job's processes did not end"
    version_dir = tmp_path / "store" / "artifacts" / "sleeper" / "1"
    deadline = time.monotonic() + 20  # slurmd reaps the step a moment after it ends
    while list(version_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(version_dir.iterdir()) == []


def test_job_cancelled_from_outside_is_a_failure(hdenv_exe_mod: str, tmp_path: Path,
                                                 slurm_cluster: SlurmCluster) -> None:
    """An admin's scancel (or a time limit) stops the build: reported with the log so far."""
    proc, err, jobs = start_sleeper(hdenv_exe_mod, tmp_path, slurm_cluster)
    try:
        slurm_cluster.run("scancel", jobs["sleeper"])
        assert proc.wait(timeout=90) == 1, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert re.search(rf"^FAILED sleeper/1/\w+: job {jobs['sleeper']} cancelled\b.*: build of"
                     r" sleeper/1/\w+ interrupted by SIGTERM .*; log: \S+$", text, re.M), text
    assert "--- last lines of the build log ---" in text
    assert "\nsleeper-is-sleeping\n" in text
    assert re.search(rf"^cancelled job {jobs['after']} \(after/1/\w+\): needs sleeper/1/",
                     text, re.M), text
    assert text.endswith("hdenv: error: 1 build(s) failed: sleeper; 1 skipped\n")
    assert slurm_cluster.queue(list(jobs.values())) == {}


def test_what_is_upstream_is_not_submitted(hdenv_exe_mod: str, tmp_path: Path,
                                           slurm_cluster: SlurmCluster) -> None:
    """A site store below the user's: only what it lacks becomes jobs, built on top of it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "base.toml").write_text(package("base", []))
    built = hdenv(hdenv_exe_mod, hdenv_env(site, slurm_cluster), "build", str(site / "base.toml"))
    assert built.returncode == 0, built.stderr
    site_before = sorted(p.name for p in (site / "store" / "artifacts").iterdir())
    (tmp_path / "diamond.toml").write_text(DIAMOND)
    env = hdenv_env(tmp_path, slurm_cluster, f'upstreams = ["{site / "store"}"]\n')
    proc = hdenv(hdenv_exe_mod, env, "build", str(tmp_path / "diamond.toml"), "--executor",
                 "slurm")
    assert proc.returncode == 0, proc.stderr
    assert sorted(submitted(proc.stderr)) == ["left", "right", "top"]
    assert sorted(p.name for p in (site / "store" / "artifacts").iterdir()) == site_before
    assert not (tmp_path / "store" / "artifacts" / "base").exists()
    left = artifact(tmp_path / "store", "left")
    assert json.loads((left / ".hdenv" / "artifact.json").read_text())["runtime_deps"] == [
        f"base/1/{artifact(site / 'store', 'base').name}"]


def test_sbatch_refusing_a_job_cancels_the_others(hdenv_exe_mod: str, tmp_path: Path,
                                                  slurm_cluster: SlurmCluster) -> None:
    """A job sbatch refuses (a partition that does not exist) stops the run before
    anything is released; the jobs already submitted (held) are cancelled."""
    stack = package("base", []) + package("elsewhere", ["base"],
                                                'slurm = { options = ["--partition=nosuch"] }\n')
    (tmp_path / "elsewhere.toml").write_text(stack)
    proc = hdenv(hdenv_exe_mod, hdenv_env(tmp_path, slurm_cluster), "build",
                 str(tmp_path / "elsewhere.toml"), "--executor", "slurm")
    assert proc.returncode == 1, proc.stderr
    jobs = submitted(proc.stderr)
    assert list(jobs) == ["base"]
    assert f"cancelled 1 Slurm job(s) of this run: {jobs['base']}" in proc.stderr
    assert re.search(r"\nhdenv: error: elsewhere/1/\w+: sbatch failed: invalid partition"
                     " specified: nosuch; Batch job submission failed: Invalid partition name"
                     " specified\n\\Z", proc.stderr), proc.stderr
    assert slurm_cluster.queue(list(jobs.values())) == {}
    assert not (tmp_path / "store" / "artifacts" / "base").exists()


def test_unusual_pending_reason_is_shown(hdenv_exe_mod: str, tmp_path: Path,
                                         slurm_cluster: SlurmCluster) -> None:
    """A job that waits for something other than its dependencies says so, once."""
    stack = package("later", [], 'slurm = { options = ["--begin=now+3600"] }\n')
    (tmp_path / "later.toml").write_text(stack)
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        proc = subprocess.Popen([hdenv_exe_mod, "build", str(tmp_path / "later.toml"),
                                 "--executor", "slurm"], env=hdenv_env(tmp_path, slurm_cluster),
                                stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.monotonic() + 60
        while "pending: BeginTime" not in err.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        time.sleep(3)  # several more polls: still said once
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    job = submitted(text)["later"]
    assert re.findall(r"^job \d+ \(later/1/\w+\) pending: \w+$", text, re.M) == [
        f"job {job} ({artifact_id_of(text, 'later')}) pending: BeginTime"]
    assert slurm_cluster.queue([job]) == {}


def test_job_no_node_can_run_fails_at_release(hdenv_exe_mod: str, tmp_path: Path,
                                              slurm_cluster: SlurmCluster) -> None:
    """More cores than any node has: sbatch takes it, `scontrol release` refuses it,
    and the run stops there, naming the package, rather than waiting forever."""
    stack = package("base", []) + package("wide", ["base"], "slurm = { cpus = 99 }\n")
    (tmp_path / "wide.toml").write_text(stack)
    proc = hdenv(hdenv_exe_mod, hdenv_env(tmp_path, slurm_cluster), "build",
                 str(tmp_path / "wide.toml"), "--executor", "slurm")
    assert proc.returncode == 1, proc.stderr
    jobs = submitted(proc.stderr)
    assert re.search(rf"\nhdenv: error: scontrol failed: .* for job {jobs['wide']}"
                     rf" \(wide/1/\w+\)", proc.stderr), proc.stderr
    assert f"cancelled 2 Slurm job(s) of this run: {jobs['base']}, {jobs['wide']}" in proc.stderr
    assert slurm_cluster.queue(list(jobs.values())) == {}


def artifact_id_of(stderr: str, name: str) -> str:
    found = re.search(rf"^submitted job \d+ for ({name}/\S+)", stderr, re.M)
    assert found, stderr
    return found.group(1)

"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd.

Everything lives in one temporary directory (munge key and socket, slurm.conf,
state, spool, logs, pid files) and talks over free loopback ports, so several
test runs on one machine never meet, and nothing of the machine's own Slurm or
munge configuration is touched. Teardown stops exactly the three processes it
started, by their pids. Where they cannot start (no Slurm, not root) the tests
skip with the reason; under CI=true that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import require, require_tool

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]  # SLURM_CONF for the client commands (and so for hdenv)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=60)

    def queue(self, job_ids: list[str] | None = None, *, all_states: bool = False) -> dict[str, str]:
        """job id -> state, as squeue shows them (by default: only jobs not yet ended)."""
        args = ["squeue", "--noheader", "--format=%i %T"]
        if job_ids is not None:
            if not job_ids:
                return {}
            args.append(f"--jobs={','.join(job_ids)}")
        if all_states:
            args.append("--states=all")
        proc = self.run(*args)
        if proc.returncode != 0 and "Invalid job id" in proc.stderr:
            return {}
        assert proc.returncode == 0, proc.stderr
        return dict(line.split() for line in proc.stdout.splitlines() if line.strip())

    def job_field(self, job: str, fmt: str) -> str:
        """One squeue field (e.g. `%l`, the time limit) of a job, ended or not."""
        proc = self.run("squeue", "--noheader", "--states=all", f"--jobs={job}",
                        f"--format={fmt}")
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def wait_for_steps(self, timeout: float = 60.0) -> bool:
        """Wait until no job of this cluster runs any process: squeue forgets a
        cancelled job before its step daemon has delivered the signal and the job's
        own clean-up has run. False if some are still there at the deadline."""
        deadline = time.monotonic() + timeout
        while _step_daemons(self.conf):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def logs(self) -> str:
        parts = []
        for log in sorted(self.root.glob("log/*")):
            parts.append(f"--- {log.name} ---\n" + log.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_line() -> str:
    """This machine as `slurmd -C` sees it (CPUs, sockets, RealMemory), named as Slurm will."""
    proc = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("NodeName=")), "")
    require(bool(line), f"slurmd -C printed no node line: {proc.stdout}{proc.stderr}")
    return re.sub(r"^NodeName=\S+", f"NodeName={socket.gethostname().split('.')[0]}", line)


def _write_conf(root: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    node = _node_line()
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=hdenvtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
ReturnToService=2
KillWait=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
{node} State=UNKNOWN
PartitionName=hdenvtest Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _wait_for(check: object, what: str, cluster: SlurmCluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        for proc in cluster.procs:
            if proc.poll() is not None:
                name = Path(str(proc.args[0] if isinstance(proc.args, list) else proc.args)).name
                require(False, f"{name} exited ({proc.returncode}) while waiting for"
                               f" {what}\n{cluster.logs()}")
        time.sleep(0.2)
    require(False, f"timed out waiting for {what}\n{cluster.logs()}")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop exactly what we started, newest first (slurmd, slurmctld, munged)."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _step_daemons(conf: Path) -> list[int]:
    """Pids of the slurmstepd processes of this cluster (slurmd started them for our jobs;
    they carry our SLURM_CONF), so that none outlives the cluster."""
    mine = f"SLURM_CONF={conf}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "slurmstepd":
                continue
            if mine in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _stop_steps(conf: Path, timeout: float = 10.0) -> None:
    """Give our jobs' step daemons time to finish, then stop the ones left."""
    deadline = time.monotonic() + timeout
    while _step_daemons(conf) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _step_daemons(conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_cluster(root: Path) -> Iterator[SlurmCluster]:
    for tool in TOOLS:
        require_tool(tool)
    require(os.geteuid() == 0, "slurmd must run as root to start jobs (run the tests as root)")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    conf = _write_conf(root)
    cluster = SlurmCluster(root, conf, {"SLURM_CONF": str(conf)})
    log = open(root / "log" / "daemons.out", "ab")  # noqa: SIM115 - lives as long as they do
    try:
        cluster.procs.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={root}/munge/socket",
             f"--key-file={key}", f"--pid-file={root}/munge/pid",
             f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/seed"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        _wait_for(lambda: (root / "munge" / "socket").exists(), "munged's socket", cluster)
        env = {**os.environ, **cluster.env}
        cluster.procs.append(subprocess.Popen(["slurmctld", "-D", "-c", "-f", str(conf)],
                                              stdout=log, stderr=log, env=env,
                                              stdin=subprocess.DEVNULL))
        cluster.procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)],
                                              stdout=log, stderr=log, env=env,
                                              stdin=subprocess.DEVNULL))

        def idle() -> bool:
            proc = cluster.run("sinfo", "--noheader", "--format=%T")
            return proc.returncode == 0 and proc.stdout.strip() == "idle"

        _wait_for(idle, "the node to be idle in sinfo", cluster)
        yield cluster
        # this private cluster's jobs are all the tests' own: none outlives it
        cluster.run("scancel", f"--user={pwd.getpwuid(os.getuid()).pw_name}")
        _wait_for(lambda: not cluster.queue(), "the queue to empty", cluster)
    finally:
        _stop_steps(conf)
        _stop(cluster.procs)
        _stop_steps(conf, timeout=0)
        log.close()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    # under /tmp, not pytest's deep tmp_path: munged's socket path must fit in 108 bytes
    root = Path(tempfile.mkdtemp(prefix="hdenv-slurm-"))
    try:
        yield from start_cluster(root)
    finally:
        # a job's slurmstepd may still be writing its spool for a moment after slurmd
        # has gone: retry until the directory is really gone
        deadline = time.monotonic() + 30
        while root.exists() and time.monotonic() < deadline:
            shutil.rmtree(root, ignore_errors=True)
            if root.exists():
                time.sleep(0.5)

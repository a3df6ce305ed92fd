"""Slurm as hdenv uses it: sbatch, scontrol release, squeue and scancel.

Through the command-line tools rather than a library binding: they are what
every site has, in the version that matches its controller, and they find the
site's slurm.conf (or `SLURM_CONF`) exactly as they do for the user. Nothing
here knows about stacks or the store; the executor decides what to submit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import BuildError, UserError

COMMANDS = ("sbatch", "scontrol", "squeue", "scancel")

# Job states (squeue %T) by what they mean for a build.
WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                     "CONFIGURING"})
DONE = frozenset({"COMPLETED"})
FAILED = frozenset({"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                    "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"})
# anything else (RUNNING, COMPLETING, SUSPENDED, STOPPED, SIGNALING, STAGE_OUT, ...) runs

# sbatch options hdenv sets itself: a site or package setting them would break
# the held submission, the dependency edges, the job output hdenv reads or the
# cores the build is told it has. Long name -> short form (or "").
RESERVED = {
    "--dependency": "-d", "--hold": "-H", "--wrap": "", "--output": "-o", "--error": "-e",
    "--array": "-a", "--wait": "-W", "--parsable": "", "--chdir": "-D",
    "--kill-on-invalid-dep": "", "--cpus-per-task": "-c",
}
RESERVED_HELP = {
    "--cpus-per-task": "use `slurm = { cpus = N }` on the package or the build-jobs setting",
}
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^UNLIMITED$|^INFINITE$", re.IGNORECASE)


def reserved_option(option: str) -> str | None:
    """The reserved sbatch option `option` sets, if any (`--output=x`, `-ox`, `-o`)."""
    if option.startswith("--"):
        name = option.split("=", 1)[0]
        matches = [long for long in RESERVED if long == name]
        # sbatch accepts unambiguous abbreviations of long options (--dep=...)
        if not matches and len(name) > 4:
            matches = [long for long in RESERVED if long.startswith(name)]
        return matches[0] if len(matches) == 1 else None
    if option.startswith("-") and len(option) >= 2:
        for long, short in RESERVED.items():
            if short and option.startswith(short):
                return long
    return None


def check_options(options: Sequence[str], where: str) -> str | None:
    """Why `options` cannot be passed to sbatch by hdenv, or None when they can."""
    for option in options:
        if not isinstance(option, str) or not option or "\n" in option or "\0" in option:
            return f"{where}: {option!r} is not an sbatch option"
        long = reserved_option(option)
        if long is not None:
            hint = RESERVED_HELP.get(long, "hdenv sets it for every job")
            return f"{where}: {option!r} cannot be used ({long}: {hint})"
    return None


def check_time(value: str) -> bool:
    """Slurm's time formats: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    return bool(TIME_RE.match(value))


def said(command: str, proc: subprocess.CompletedProcess[str]) -> str:
    """A command's complaint on one line, without its `sbatch: error: ` prefixes."""
    lines = [ln.strip().removeprefix(f"{command}: error: ").removeprefix(f"{command}: ")
             for ln in proc.stderr.splitlines() if ln.strip()]
    return "; ".join(lines) or f"exit {proc.returncode}"


@dataclass(frozen=True)
class JobState:
    state: str  # squeue %T: PENDING, RUNNING, COMPLETED, FAILED, ...
    reason: str  # squeue %r: why it waits (Dependency, JobHeldUser, ...)
    nodes: str  # squeue %N: where it runs

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def finished(self) -> bool:
        return self.state in DONE or self.state in FAILED

    @property
    def ok(self) -> bool:
        return self.state in DONE


class Slurm:
    """The four commands, with one-line errors instead of tracebacks."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = dict(env) if env is not None else None

    def require(self) -> None:
        missing = [c for c in COMMANDS if shutil.which(c) is None]
        if missing:
            raise UserError(f"--executor slurm needs Slurm's {', '.join(missing)} on PATH"
                            " (run hdenv where you would run sbatch)")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            # a session of its own: Ctrl-C on the terminal is hdenv's to handle, and an
            # sbatch killed halfway could submit a job whose id nobody reads
            proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env,
                                  stdin=subprocess.DEVNULL, timeout=120,
                                  start_new_session=True)
        except FileNotFoundError:
            raise UserError(f"{args[0]} is not installed (needed by --executor slurm)") from None
        except subprocess.TimeoutExpired:
            raise BuildError(f"{args[0]} did not answer within 120 s") from None
        if check and proc.returncode != 0:
            raise BuildError(f"{args[0]} failed: {said(args[0], proc)}")
        return proc

    def submit(self, script: str, options: Sequence[str]) -> str:
        """Submit a batch script; returns the job id."""
        out = self._run("sbatch", "--parsable", *options, script).stdout.strip()
        job_id = out.split(";", 1)[0]  # "ID" or "ID;CLUSTER"
        if not job_id.isdigit():
            raise BuildError(f"sbatch printed no job id: {out!r}")
        return job_id

    def release(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self._run("scontrol", "release", ",".join(ids))

    def cancel(self, job_ids: Iterable[str]) -> None:
        """Cancel jobs; ones that already ended are not an error."""
        ids = list(job_ids)
        if ids:
            self._run("scancel", *ids, check=False)

    def states(self, job_ids: Iterable[str], *, all_states: bool = True) -> dict[str, JobState]:
        """The state of each job Slurm still knows (ended jobs stay for MinJobAge).

        With `all_states=False`, only what `squeue` shows by default: jobs
        still pending, running or completing.
        """
        ids = list(job_ids)
        if not ids:
            return {}
        args = ["squeue", "--noheader", "--format=%i|%T|%r|%N", f"--jobs={','.join(ids)}"]
        if all_states:
            args.append("--states=all")
        proc = self._run(*args, check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:  # every one of them is gone
                return {}
            raise BuildError(f"squeue failed: {said('squeue', proc)}")
        found: dict[str, JobState] = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4 and parts[0] in ids:
                found[parts[0]] = JobState(parts[1], parts[2], parts[3])
        return found

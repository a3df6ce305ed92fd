"""The compute-node side: build exactly one stored spec, as a batch job asked.

`hdenv build-node ID` is what every job script runs. It takes nothing from
the stack file: the spec comes from the shared store by hash (and must hash
to it), sources must already be in the store (the submitting side fetched
them), and the artifact is installed under the store's per-artifact lock, so
two runs that both submitted it build it once. It leaves a small result file
for the submitting side: the job's state says *that* it failed, the result
says *why* (the log tail and the log path, as a local build reports them).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..build import processes
from ..build.builder import BuildOptions, build_node, failed_log_path, tail
from ..build.plan import Node
from ..errors import HdenvError, Interrupted, UserError
from ..store.artifacts import artifact_id
from ..store.fsutil import atomic_write_json
from ..store.hashing import spec_hash
from ..store.layout import Store, split_id
from ..store.sources import SourceStore


def stored_node(store: Store, aid: str) -> Node:
    """The build node for artifact id `aid`, from its spec in the store, checked."""
    _, _, hash_ = split_id(aid)
    spec = store.read_spec(hash_)
    if not isinstance(spec, dict) or spec_hash(spec) != hash_ or artifact_id(spec) != aid:
        raise UserError(f"the stored spec of {aid} does not hash to its id"
                        f" ({store.spec_path(hash_)} was changed)")
    if spec.get("kind") != "build":
        raise UserError(f"{aid} is not a build (kind {spec.get('kind')!r})")
    return Node.from_spec(spec)


def where_am_i() -> dict[str, str]:
    """The node, and the Slurm job when there is one: recorded in the log and artifact.json."""
    out = {"node": socket.gethostname()}
    if os.environ.get("SLURM_JOB_ID"):
        out["job_id"] = os.environ["SLURM_JOB_ID"]
    return out


def build_stored(store: Store, aid: str, *, jobs: int, result: Path | None = None,
                 options: BuildOptions | None = None) -> bool:
    """Build `aid` unless present; True if this call built it. Writes `result` either way."""
    place = where_am_i()
    outcome: dict[str, Any] = {"id": aid, "ok": False, "started": time.time(), **place}
    job = f"slurm job {place['job_id']}" if "job_id" in place else "build-node"
    options = options or BuildOptions()
    options.log_first = f"hdenv: {job} on {place['node']}"
    if "job_id" in place:
        options.meta["slurm"] = place
    try:
        with processes.interruptible():  # scancel and time limits send SIGTERM
            node = stored_node(store, aid)
            _, built = build_node(store, node, SourceStore(store, []), jobs=jobs,
                                  options=options)
        outcome.update(ok=True, built=built)
        return built
    except HdenvError as e:
        outcome["error"] = e.render()
        raise
    except Interrupted as e:
        outcome["error"] = f"build of {aid} {e} (the job was cancelled, or ran out of time)"
        log = failed_log_path(store, aid)
        if log.is_file() and log.stat().st_mtime >= outcome["started"]:
            outcome["error"] += (f"; log: {log}\n--- last lines of the build log ---\n"
                                 f"{tail(log)}")
        raise
    finally:
        outcome["finished"] = time.time()
        if result is not None:
            with contextlib.suppress(OSError):
                atomic_write_json(result, outcome)

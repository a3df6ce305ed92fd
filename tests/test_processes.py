"""Build process groups: killed when the build ends, and all at once on a signal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from usersupport import gone

from hdenv.build import processes
from hdenv.errors import Interrupted


def test_what_a_build_leaves_behind_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    with open(tmp_path / "log", "wb") as log:
        rc = processes.run_in_group(
            ["sh", "-c", f"sh -c 'echo $$ > {pid_file}; exec sleep 300' & sleep 0.3; exit 3"],
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log=log)
    assert rc == 3
    assert gone(int(pid_file.read_text()))


def test_stop_all_stops_running_groups_and_refuses_new_ones(tmp_path: Path) -> None:
    results: list[int] = []

    def build() -> None:
        with open(tmp_path / "log", "ab") as log:
            results.append(processes.run_in_group(
                ["sh", "-c", "trap '' TERM; sleep 300 & wait"], cwd=tmp_path,
                env={"PATH": "/usr/bin:/bin"}, log=log))

    with processes.interruptible():
        worker = threading.Thread(target=build)
        worker.start()
        while not processes._running:
            time.sleep(0.05)
        assert processes.stop_all(grace=0.5) == 1  # TERM ignored: KILL after the grace
        worker.join(timeout=10)
        assert results and results[0] < 0
        with pytest.raises(Interrupted), open(tmp_path / "log", "ab") as log:
            processes.run_in_group(["true"], cwd=tmp_path, env={}, log=log)
    assert not processes.stopping()  # the next build may run

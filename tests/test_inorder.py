"""run_in_order: what pulls and pushes rely on -- prerequisites first, `jobs` at once, a
failure or a loop reported, not waited for forever."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from hdenv.exchange.inorder import run_in_order


def test_each_node_starts_only_after_its_prerequisites_finished() -> None:
    rng = random.Random(7)
    nodes = list(range(60))
    prerequisites = {n: rng.sample(range(n), min(n, rng.randint(0, 3))) for n in nodes}
    finished: set[int] = set()
    lock = threading.Lock()
    early: list[int] = []

    def work(n: int) -> int:
        with lock:
            if not set(prerequisites[n]) <= finished:
                early.append(n)
        time.sleep(rng.random() / 500)
        with lock:
            finished.add(n)
        return n * n

    rng.shuffle(nodes)  # the order given is not the dependency order
    results = run_in_order(nodes, lambda n: prerequisites[n], 4, work)
    assert early == []
    assert results == {n: n * n for n in nodes}


def test_jobs_calls_run_at_once_and_never_more() -> None:
    jobs = 3
    together = threading.Barrier(jobs, timeout=10)  # broken unless `jobs` run side by side
    running = 0
    most = 0
    lock = threading.Lock()

    def work(n: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if n < jobs:
            together.wait()
        time.sleep(0.002)
        with lock:
            running -= 1

    run_in_order(list(range(20)), lambda _n: [], jobs, work)
    assert most == jobs


def test_results_arrive_in_the_calling_thread_one_at_a_time() -> None:
    caller = threading.get_ident()
    seen: list[tuple[int, int]] = []
    run_in_order(list(range(30)), lambda n: [n - 1] if n % 3 else [], 4, lambda n: -n,
                 done=lambda n, r: seen.append((n, r)) if threading.get_ident() == caller
                 else None)
    assert sorted(seen) == [(n, -n) for n in range(30)]


def test_a_settled_node_is_not_run_and_settles_its_dependents() -> None:
    ran: list[str] = []

    def work(n: str) -> str:
        ran.append(n)
        return "failed" if n == "a" else "ok"

    def settle(_n: str, pre: list[str], results: dict[str, str]) -> str | None:
        return "skipped" if any(results[p] != "ok" for p in pre) else None

    prerequisites = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    results = run_in_order(list(prerequisites), lambda n: prerequisites[n], 2, work,
                           settle=settle)
    assert results == {"a": "failed", "b": "skipped", "c": "skipped", "d": "ok"}
    assert sorted(ran) == ["a", "d"]


def test_nodes_waiting_on_each_other_get_the_loop_result() -> None:
    prerequisites = {"a": ["b"], "b": ["a"], "c": []}
    results = run_in_order(list(prerequisites), lambda n: prerequisites[n], 2, str.upper,
                           loop=lambda n: f"{n} loops")
    assert results == {"a": "a loops", "b": "b loops", "c": "C"}
    with pytest.raises(ValueError, match="prerequisites in a loop"):
        run_in_order(list(prerequisites), lambda n: prerequisites[n], 2, str.upper)


def failing_at_zero(started: list[int], pause: float = 0.0) -> Callable[[int], int]:
    """A call that notes each node it starts, raises for node 0 and sleeps `pause` else."""
    def work(n: int) -> int:
        started.append(n)
        if n == 0:
            raise RuntimeError("boom")
        time.sleep(pause)
        return n

    return work


def test_an_exception_stops_what_has_not_started_and_propagates() -> None:
    started: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        # every other node needs 0: none of them may start once it failed
        run_in_order(list(range(10)), lambda n: [0] if n else [], 2, failing_at_zero(started))
    assert started == [0]


def test_an_exception_cancels_the_calls_still_queued() -> None:
    started: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        run_in_order(list(range(10)), lambda _n: [], 1, failing_at_zero(started, 0.01))
    # the one lane may have taken the next call before the failure was seen; no more
    assert started[0] == 0 and len(started) <= 2

"""Several transfers in flight, each only after the ones it depends on.

A pull installs an artifact only once its references are installed, and a push
uploads one only once its references are in the cache (a reader must never
find an entry it cannot complete). Both run up to `jobs` at once in threads:
downloads, uploads, zstd and hashing leave the GIL, so they overlap each other
and the Python work (tar, relocation) of the rest.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

N = TypeVar("N", bound=Hashable)
R = TypeVar("R")


class Waiting(Generic[N]):
    """The nodes not yet started, each with the prerequisites it still waits for."""

    def __init__(self, nodes: list[N], prerequisites: Callable[[N], list[N]]):
        among = set(nodes)
        self.left = {n: [p for p in prerequisites(n) if p in among and p != n] for n in nodes}

    def ready(self, finished: dict[N, R]) -> list[N]:
        """Nodes whose prerequisites have all finished, taken out of the waiting set."""
        out = [n for n, pre in self.left.items() if all(p in finished for p in pre)]
        for n in out:
            del self.left[n]
        return out


def run_in_order(nodes: list[N], prerequisites: Callable[[N], list[N]], jobs: int,
                 work: Callable[[N], R], *,
                 settle: Callable[[N, list[N], dict[N, R]], R | None] = lambda *_a: None,
                 loop: Callable[[N], R] | None = None,
                 done: Callable[[N, R], None] = lambda *_a: None,
                 interrupted: Callable[[], None] = lambda: None) -> dict[N, R]:
    """{node: work(node)} with up to `jobs` calls at once, each node after those of its
    prerequisites that are among `nodes`, in the order of `nodes` as far as that allows.

    `settle(node, its prerequisites, results so far)` may give a node's result without
    running it (a prerequisite failed); `loop(node)` is the result of nodes whose
    prerequisites never finish (they wait on each other; without `loop`, ValueError).
    `done(node, result)` is called in this thread as each result arrives, so what it
    prints comes out whole and in one place. An exception from `work` stops the rest
    (calls already running finish) and propagates. A signal (Interrupted,
    KeyboardInterrupt: not an Exception) calls `interrupted()` before the calls running
    are waited for, so they can be cut short (transfers that would wait for a slow
    server).
    """
    waiting = Waiting(nodes, prerequisites)
    pre = dict(waiting.left)
    results: dict[N, R] = {}
    running: dict[Future[R], N] = {}
    # each call hands its future here as it ends: one `get` a result, where waiting on
    # the set running (concurrent.futures.wait) hooked into and out of every future in it
    # each time, holding the GIL the transfers need: 200 calls of 4 ms on 6 lanes took
    # 0.06 s of CPU that way and 0.02 s this way
    completed: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()

    def finish(node: N, result: R) -> None:
        results[node] = result
        done(node, result)

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="hdenv-io") as pool:
        try:
            while True:
                ready = waiting.ready(results)
                while ready:  # a settled node may settle its dependents at once, and theirs
                    for node in ready:
                        settled = settle(node, pre[node], results)
                        if settled is not None:
                            finish(node, settled)
                        else:
                            future = pool.submit(work, node)
                            running[future] = node
                            future.add_done_callback(completed.put)
                    ready = waiting.ready(results)
                if not running:
                    break
                future = completed.get()
                finish(running.pop(future), future.result())
        except BaseException as e:
            for future in running:
                future.cancel()
            if not isinstance(e, Exception):
                interrupted()
            raise
    if waiting.left:
        if loop is None:
            raise ValueError(f"prerequisites in a loop: {sorted(map(str, waiting.left))}")
        for node in list(waiting.left):
            finish(node, loop(node))
    return results

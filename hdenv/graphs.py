"""Dependency order without recursion.

Stack files, bundles and stores describe graphs whose depth is someone
else's choice: a 1,200-deep chain of packages made Python's recursion limit
an `internal error`. Every walk over such a graph goes through here, with a
stack of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


class Cycle(Exception):
    """`path` runs from a node back to itself."""

    def __init__(self, path: list[object]):
        super().__init__(" -> ".join(str(p) for p in path))
        self.path = path


def postorder(starts: Iterable[N], children: Callable[[N], Iterable[N]]) -> list[N]:
    """Every node reachable from `starts`, each after all its children (depth first,
    children in the order given); Cycle when a node leads back to itself."""
    out: list[N] = []
    state: dict[N, int] = {}  # 1: on the current path, 2: done
    for start in starts:
        if start in state:
            continue
        path = [start]
        state[start] = 1
        stack = [iter(children(start))]
        while stack:
            for child in stack[-1]:
                seen = state.get(child)
                if seen == 1:
                    raise Cycle([*path[path.index(child):], child])
                if seen is None:
                    state[child] = 1
                    path.append(child)
                    stack.append(iter(children(child)))
                    break
            else:
                node = path.pop()
                state[node] = 2
                out.append(node)
                stack.pop()
    return out

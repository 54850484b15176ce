"""Which slots could each join have filled? Feasibility of use assignments, as a flow problem.

The core describes what the invite counts say as *slots* (see `diff.py`): "code A gained 2 uses between these
two fetches" is a slot that exactly 2 joins must fill; "a deleted invite may have been used up to 3 times" is
a slot that 0 to 3 joins may fill; "no invite" takes any number. Each join may fill one of the slots it can
reach (its `options`). An *assignment* gives every join one of its options so that every slot gets between
`low` and `high` joins. A join is told apart only when every assignment puts it on slots of one invite.

Joins with the same options are interchangeable, so they are grouped into classes with a count. An assignment
is then an integral flow: source → class (exactly `count`) → slot → sink (between `low` and `high`). One
feasible flow is found with two rounds of augmenting paths (first the lower bounds, then the rest). Any two
feasible flows differ by cycles in the residual graph, so a class can put a member on option `o` iff it does
so already or `o` and the class lie on a common residual cycle: the same strongly connected component.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

_SOURCE = 0
_SINK = 1
_UNBOUNDED = 1 << 60


def possible_options(
    classes: Sequence[tuple[Sequence[int], int]],
    bounds: Sequence[tuple[int, int | None]],
) -> list[set[int]] | None:
    """For each class (options, count), the options some feasible assignment uses for one of its members.

    `bounds[i]` is slot i's (low, high), high None when unbounded. Returns None when no assignment exists:
    the counts contradict the assumptions (a use by a join the core never heard of), and the caller relaxes.
    """
    n_classes = len(classes)
    first_slot = 2 + n_classes
    n_nodes = first_slot + len(bounds)
    residual: list[dict[int, int]] = [{} for _ in range(n_nodes)]

    def add(u: int, v: int, cap: int) -> None:
        residual[u][v] = residual[u].get(v, 0) + cap
        residual[v].setdefault(u, 0)

    for index, (options, count) in enumerate(classes):
        node = 2 + index
        add(_SOURCE, node, count)
        for option in options:
            add(node, first_slot + option, count)
    for index, (low, _high) in enumerate(bounds):
        add(first_slot + index, _SINK, low)

    needed = sum(low for low, _ in bounds)
    class_nodes = range(2, first_slot)
    if _push_direct(residual, class_nodes) + _max_flow(residual) < needed:
        return None
    for index, (low, high) in enumerate(bounds):  # lift each slot's cap from `low` to `high`
        residual[first_slot + index][_SINK] += _UNBOUNDED if high is None else high - low
    _push_direct(residual, class_nodes)
    _max_flow(residual)
    if any(residual[_SOURCE][2 + index] for index in range(n_classes)):
        return None  # some join fits nowhere

    # Flow on class→slot is the reverse residual; a slot's total is the reverse residual on slot→sink.
    graph: list[list[int]] = [[] for _ in range(n_nodes)]
    for index, (options, count) in enumerate(classes):
        node = 2 + index
        for option in options:
            slot = first_slot + option
            flow = residual[slot][node]
            if flow < count:
                graph[node].append(slot)
            if flow > 0:
                graph[slot].append(node)
    for index, (low, high) in enumerate(bounds):
        slot = first_slot + index
        total = residual[_SINK][slot]
        if high is None or total < high:
            graph[slot].append(_SINK)
        if total > low:
            graph[_SINK].append(slot)
    component = _strong_components(graph)

    result: list[set[int]] = []
    for index, (options, _count) in enumerate(classes):
        node = 2 + index
        result.append(
            {
                option
                for option in options
                if residual[first_slot + option][node] > 0
                or component[first_slot + option] == component[node]
            }
        )
    return result


def _push_direct(residual: list[dict[int, int]], class_nodes: range) -> int:
    """Send what fits straight along source → class → slot → sink: the bulk of the flow, without a search."""
    total = 0
    for node in class_nodes:
        for slot in list(residual[node]):
            if slot == _SOURCE:
                continue
            amount = min(residual[_SOURCE][node], residual[node][slot], residual[slot][_SINK])
            if amount > 0:
                for u, v in ((_SOURCE, node), (node, slot), (slot, _SINK)):
                    residual[u][v] -= amount
                    residual[v][u] += amount
                total += amount
            if residual[_SOURCE][node] == 0:
                break
    return total


def _max_flow(residual: list[dict[int, int]]) -> int:
    """Augment along shortest paths (Edmonds–Karp) by each path's bottleneck; returns the flow added."""
    total = 0
    while True:
        parent = {_SOURCE: _SOURCE}
        queue = deque([_SOURCE])
        while queue and _SINK not in parent:
            u = queue.popleft()
            for v, cap in residual[u].items():
                if cap > 0 and v not in parent:
                    parent[v] = u
                    queue.append(v)
        if _SINK not in parent:
            return total
        bottleneck = _UNBOUNDED
        v = _SINK
        while v != _SOURCE:
            u = parent[v]
            bottleneck = min(bottleneck, residual[u][v])
            v = u
        v = _SINK
        while v != _SOURCE:
            u = parent[v]
            residual[u][v] -= bottleneck
            residual[v][u] += bottleneck
            v = u
        total += bottleneck


def _strong_components(graph: list[list[int]]) -> list[int]:
    """Kosaraju, iteratively: component id of every node."""
    n = len(graph)
    order: list[int] = []
    seen = [False] * n
    for root in range(n):
        if seen[root]:
            continue
        seen[root] = True
        stack = [(root, iter(graph[root]))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if not seen[child]:
                    seen[child] = True
                    stack.append((child, iter(graph[child])))
                    break
            else:
                stack.pop()
                order.append(node)
    reverse: list[list[int]] = [[] for _ in range(n)]
    for u, targets in enumerate(graph):
        for v in targets:
            reverse[v].append(u)
    component = [-1] * n
    label = 0
    for root in reversed(order):
        if component[root] != -1:
            continue
        component[root] = label
        todo = [root]
        while todo:
            node = todo.pop()
            for child in reverse[node]:
                if component[child] == -1:
                    component[child] = label
                    todo.append(child)
        label += 1
    return component

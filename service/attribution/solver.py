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

Most decision rounds are tiny (one to three joins with two or three options each, one fetch compared): there,
listing every assignment gives the same answer (it is the definition) for a fraction of the cost of building
the network, so `possible_options` lists when there are few assignments and solves the flow otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator, Sequence

_SOURCE = 0
_SINK = 1
_UNBOUNDED = 1 << 60
#: Up to this many assignments, listing them beats the flow network (measured: ~25 µs for the flow on the
#: smallest problem, ~1.5 µs per listed assignment).
LISTING_MAX = 12


def possible_options(
    classes: Sequence[tuple[Sequence[int], int]],
    bounds: Sequence[tuple[int, int | None]],
) -> list[set[int]] | None:
    """For each class (options, count), the options some feasible assignment uses for one of its members.

    `bounds[i]` is slot i's (low, high), high None when unbounded. Returns None when no assignment exists:
    the counts contradict the assumptions (a use by a join the core never heard of), and the caller relaxes.
    """
    # Unbounded slots (no invite, uses before the baseline or not counted yet) take any number of joins, so
    # which of them a join sits on constrains nothing: they are solved as one slot, and a class that can
    # only reach such slots is left out (it can use each of them whatever the others do). Most joins of a
    # busy guild reach one bounded slot at most, so this leaves few assignments to list.
    free = {i for i, (low, high) in enumerate(bounds) if low == 0 and high is None}
    merged = len(bounds)
    reduced: list[tuple[Sequence[int], int]] = []
    kept: list[int] = []
    for position, (options, count) in enumerate(classes):
        bounded = [option for option in options if option not in free]
        if len(bounded) == len(options):
            reduced.append((options, count))
        elif bounded:
            reduced.append(((*bounded, merged), count))
        else:
            continue
        kept.append(position)
    solve = possible_by_listing
    if assignment_count(reduced, LISTING_MAX) > LISTING_MAX:
        solve = possible_by_flow
    found = solve(reduced, [*bounds, (0, None)])
    if found is None:
        return None
    result = [set(options) for options, _ in classes]
    for position, possible in zip(kept, found, strict=True):
        if merged in possible:
            possible.remove(merged)
            possible.update(option for option in classes[position][0] if option in free)
        result[position] = possible
    return result


def assignment_count(classes: Sequence[tuple[Sequence[int], int]], cap: int) -> int:
    """How many ways the classes' members can be put on their options (counting stops above `cap`)."""
    total = 1
    for options, count in classes:
        total *= math.comb(count + len(options) - 1, count) if options else 0
        if total > cap:
            break
    return total


def possible_by_listing(
    classes: Sequence[tuple[Sequence[int], int]],
    bounds: Sequence[tuple[int, int | None]],
) -> list[set[int]] | None:
    """`possible_options` by trying every assignment (for problems with few of them)."""
    reachable = {option for options, _ in classes for option in options}
    reached = sorted(reachable)
    if any(low > 0 for i, (low, _) in enumerate(bounds) if i not in reachable):
        return None  # a use no join can have made
    checks = [(i, low, _UNBOUNDED if high is None else high) for i, (low, high) in enumerate(bounds)]
    checks = [checks[i] for i in reached if checks[i][1] > 0 or checks[i][2] < _UNBOUNDED]
    found: list[set[int]] = [set() for _ in classes]
    feasible = False
    spreads = [
        [((option, 1),) for option in options] if count == 1 else list(_spreads(options, count))
        for options, count in classes
    ]
    width = len(bounds)
    for assignment in itertools.product(*spreads):
        fill = [0] * width
        for spread in assignment:
            for option, amount in spread:
                fill[option] += amount
        if all(low <= fill[i] <= high for i, low, high in checks):
            feasible = True
            for position, spread in enumerate(assignment):
                found[position].update(option for option, _ in spread)
    return found if feasible else None


def _spreads(options: Sequence[int], count: int) -> Iterator[tuple[tuple[int, int], ...]]:
    """Every way to put `count` interchangeable joins on `options`, as (option, joins) with joins > 0."""
    if count == 0:
        yield ()
        return
    if not options:
        return
    first, rest = options[0], options[1:]
    for here in range(count, -1, -1):
        if here < count and not rest:
            return
        for spread in _spreads(rest, count - here):
            yield ((first, here), *spread) if here else spread


def possible_by_flow(
    classes: Sequence[tuple[Sequence[int], int]],
    bounds: Sequence[tuple[int, int | None]],
) -> list[set[int]] | None:
    """`possible_options` as a flow problem (see the module docstring)."""
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

"""The simulator's rate-limit budgets on a clock of the test's own (no server)."""

from __future__ import annotations

from sim.ratelimit import GlobalBudget


def test_the_global_limit_is_discords_50_per_second_by_default() -> None:
    now = [100.0]
    budget = GlobalBudget(clock=lambda: now[0])
    assert [budget.take() for _ in range(50)] == [None] * 50
    now[0] += 0.75
    refused = budget.take()
    assert refused is not None and refused.retry_after == 0.25 and refused.body()["global"] is True
    now[0] += 0.25  # the window is over
    assert budget.take() is None and budget.rejected == 1

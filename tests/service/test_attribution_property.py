"""The attribution core against a simulated guild that knows which invite every member truly used.

Random invites (max uses, expiry), invites created and deleted by hand, joins spaced out and in bursts through
invites, the vanity URL, discovery and bots, duplicate events, leaves and rejoins, gateway latency and clock
skew within the configured bounds, rate limits, failed fetches, restarts and lost gateway sessions, and the
audit log entries of invites deleted by hand (with their final use counts) on time, late or never. Whatever
happens, no join is credited to a staff member other than the one whose invite it used, and every join ends
up with exactly one record.
"""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.guildsim import GuildSim, Scenario, Score
from service.attribution import AttributionConfig

CONFIG = AttributionConfig()  # gateway_latency 3 s, clock_skew 1 s: the simulation stays within them


@st.composite
def join_times(draw: st.DrawFn) -> tuple[float, ...]:
    times: list[float] = []
    t = 1.0
    for _ in range(draw(st.integers(1, 8))):
        t += draw(st.floats(0.0, 150.0))
        burst = draw(st.integers(1, 6))
        times.extend(t + draw(st.floats(0.0, 2.5)) for _ in range(burst))
    return tuple(sorted(times))


@st.composite
def windows(draw: st.DrawFn, end: float, longest: float, most: int) -> tuple[tuple[float, float], ...]:
    found = []
    for _ in range(draw(st.integers(0, most))):
        found.append((draw(st.floats(0.0, end)), draw(st.floats(0.5, longest))))
    return tuple(sorted(found))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    times = draw(join_times())
    end = max(times)
    restarts = []
    free = 0.0
    for at, length in draw(windows(end, 300.0, 2)):
        if at > free:  # one restart at a time
            restarts.append((at, length))
            free = at + length + 1
    return Scenario(
        seed=draw(st.integers(0, 2**32 - 1)),
        join_times=times,
        initial_invites=draw(st.integers(0, 5)),
        staff=draw(st.integers(1, 4)),
        max_uses_choices=draw(st.sampled_from([(0,), (1,), (0, 1, 2), (0, 0, 1, 2, 3, 5)])),
        expiry_choices=draw(st.sampled_from([(None,), (None, 5.0, 60.0), (2.0, 20.0, 300.0)])),
        create_every=draw(st.sampled_from([5.0, 30.0, 300.0])),
        delete_every=draw(st.sampled_from([0.0, 10.0, 60.0, 600.0])),
        p_vanity=draw(st.sampled_from([0.0, 0.15, 0.5])),
        p_discovery=draw(st.sampled_from([0.0, 0.1, 0.4])),
        p_bot=draw(st.sampled_from([0.0, 0.1])),
        p_leave=draw(st.sampled_from([0.0, 0.3])),
        p_duplicate=draw(st.sampled_from([0.0, 0.3])),
        p_vanity_unknown=draw(st.sampled_from([0.0, 0.3])),
        latency=(0.0, draw(st.floats(0.0, CONFIG.gateway_latency.total_seconds()))),
        skew=draw(st.floats(0.0, CONFIG.clock_skew.total_seconds())),
        rtt=(0.01, draw(st.sampled_from([0.1, 0.5, 3.0]))),
        route_gap=draw(st.sampled_from([0.0, 0.0, 2.0, 10.0])),
        storms=tuple((at, at + length) for at, length in draw(windows(end, 60.0, 2))),
        p_fetch_fail=draw(st.sampled_from([0.0, 0.1, 0.5])),
        restarts=tuple(restarts),
        gaps=draw(windows(end, 60.0, 1)),
        # Nothing bounds the audit log's delay: an entry later than audit_log_latency, or lost, costs recall.
        audit_latency=(0.0, draw(st.sampled_from([0.5, 3.0, 8.0]))),
        p_audit_late=draw(st.sampled_from([0.0, 0.3])),
        audit_late=(0.0, draw(st.sampled_from([10.0, 60.0]))),
        p_audit_lost=draw(st.sampled_from([0.0, 0.3, 1.0])),
    )


@st.composite
def churn_scenarios(draw: st.DrawFn) -> Scenario:
    """Invites created, used up, deleted and expiring every few seconds, with events late by up to the
    latency bound: where a use, its invite's creation and its deletion land relative to the fetches matters
    most."""
    base = draw(scenarios())
    return attrs.evolve(
        base,
        max_uses_choices=(1, 1, 2, 0),
        expiry_choices=(None, 3.0, 30.0),
        create_every=draw(st.sampled_from([1.0, 3.0, 8.0])),
        delete_every=draw(st.sampled_from([0.0, 5.0, 20.0])),
        latency=(draw(st.floats(0.0, 1.0)), CONFIG.gateway_latency.total_seconds()),
        rtt=(0.01, draw(st.sampled_from([0.1, 0.5]))),
    )


def check(score: Score) -> None:
    assert score.wrong == 0, f"{score.wrong} joins credited to the wrong staff member"
    assert score.precision == 1.0
    assert score.missing == 0, f"{score.missing} joins without a record"
    assert score.repeated == 0, f"{score.repeated} joins with more than one record"
    assert score.invented == 0, f"{score.invented} records of joins that never happened"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_join_is_ever_credited_to_the_wrong_staff_member_and_every_join_is_recorded_once(
    scenario: Scenario,
) -> None:
    check(GuildSim(scenario, CONFIG).run().score())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(churn_scenarios())
def test_invite_churn_never_credits_the_wrong_staff_member(scenario: Scenario) -> None:
    check(GuildSim(scenario, CONFIG).run().score())


def test_a_fixed_busy_scenario_also_credits_most_spaced_joins() -> None:
    """Guards the property test against a core that is safe only by crediting nobody."""
    import random

    from benchmarks.guildsim import spaced_joins

    scenario = Scenario(seed=7, join_times=spaced_joins(random.Random(7), 60))
    score = GuildSim(scenario, CONFIG).run().score()
    check(score)
    assert score.recall == 1.0 and score.staffed > 30

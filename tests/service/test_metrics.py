"""The metrics registry and its text exposition format 0.0.4."""

from __future__ import annotations

import math
import re
import threading

import pytest

from service import metrics as m
from service.metrics import Registry, ServiceMetrics, format_value
from service.records import AttributionKind

# One line of the text format: a comment, or a sample `name{label="value",...} value`.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(
    rf"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{{_LABEL}(?:,{_LABEL})*\}})? "
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf|NaN))"
)
_COMMENT = re.compile(
    r"# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (?:counter|gauge))"
)


def parse(text: str) -> dict[str, dict[str, str]]:
    """Check every line's syntax and the HELP/TYPE-before-samples order; return {name: {type, help}}."""
    assert text.endswith("\n")
    families: dict[str, dict[str, str]] = {}
    current = None
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            assert _COMMENT.fullmatch(line), line
            _, kind, name, rest = line.split(" ", 3)
            families.setdefault(name, {})[kind.lower()] = rest
            current = name
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, line
            assert match["name"] == current, f"{line} outside its family"
    return families


def test_every_service_metric_is_exposed_with_help_and_type() -> None:
    metrics = ServiceMetrics.create()
    families = parse(metrics.registry.render())
    expected = {
        m.DURABLE_LSN: "gauge",
        m.APPLIED_LSN: "gauge",
        m.SHIPPED_LSN: "gauge",
        m.BACKUP_BACKLOG_SEGMENTS: "gauge",
        m.BACKUP_BACKLOG_BYTES: "gauge",
        m.BACKUP_OLDEST_UNSHIPPED_AGE: "gauge",
        m.JOINS_TOTAL: "counter",
        m.INVITE_FETCH_RATE_LIMITED_TOTAL: "counter",
        m.INVITE_FETCH_FAILURES_TOTAL: "counter",
        m.RECOVERY_SECONDS: "gauge",
        m.WAL_SEGMENTS: "gauge",
        m.READY: "gauge",
    }
    assert {name: f["type"] for name, f in families.items()} == expected
    assert all(f["help"] for f in families.values())
    assert m.SHIPPED_LSN == "invite_ledger_shipped_lsn"
    assert m.BACKUP_OLDEST_UNSHIPPED_AGE == "invite_ledger_backup_oldest_unshipped_age_seconds"


def test_fresh_values_unlabelled_at_zero_joins_per_kind_at_zero_targets_absent() -> None:
    text = ServiceMetrics.create().registry.render()
    assert "\ninvite_ledger_durable_lsn 0\n" in text
    assert "\ninvite_ledger_ready 0\n" in text
    for kind in AttributionKind:
        assert f'\ninvite_ledger_joins_total{{kind="{kind.value}"}} 0\n' in text
    # no target configured yet: the family is announced but has no series
    assert "invite_ledger_shipped_lsn{" not in text


def test_pushed_values_and_counters() -> None:
    metrics = ServiceMetrics.create()
    metrics.durable_lsn.set(1_000_000_007)
    metrics.applied_lsn.set(5)
    metrics.applied_lsn.inc(2)
    metrics.joins_total.inc(kind=AttributionKind.EXACT)
    metrics.joins_total.inc(kind="exact")
    metrics.joins_total.inc(3, kind=AttributionKind.AMBIGUOUS)
    metrics.invite_fetch_rate_limited_total.inc()
    metrics.recovery_seconds.set(0.25)
    metrics.shipped_lsn.set(90, target="s3")
    metrics.shipped_lsn.set(100, target="dir")
    text = metrics.registry.render()
    parse(text)
    assert "\ninvite_ledger_durable_lsn 1000000007\n" in text
    assert "\ninvite_ledger_applied_lsn 7\n" in text
    assert '\ninvite_ledger_joins_total{kind="exact"} 2\n' in text
    assert '\ninvite_ledger_joins_total{kind="ambiguous"} 3\n' in text
    assert "\ninvite_ledger_invite_fetch_rate_limited_total 1\n" in text
    assert "\ninvite_ledger_recovery_seconds 0.25\n" in text
    # series are sorted by label values, so scrapes are stable
    assert text.index('shipped_lsn{target="dir"} 100') < text.index('shipped_lsn{target="s3"} 90')
    assert metrics.joins_total.value(kind="exact") == 2
    metrics.shipped_lsn.remove(target="dir")
    assert 'target="dir"' not in metrics.registry.render()


def test_misuse_is_refused() -> None:
    metrics = ServiceMetrics.create()
    with pytest.raises(ValueError, match="cannot decrease"):
        metrics.joins_total.inc(-1, kind="exact")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.joins_total.inc()
    with pytest.raises(ValueError, match="takes labels"):
        metrics.shipped_lsn.set(1, target="s3", extra="x")
    with pytest.raises(ValueError, match="takes labels"):
        metrics.durable_lsn.set(1, target="s3")
    with pytest.raises(ValueError, match="already registered"):
        metrics.registry.gauge(m.DURABLE_LSN, "again")
    with pytest.raises(ValueError, match="invalid metric name"):
        Registry().gauge("bad-name", "x")
    with pytest.raises(ValueError, match="invalid label name"):
        Registry().gauge("ok", "x", ("__reserved",))


def test_callbacks_are_read_at_scrape_time_and_a_broken_one_is_skipped(caplog) -> None:
    metrics = ServiceMetrics.create()
    state = {"lsn": 10}
    metrics.applied_lsn.set_function(lambda: state["lsn"])
    metrics.backup_backlog_bytes.set_function(lambda: None, target="never-reached")

    def broken() -> float:
        raise RuntimeError("boom")

    metrics.backup_backlog_segments.set_function(broken, target="s3")
    metrics.backup_backlog_segments.set(4, target="dir")
    assert "\ninvite_ledger_applied_lsn 10\n" in metrics.registry.render()
    state["lsn"] = 11
    text = metrics.registry.render()
    parse(text)
    assert "\ninvite_ledger_applied_lsn 11\n" in text
    assert 'target="never-reached"' not in text
    assert 'invite_ledger_backup_backlog_segments{target="s3"}' not in text
    assert 'invite_ledger_backup_backlog_segments{target="dir"} 4\n' in text
    assert "boom" in caplog.text
    # set() replaces a callback, and the other way round
    metrics.applied_lsn.set(3)
    state["lsn"] = 99
    assert metrics.applied_lsn.value() == 3
    metrics.applied_lsn.set_function(lambda: state["lsn"])
    assert metrics.applied_lsn.value() == 99


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    gauge = registry.gauge("g", 'help with \\ backslash\nand "newline"', ("target",))
    gauge.set(1, target='a "quoted" \\ value\nwith newline')
    text = registry.render()
    parse(text)
    assert '# HELP g help with \\\\ backslash\\nand "newline"\n' in text
    assert 'g{target="a \\"quoted\\" \\\\ value\\nwith newline"} 1\n' in text
    assert text.count("\n") == 3  # one line each: HELP, TYPE, the sample


def test_value_formatting() -> None:
    assert format_value(3) == "3"
    assert format_value(3.0) == "3"
    assert format_value(0.5) == "0.5"
    assert format_value(-2) == "-2"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    assert format_value(1e300) == "1e+300"
    assert format_value(2**53) == str(2**53)


def test_counters_are_safe_to_bump_from_worker_threads() -> None:
    metrics = ServiceMetrics.create()

    def bump() -> None:
        for _ in range(5000):
            metrics.joins_total.inc(kind="exact")
            metrics.durable_lsn.inc()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert metrics.joins_total.value(kind="exact") == 20000
    assert metrics.durable_lsn.value() == 20000


def test_registries_are_independent() -> None:
    a, b = ServiceMetrics.create(), ServiceMetrics.create()
    a.durable_lsn.set(5)
    assert b.durable_lsn.value() == 0

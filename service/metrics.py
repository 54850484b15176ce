"""A small in-process metrics registry, rendered in the Prometheus text exposition format 0.0.4.

No external dependency: the service exposes a dozen numbers, and a client library would bring its own global
registry and threads. Actors either push (`gauge.set`, `counter.inc`) or register a callback that is read at
scrape time (`gauge.set_function`), so an actor that already keeps a watermark does not also have to push it.

Values may be set from worker threads (the WAL writer's fdatasync runs in one), so every metric guards its
samples with a lock. Callbacks run on the scraping task, on the event loop: they must be cheap and must not
block (read an attribute, never a file or a database).

    metrics = ServiceMetrics.create()
    metrics.durable_lsn.set(lsn)
    metrics.joins_total.inc(kind=AttributionKind.EXACT)
    metrics.backup_backlog_segments.set_function(lambda: len(pending), target="s3")
    text = metrics.registry.render()
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar, Literal, TypeVar

import attrs

from service.records import AttributionKind

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_log = logging.getLogger(__name__)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

LabelValues = tuple[str, ...]
Sample = float | int
_M = TypeVar("_M", bound="Metric")


def format_value(value: float) -> str:
    """Prometheus spells the special floats +Inf, -Inf and NaN; integral values are printed without '.0'
    so that LSNs and counts read as the integers they are."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(float(value))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


@attrs.define(eq=False)
class Metric:
    """One metric family: a name, its HELP text, its type and its label names. Samples are keyed by the
    label values, in the order of `labelnames`."""

    type: ClassVar[Literal["counter", "gauge"]]

    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    _values: dict[LabelValues, float] = attrs.field(init=False, factory=dict)
    _functions: dict[LabelValues, Callable[[], Sample | None]] = attrs.field(init=False, factory=dict)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")
        for label in self.labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on {self.name}")
        if len(set(self.labelnames)) != len(self.labelnames):
            raise ValueError(f"duplicate label names on {self.name}")

    def _key(self, labels: Mapping[str, object]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        # str() so that StrEnum members (AttributionKind) and ints can be passed as label values as they are
        return tuple(str(labels[name]) for name in self.labelnames)

    def value(self, **labels: object) -> float:
        """The current value of one series (reads a callback if one is set); 0 for a series never set."""
        key = self._key(labels)
        with self._lock:
            function = self._functions.get(key)
            if function is None:
                return self._values.get(key, 0.0)
        result = function()
        return math.nan if result is None else float(result)

    def remove(self, **labels: object) -> None:
        """Forget one series, for example a backup target that is no longer configured."""
        key = self._key(labels)
        with self._lock:
            self._values.pop(key, None)
            self._functions.pop(key, None)

    def samples(self) -> list[tuple[LabelValues, float]]:
        """A consistent copy of the stored values plus each callback's current value, sorted by labels.
        A callback that raises or returns None is left out of this scrape (and logged), so one broken
        callback never takes the whole endpoint down."""
        with self._lock:
            values = dict(self._values)
            functions = dict(self._functions)
            if not self.labelnames and not values and not functions:
                values[()] = 0.0  # an unlabelled series exists from the start, as in client libraries
        for key, function in functions.items():
            try:
                result = function()
            except Exception:
                _log.exception("metric callback for %s%s failed", self.name, key)
                continue
            if result is not None:
                values[key] = float(result)
        return sorted(values.items())

    def render(self) -> str:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        for key, value in self.samples():
            if key:
                pairs = ",".join(
                    f'{name}="{escape_label_value(v)}"' for name, v in zip(self.labelnames, key, strict=True)
                )
                lines.append(f"{self.name}{{{pairs}}} {format_value(value)}")
            else:
                lines.append(f"{self.name} {format_value(value)}")
        return "\n".join(lines) + "\n"


@attrs.define(eq=False)
class Counter(Metric):
    """A value that only goes up (restarts reset it to 0, which Prometheus' rate() understands)."""

    type: ClassVar[Literal["counter", "gauge"]] = "counter"

    def inc(self, amount: float = 1, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot decrease (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def touch(self, **labels: object) -> None:
        """Create the series at 0, so dashboards see `0` rather than no data before the first event."""
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)


@attrs.define(eq=False)
class Gauge(Metric):
    """A value that goes up and down; either pushed with `set` or read at scrape time from a callback."""

    type: ClassVar[Literal["counter", "gauge"]] = "gauge"

    def set(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._functions.pop(key, None)
            self._values[key] = float(value)

    def inc(self, amount: float = 1, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._functions.pop(key, None)
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1, **labels: object) -> None:
        self.inc(-amount, **labels)

    def set_function(self, function: Callable[[], Sample | None], **labels: object) -> None:
        """Read `function()` at every scrape instead of a stored value. Returning None leaves the series
        out of that scrape (for instance while a backup target has never been reached)."""
        key = self._key(labels)
        with self._lock:
            self._values.pop(key, None)
            self._functions[key] = function


@attrs.define(eq=False)
class Registry:
    _metrics: dict[str, Metric] = attrs.field(init=False, factory=dict)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def _add(self, metric: _M) -> _M:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        return self._add(Counter(name, help, labelnames=tuple(labelnames)))

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labelnames=tuple(labelnames)))

    def get(self, name: str) -> Metric:
        with self._lock:
            return self._metrics[name]

    def render(self) -> str:
        """The whole registry in the text exposition format 0.0.4, metrics in registration order."""
        with self._lock:
            metrics = list(self._metrics.values())
        return "".join(metric.render() for metric in metrics)


# The metrics the service exposes: name, HELP text and label names. Kept as data so the names appear once.
DURABLE_LSN = "invite_ledger_durable_lsn"
APPLIED_LSN = "invite_ledger_applied_lsn"
SHIPPED_LSN = "invite_ledger_shipped_lsn"
BACKUP_BACKLOG_SEGMENTS = "invite_ledger_backup_backlog_segments"
BACKUP_BACKLOG_BYTES = "invite_ledger_backup_backlog_bytes"
BACKUP_OLDEST_UNSHIPPED_AGE = "invite_ledger_backup_oldest_unshipped_age_seconds"
JOINS_TOTAL = "invite_ledger_joins_total"
INVITE_FETCH_RATE_LIMITED_TOTAL = "invite_ledger_invite_fetch_rate_limited_total"
INVITE_FETCH_FAILURES_TOTAL = "invite_ledger_invite_fetch_failures_total"
RECOVERY_SECONDS = "invite_ledger_recovery_seconds"
WAL_SEGMENTS = "invite_ledger_wal_segments"
READY = "invite_ledger_ready"


@attrs.frozen
class ServiceMetrics:
    """Every metric of one service instance, on its own registry (so tests can run several services in
    one process without sharing numbers). Actors receive this object and set the field they own."""

    registry: Registry
    durable_lsn: Gauge
    applied_lsn: Gauge
    shipped_lsn: Gauge
    backup_backlog_segments: Gauge
    backup_backlog_bytes: Gauge
    backup_oldest_unshipped_age_seconds: Gauge
    joins_total: Counter
    invite_fetch_rate_limited_total: Counter
    invite_fetch_failures_total: Counter
    recovery_seconds: Gauge
    wal_segments: Gauge
    ready: Gauge

    def joins_logged(self) -> int:
        """Joins made durable since this service started, over every attribution kind."""
        return int(sum(self.joins_total.value(kind=kind) for kind in AttributionKind))

    @classmethod
    def create(cls, registry: Registry | None = None) -> ServiceMetrics:
        r = Registry() if registry is None else registry
        target = ("target",)
        metrics = cls(
            registry=r,
            durable_lsn=r.gauge(DURABLE_LSN, "Highest LSN on disk (fdatasync returned)."),
            applied_lsn=r.gauge(APPLIED_LSN, "Highest LSN applied to the SQLite projection."),
            shipped_lsn=r.gauge(SHIPPED_LSN, "Highest LSN shipped and verified on a backup target.", target),
            backup_backlog_segments=r.gauge(
                BACKUP_BACKLOG_SEGMENTS, "Sealed WAL segments not yet shipped to a backup target.", target
            ),
            backup_backlog_bytes=r.gauge(
                BACKUP_BACKLOG_BYTES,
                "Bytes of sealed WAL segments not yet shipped to a backup target.",
                target,
            ),
            backup_oldest_unshipped_age_seconds=r.gauge(
                BACKUP_OLDEST_UNSHIPPED_AGE,
                "Age of the oldest sealed segment not yet shipped to a backup target (0 when none).",
                target,
            ),
            joins_total=r.counter(JOINS_TOTAL, "Joins recorded, by attribution kind.", ("kind",)),
            invite_fetch_rate_limited_total=r.counter(
                INVITE_FETCH_RATE_LIMITED_TOTAL,
                "Invite fetches answered with HTTP 429 (retry_after honoured).",
            ),
            invite_fetch_failures_total=r.counter(
                INVITE_FETCH_FAILURES_TOTAL, "Invite fetches that failed (error, timeout or no answer)."
            ),
            recovery_seconds=r.gauge(RECOVERY_SECONDS, "Duration of the last start-up recovery in seconds."),
            wal_segments=r.gauge(WAL_SEGMENTS, "WAL segment files on local disk."),
            ready=r.gauge(READY, "1 once recovery has finished and the bot is logged in to Discord, else 0."),
        )
        for kind in AttributionKind:
            metrics.joins_total.touch(kind=kind)
        return metrics

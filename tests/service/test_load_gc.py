"""Loading a log's records pauses the cyclic garbage collector (nothing loaded forms cycles) and leaves it
as it found it, also when the load fails."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import apsw
import pytest

from service import convert
from service.projection.parts import joins_table_sql, load_part
from service.records import AttributionKind, JoinRecorded

JOIN = JoinRecorded(
    timestamp=datetime(2025, 1, 1, tzinfo=UTC),
    guild_id="811111111111111111",
    guild_name="G",
    user_id="1000000001180865442",
    username="u",
    display_name="U",
    kind=AttributionKind.UNKNOWN,
    invite_code=None,
    staff_id=None,
    staff_username=None,
    uses_before=None,
    uses_after=None,
)


def watched_frames(n: int, seen: list[bool], fail_at: int | None = None) -> Iterator[tuple[Any, ...]]:
    code, payload = convert.encode(JOIN)
    for lsn in range(1, n + 1):
        seen.append(gc.isenabled())
        if lsn == fail_at:
            raise RuntimeError("the log could not be read")
        yield (lsn, code, payload)


@pytest.fixture
def conn() -> Iterator[apsw.Connection]:
    connection = apsw.Connection(":memory:")
    connection.execute(joins_table_sql())
    yield connection
    connection.close()


def test_the_collector_is_paused_while_a_part_loads_and_enabled_again_after(conn):
    seen: list[bool] = []
    assert gc.isenabled()
    result = load_part(conn, watched_frames(30, seen), 1, batch_size=7)
    assert result.applied == 30 and seen == [False] * 30
    assert gc.isenabled()


def test_a_failing_load_enables_the_collector_again(conn):
    seen: list[bool] = []
    with pytest.raises(RuntimeError):
        load_part(conn, watched_frames(30, seen, fail_at=12), 1, batch_size=5)
    assert gc.isenabled() and not any(seen)


def test_a_collector_disabled_by_the_caller_stays_disabled(conn):
    gc.disable()
    try:
        load_part(conn, watched_frames(3, []), 1)
        assert not gc.isenabled()
    finally:
        gc.enable()

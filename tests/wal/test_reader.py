"""Reading the log from any LSN, and following its tail as the DB applier will."""

from __future__ import annotations

import anyio
import pytest

from tests.wal.helpers import entries, eventually, segment_files, truncate, write_log
from wal.codec import FRAME_HEADER_SIZE
from wal.errors import WalCorruption
from wal.reader import follow, iter_frames
from wal.recover import open_log
from wal.watermark import Watermark
from wal.writer import WalWriter


def record(i: int) -> bytes:
    return f"record-{i:04d}".encode()


def test_iteration_from_any_lsn_crosses_segments_in_order(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(i), record(i + 1)] for i in range(1, 60, 2)], segment_bytes=256)
    files = segment_files(wal_dir)
    assert len(files) > 4
    every = entries(wal_dir)
    assert [e.lsn for e in every] == list(range(1, 61))
    assert [e.payload for e in every] == [record(i) for i in range(1, 61)]
    assert {e.segment for e in every} == {f.name for f in files}
    for e in every:
        assert int(e.segment[:20]) <= e.lsn
    for start in range(1, 62):
        assert [e.lsn for e in iter_frames(wal_dir, start)] == list(range(start, 61))
    assert [e.lsn for e in iter_frames(wal_dir, 7, to_lsn=12)] == list(range(7, 13))


def test_a_promised_lsn_beyond_the_end_is_corruption(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1)], [record(2)]])
    with pytest.raises(WalCorruption, match="ends at LSN 2"):
        list(iter_frames(wal_dir, 1, to_lsn=3))


def test_damage_before_the_durable_lsn_is_corruption_even_in_the_last_segment(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1)], [record(2), record(3)]])
    [path] = segment_files(wal_dir)
    third = entries(wal_dir)[2]
    data = bytearray(path.read_bytes())
    data[third.offset + FRAME_HEADER_SIZE] ^= 1
    path.write_bytes(bytes(data))
    assert [e.lsn for e in iter_frames(wal_dir)] == [1, 2]  # as recovery would see it: a torn tail
    with pytest.raises(WalCorruption) as info:
        list(iter_frames(wal_dir, to_lsn=3))  # but LSN 3 was acknowledged
    assert (info.value.offset, info.value.lsn) == (third.offset, 3)


@pytest.mark.anyio
async def test_follow_yields_durable_records_across_rollovers_and_waits_for_more(tmp_path):
    wal_dir = tmp_path / "wal"
    writer = WalWriter(wal_dir, segment_bytes=200)
    got: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        for i in range(1, 11):
            await writer.append(1, record(i))

        async def follower() -> None:
            async for batch in follow(wal_dir, 4, writer.durable, batch_max=3):
                assert 1 <= len(batch) <= 3
                got.extend(e.lsn for e in batch)
                assert [e.payload for e in batch] == [record(e.lsn) for e in batch]

        tg.start_soon(follower)
        await eventually(lambda: len(got) >= 7)
        assert got == list(range(4, 11))
        for i in range(11, 41):  # more records arrive while it is waiting, across several segments
            await writer.append(1, record(i))
        await eventually(lambda: len(got) >= 37)
        tg.cancel_scope.cancel()
    assert got == list(range(4, 41))
    assert len(segment_files(wal_dir)) > 3


@pytest.mark.anyio
async def test_follow_never_hands_out_bytes_beyond_the_durable_lsn(tmp_path):
    """A failed batch's frames may sit on disk before they are cut off and their LSNs rewritten; a follower
    must never pass them on, even if it read them."""
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1)], [b"stale-2", b"stale-3"]], preallocate=False)
    durable = Watermark(1)
    batches: list[list[bytes]] = []
    async with anyio.create_task_group() as tg:

        async def follower() -> None:
            async for batch in follow(wal_dir, 1, durable):
                batches.append([e.payload for e in batch])

        tg.start_soon(follower)
        await eventually(lambda: bool(batches))
        assert batches == [[record(1)]]
        # the failed write is cut off and the LSNs are written again with other records
        [path] = segment_files(wal_dir)
        cut = entries(wal_dir)[1].offset
        truncate(path, cut)
        open_log(wal_dir)
        write_log(wal_dir, [[record(2), record(3)]], preallocate=False)
        durable.advance(3)
        await eventually(lambda: len(batches) >= 2)
        tg.cancel_scope.cancel()
    assert batches == [[record(1)], [record(2), record(3)]]


@pytest.mark.parametrize("chunk", [40, 97, 1 << 20])
def test_the_followers_fast_walk_hands_out_what_the_decoder_would(tmp_path, monkeypatch, chunk):
    """Any start, any batch limit, chunks that cut frames anywhere: the same entries as `iter_frames`."""
    import wal.reader

    monkeypatch.setattr(wal.reader, "_READ_CHUNK", chunk)
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(i) * (i % 5 + 1), record(i + 1)] for i in range(1, 60, 2)], segment_bytes=700)
    every = entries(wal_dir)
    for start in (1, 2, 17, 60):
        for limit in (1, 3, 1000):
            cursor = wal.reader._FollowCursor(wal_dir, start)
            got = []
            while batch := cursor.read(60, limit):
                assert len(batch) <= limit
                got.extend(batch)
            assert got == [e for e in every if e.lsn >= start]


def test_the_followers_fast_walk_names_damage_as_the_decoder_does(tmp_path):
    import wal.reader

    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(i)] for i in range(1, 11)])
    [path] = segment_files(wal_dir)
    sixth = entries(wal_dir)[5]
    data = bytearray(path.read_bytes())
    data[sixth.offset + FRAME_HEADER_SIZE + 2] ^= 0x40
    path.write_bytes(bytes(data))
    cursor = wal.reader._FollowCursor(wal_dir, 1)
    assert [e.lsn for e in cursor.read(4, 100)] == [1, 2, 3, 4]
    assert [e.lsn for e in cursor.read(5, 100)] == [5]  # the damage lies beyond what is durable: wait
    with pytest.raises(WalCorruption) as info:
        cursor.read(10, 100)
    assert (info.value.offset, info.value.lsn) == (sixth.offset, 6)

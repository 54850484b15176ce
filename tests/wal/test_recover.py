"""Opening the log: only a torn tail of the last segment is repaired; any other damage refuses the start."""

from __future__ import annotations

import itertools
import os
import shutil
import struct

import anyio
import pytest

from tests.wal.helpers import entries, flip_byte, payloads, segment_files, write_log
from wal.codec import FRAME_HEADER_SIZE
from wal.errors import RESTORE_HINT, WalCorruption, WalFormatError
from wal.recover import inspect_log, open_log
from wal.segment import (
    SEGMENT_HEADER_SIZE,
    SegmentStatus,
    encode_segment_header,
    list_segments,
    segment_name,
)
from wal.writer import WalWriter


def record(i: int) -> bytes:
    return f'{{"n":{i},"pad":"{"p" * (i % 7)}"}}'.encode()


@pytest.mark.parametrize("preallocate", [True, False])
def test_truncating_the_last_record_at_every_byte_offset_recovers_to_the_record_before_it(
    tmp_path, preallocate
):
    source = tmp_path / "source"
    write_log(source, [[record(1), record(2)], [record(3)], [record(4), record(5)]], preallocate=preallocate)
    [segment] = segment_files(source)
    last = entries(source)[-1]
    assert last.lsn == 5
    for cut in range(last.offset, last.offset + FRAME_HEADER_SIZE + len(last.payload)):
        for zero_fill in (False, True):
            wal_dir = tmp_path / f"cut-{cut}-{zero_fill}"
            shutil.copytree(source, wal_dir)
            path = wal_dir / segment.name
            with open(path, "r+b") as f:
                if zero_fill:  # what a torn write into preallocated space leaves: zeros after the cut
                    f.seek(cut)
                    f.write(bytes(last.offset + FRAME_HEADER_SIZE + len(last.payload) - cut))
                else:
                    f.truncate(cut)
            report = open_log(wal_dir)
            assert report.last_lsn == 4, (cut, zero_fill)
            assert payloads(wal_dir) == [record(i) for i in range(1, 5)]
            if cut > last.offset and not (zero_fill and not any(path.read_bytes()[cut:])):
                assert report.torn_tail is not None
            # the log continues with the LSN of the record that was cut
            assert write_log(wal_dir, [[b"after"]], preallocate=preallocate) == 5
            assert payloads(wal_dir)[-1] == b"after"
            shutil.rmtree(wal_dir)


def sealed_log(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(i)] for i in range(1, 30)], segment_bytes=256)
    files = segment_files(wal_dir)
    assert len(files) >= 3
    return wal_dir, files


def test_a_flipped_byte_inside_a_sealed_segment_is_corruption_naming_segment_offset_and_lsn(tmp_path):
    wal_dir, files = sealed_log(tmp_path)
    victim = files[1]
    target = [e for e in entries(wal_dir) if e.segment == victim.name][1]
    flip_byte(victim, target.offset + FRAME_HEADER_SIZE + 2)
    before = victim.read_bytes()
    with pytest.raises(WalCorruption) as info:
        open_log(wal_dir)
    err = info.value
    assert (err.segment, err.offset, err.lsn) == (victim.name, target.offset, target.lsn)
    assert (
        victim.name in str(err) and f"offset {target.offset}" in str(err) and f"LSN {target.lsn}" in str(err)
    )
    assert "invite-ledger restore --from TARGET" in str(err) and RESTORE_HINT in str(err)
    assert victim.read_bytes() == before  # refusing means touching nothing


@pytest.mark.anyio
async def test_a_writer_refuses_to_start_on_a_corrupt_log(tmp_path):
    wal_dir, files = sealed_log(tmp_path)
    flip_byte(files[0], SEGMENT_HEADER_SIZE + 30)
    sizes = [f.stat().st_size for f in files]
    writer = WalWriter(wal_dir, segment_bytes=256)
    async with anyio.create_task_group() as tg:
        with pytest.raises(WalCorruption) as info:
            await tg.start(writer.run)
    assert info.value.segment == files[0].name and info.value.lsn == 1
    assert [f.stat().st_size for f in files] == sizes
    assert writer.last_recovery is None


def test_a_flipped_byte_before_a_later_write_in_the_active_segment_is_corruption(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1), record(2)], [record(3), record(4)], [record(5)]])
    victim = entries(wal_dir)[2]  # LSN 3: its batch was followed by another write, so it was durable
    [path] = segment_files(wal_dir)
    flip_byte(path, victim.offset + FRAME_HEADER_SIZE)
    with pytest.raises(WalCorruption) as info:
        open_log(wal_dir)
    assert (info.value.offset, info.value.lsn) == (victim.offset, 3)
    assert "later write (LSN 5" in info.value.reason


@pytest.mark.parametrize("header_too", [False, True])
def test_damage_inside_the_last_write_is_a_torn_tail_and_is_cut(tmp_path, header_too):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1), record(2)], [record(3), record(4), record(5)]])
    third = entries(wal_dir)[2]  # first frame of the last write
    [path] = segment_files(wal_dir)
    flip_byte(path, third.offset + (1 if header_too else FRAME_HEADER_SIZE + 1))
    found = inspect_log(wal_dir)
    assert found.corruption is None and found.torn_tail is not None
    assert found.segments[-1].status == SegmentStatus.TORN_TAIL
    report = open_log(wal_dir)
    assert report.last_lsn == 2 and report.repaired and report.torn_bytes_cut > 0
    assert payloads(wal_dir) == [record(1), record(2)]
    assert path.stat().st_size == third.offset


def test_preallocated_zeros_after_the_last_record_are_free_space_not_damage(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1)], [record(2)]], segment_bytes=8192)
    [path] = segment_files(wal_dir)
    assert path.stat().st_size == 8192
    found = inspect_log(wal_dir)
    assert found.torn_tail is None and found.corruption is None
    info = found.segments[-1]
    assert (info.status, info.last_lsn, info.record_count, info.size) == (SegmentStatus.OK, 2, 2, 8192)
    assert info.valid_size == entries(wal_dir)[-1].offset + FRAME_HEADER_SIZE + len(record(2))


def test_zeros_in_a_sealed_segment_are_corruption(tmp_path):
    wal_dir, files = sealed_log(tmp_path)
    with open(files[0], "ab") as f:
        f.write(bytes(40))
    with pytest.raises(WalCorruption) as info:
        open_log(wal_dir)
    assert info.value.segment == files[0].name and "zeroed" in info.value.reason


def test_a_segment_whose_creation_was_cut_short_gets_its_header_back(tmp_path):
    wal_dir = tmp_path / "wal"
    last = write_log(wal_dir, [[record(1)], [record(2)]], preallocate=False)  # as sealing would leave it
    stub = wal_dir / segment_name(last + 1)
    stub.write_bytes(encode_segment_header(last + 1)[:9])
    report = open_log(wal_dir)
    assert report.torn_tail is not None and report.torn_tail.header
    assert stub.read_bytes() == encode_segment_header(last + 1)
    assert write_log(wal_dir, [[b"next"]]) == 3
    assert [e.segment for e in entries(wal_dir)][-1] == stub.name


def test_a_missing_segment_in_the_middle_is_an_lsn_gap(tmp_path):
    wal_dir, files = sealed_log(tmp_path)
    first_of_missing = int(files[1].name[:20])
    files[1].unlink()
    with pytest.raises(WalCorruption) as info:
        open_log(wal_dir)
    assert info.value.segment == files[2].name and info.value.lsn == first_of_missing
    assert "LSN gap" in info.value.reason


def test_a_missing_first_segment_is_refused(tmp_path):
    wal_dir, files = sealed_log(tmp_path)
    files[0].unlink()
    with pytest.raises(WalCorruption, match="starts at LSN"):
        open_log(wal_dir)


def test_a_segment_of_an_unknown_format_version_is_refused_not_repaired(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1)]])
    [path] = segment_files(wal_dir)
    data = bytearray(path.read_bytes())
    head = encode_segment_header(1)
    newer = bytearray(head)
    struct.pack_into("<H", newer, 8, 2)
    from crc32c import crc32c

    struct.pack_into("<I", newer, 20, crc32c(bytes(newer[:20])))
    data[: len(head)] = newer
    path.write_bytes(bytes(data))
    with pytest.raises(WalFormatError, match="format version 2"):
        open_log(wal_dir)


def test_a_read_only_open_reports_a_torn_tail_without_cutting_it(tmp_path):
    wal_dir = tmp_path / "wal"
    write_log(wal_dir, [[record(1)], [record(2)]], preallocate=False)
    [path] = segment_files(wal_dir)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 3)
    (wal_dir / (segment_name(3) + ".tmp")).write_bytes(b"half")
    before = path.read_bytes()
    stamp = os.stat(path).st_mtime_ns
    report = open_log(wal_dir, repair=False)
    assert report.last_lsn == 1 and not report.repaired and report.torn_tail is not None
    assert report.torn_tail.bytes == len(record(2)) + FRAME_HEADER_SIZE - 3
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == stamp
    assert (wal_dir / (segment_name(3) + ".tmp")).exists()
    repaired = open_log(wal_dir)
    assert repaired.removed_temp_files == (segment_name(3) + ".tmp",)
    assert repaired.torn_bytes_cut == report.torn_tail.bytes


def test_list_segments_gives_ranges_and_sealed_state_cheaply_or_verified(tmp_path):
    wal_dir, files = sealed_log(tmp_path)
    cheap = list_segments(wal_dir)
    verified = list_segments(wal_dir, verify=True)
    assert [s.path for s in cheap] == [s.path for s in verified] == files
    for a, b in zip(cheap, verified, strict=True):
        assert (a.first_lsn, a.last_lsn, a.record_count, a.sealed) == (
            b.first_lsn,
            b.last_lsn,
            b.record_count,
            b.sealed,
        )
    assert [s.sealed for s in cheap] == [True] * (len(files) - 1) + [False]
    assert cheap[0].status == SegmentStatus.UNCHECKED and verified[0].status == SegmentStatus.OK
    assert verified[-1].last_lsn == 29
    assert all(s.first_lsn == (p.last_lsn or 0) + 1 for p, s in itertools.pairwise(verified))


def test_an_empty_or_missing_directory_is_an_empty_log(tmp_path):
    report = open_log(tmp_path / "nothing", repair=False)
    assert report.last_lsn == 0 and report.segments == ()
    assert list_segments(tmp_path / "nothing") == []

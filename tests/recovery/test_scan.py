"""The WAL's fast scan (recovery opens every segment at each start) decides exactly as the decoder does,
on intact, torn and damaged segments; and `iter_frames(from_lsn)` starts where it should."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.recovery.records import varied_records, write_records
from wal import iter_frames
from wal.codec import FrameError
from wal.segment import SEGMENT_HEADER_SIZE, _frames_from, list_segment_files, scan_segment


def reference_scan(path: Path, first_lsn: int) -> tuple[int, int | None, int, str | None]:
    """The decoder alone, frame by frame: what scan_segment returned before its fast path."""
    count, last, valid = 0, None, SEGMENT_HEADER_SIZE
    with open(path, "rb") as f:
        f.seek(SEGMENT_HEADER_SIZE)
        try:
            for frame in _frames_from(f, SEGMENT_HEADER_SIZE, first_lsn):
                count, last, valid = count + 1, frame.lsn, frame.end
        except FrameError as exc:
            return count, last, valid, str(exc)
    return count, last, valid, None


@pytest.mark.parametrize("seed", range(4))
def test_fast_scan_equals_the_decoder_on_damaged_segments(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    wal_dir = tmp_path / "wal"
    write_records(wal_dir, varied_records(200, seed), segment_bytes=16384)
    segments = list_segment_files(wal_dir)
    for trial in range(40):
        first, path = rng.choice(segments)
        original = path.read_bytes()
        data = bytearray(original)
        what = trial % 4
        if what == 0:
            data[rng.randrange(SEGMENT_HEADER_SIZE, len(data))] ^= 1 << rng.randrange(8)
        elif what == 1:
            del data[rng.randrange(SEGMENT_HEADER_SIZE, len(data)) :]
        elif what == 2:
            start = rng.randrange(SEGMENT_HEADER_SIZE, len(data))
            data[start:] = bytes(len(data) - start)  # zeros: free space, or a lost write
        else:
            pos = rng.randrange(SEGMENT_HEADER_SIZE, len(data) - 4)
            data[pos : pos + 4] = b"\xff\xff\xff\x7f"  # a length no frame can have, or other damage
        path.write_bytes(bytes(data))
        scan = scan_segment(path, first)
        got = (
            scan.record_count,
            scan.last_lsn,
            scan.valid_size,
            None if scan.frame_error is None else str(scan.frame_error),
        )
        assert got == reference_scan(path, first), (trial, what)
        path.write_bytes(original)


def test_reading_from_an_lsn_in_the_middle_of_a_segment(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    last = write_records(wal_dir, varied_records(150, 9), segment_bytes=32768)
    everything = [(e.lsn, e.payload) for e in iter_frames(wal_dir)]
    for start in (1, 2, 37, 100, last):
        assert [(e.lsn, e.payload) for e in iter_frames(wal_dir, start)] == everything[start - 1 :]
    assert [e.lsn for e in iter_frames(wal_dir, 40, to_lsn=44)] == [40, 41, 42, 43, 44]

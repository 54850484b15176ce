"""The bulk segment reader yields what the decoder yields and fails where and how the decoder fails."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from wal.bulk import segment_frames
from wal.codec import FrameError, encode_batch
from wal.segment import SEGMENT_HEADER_SIZE, read_frames


def outcome_of_decoder(path: Path) -> tuple[list[tuple[int, int, bytes, int, int]], tuple | None]:
    frames = []
    try:
        for f in read_frames(path, offset=SEGMENT_HEADER_SIZE, expected_lsn=1):
            frames.append((f.lsn, f.record_type, f.payload, f.flags, f.offset))
    except FrameError as err:
        return frames, (err.offset, err.reason, err.lsn, str(err))
    return frames, None


def outcome_of_bulk(
    path: Path, chunk_size: int
) -> tuple[list[tuple[int, int, bytes, int, int]], tuple | None]:
    frames = []
    try:
        frames.extend(segment_frames(path, offset=SEGMENT_HEADER_SIZE, expected_lsn=1, chunk_size=chunk_size))
    except FrameError as err:
        return frames, (err.offset, err.reason, err.lsn, str(err))
    return frames, None


payload_lists = st.lists(st.binary(max_size=90), min_size=0, max_size=25)
damages = st.sampled_from(["none", "flip", "truncate", "zeros", "garbage"])


@settings(max_examples=150, deadline=None)
@given(
    payloads=payload_lists,
    damage=damages,
    where=st.floats(0, 1),
    chunk_size=st.sampled_from([1, 7, 20, 33, 100, 1 << 20]),
    types=st.integers(1, 6),
)
def test_the_bulk_reader_matches_the_decoder(tmp_path_factory, payloads, damage, where, chunk_size, types):
    path = tmp_path_factory.mktemp("seg") / "00000000000000000001.wal"
    body = bytearray(encode_batch(1, [(types, p) for p in payloads]) if payloads else b"")
    at = int(where * len(body))
    if damage == "flip" and body:
        body[min(at, len(body) - 1)] ^= 0x40
    elif damage == "truncate":
        del body[at:]
    elif damage == "zeros":
        body[at:] = bytes(len(body) - at + 64)
    elif damage == "garbage":
        body[at:at] = b"\x07" * 30
    path.write_bytes(b"H" * SEGMENT_HEADER_SIZE + bytes(body))
    assert outcome_of_bulk(path, chunk_size) == outcome_of_decoder(path)

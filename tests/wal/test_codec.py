"""The frame codec on its own: no files, no threads. Every error carries the offset where it happened."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal.codec import (
    FLAG_BATCH_START,
    FRAME_HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
    NeedMore,
    encode_batch,
    encode_frame,
    parse_frame_at,
)


def decode_all(
    data: bytes, *, offset: int = 0, expected_lsn: int | None = None, eof: bool = True
) -> list[Frame]:
    decoder = FrameDecoder(offset=offset, expected_lsn=expected_lsn)
    decoder.feed(data)
    if eof:
        decoder.feed_eof()
    frames = []
    while isinstance(item := decoder.next_frame(), Frame):
        frames.append(item)
    return frames


def test_a_frame_round_trips_with_its_fields_and_position():
    data = encode_frame(7, 3, b'{"a":1}')
    assert len(data) == FRAME_HEADER_SIZE + 7
    [frame] = decode_all(data, offset=24, expected_lsn=7)
    assert (frame.lsn, frame.record_type, frame.payload) == (7, 3, b'{"a":1}')
    assert (frame.offset, frame.size, frame.end) == (24, 27, 51)
    assert not frame.batch_start


def test_the_header_layout_is_length_crc_lsn_type_flags():
    data = encode_frame(5, 2, b"xyz", flags=FLAG_BATCH_START)
    length, _crc, lsn, record_type, flags = struct.unpack_from("<IIQHH", data)
    assert (length, lsn, record_type, flags) == (3, 5, 2, FLAG_BATCH_START)
    assert data[FRAME_HEADER_SIZE:] == b"xyz"


def test_an_empty_payload_is_a_valid_frame():
    [frame] = decode_all(encode_frame(1, 1, b""))
    assert frame.payload == b"" and frame.size == FRAME_HEADER_SIZE


def test_a_batch_is_consecutive_frames_and_only_the_first_starts_the_batch():
    data = encode_batch(10, [(1, b"a"), (2, b"bb"), (3, b"")])
    frames = decode_all(data, expected_lsn=10)
    assert [(f.lsn, f.record_type, f.payload) for f in frames] == [
        (10, 1, b"a"),
        (11, 2, b"bb"),
        (12, 3, b""),
    ]
    assert [f.batch_start for f in frames] == [True, False, False]
    assert data == b"".join(encode_frame(f.lsn, f.record_type, f.payload, flags=f.flags) for f in frames)


@pytest.mark.parametrize(
    ("lsn", "record_type", "size"), [(0, 1, 0), (1, 0, 0), (1, 70000, 0), (1, 1, MAX_PAYLOAD_BYTES + 1)]
)
def test_encoding_refuses_fields_that_cannot_be_framed(lsn, record_type, size):
    with pytest.raises(ValueError):
        encode_frame(lsn, record_type, bytes(size))


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.tuples(st.integers(1, 0xFFFF), st.binary(max_size=300)), min_size=1, max_size=12),
    first=st.integers(1, 2**40),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_any_records_fed_in_any_chunks_come_back_in_order(records, first, cuts):
    data = encode_batch(first, records)
    decoder = FrameDecoder(offset=100, expected_lsn=first)
    got: list[Frame] = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        decoder.feed(data[start:end])
        while isinstance(item := decoder.next_frame(), Frame):
            got.append(item)
    decoder.feed_eof()
    assert decoder.next_frame() == NeedMore(100 + len(data), 0)
    assert [(f.record_type, f.payload) for f in got] == records
    assert [f.lsn for f in got] == list(range(first, first + len(records)))
    assert got[0].offset == 100 and got[-1].end == 100 + len(data)


def test_need_more_reports_where_the_partial_frame_starts_and_what_is_held():
    data = encode_frame(1, 1, b"hello") + encode_frame(2, 1, b"world")
    decoder = FrameDecoder(offset=24)
    decoder.feed(data[:-3])
    assert isinstance(decoder.next_frame(), Frame)
    assert decoder.next_frame() == NeedMore(24 + 25, 22)
    decoder.feed(data[-3:])
    assert decoder.next_frame().lsn == 2  # type: ignore[union-attr]


# -- every error kind, with its offset ---------------------------------------------------------------


def error_of(data: bytes, *, offset: int = 24, expected_lsn: int | None = 1, eof: bool = True) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_all(data, offset=offset, expected_lsn=expected_lsn, eof=eof)
    return info.value


GOOD = encode_frame(1, 1, b"first record")
SECOND = encode_frame(2, 1, b"second record")


def test_a_stream_ending_inside_a_header_is_a_truncated_header_at_that_frame():
    err = error_of(GOOD + SECOND[:7])
    assert (err.reason, err.offset, err.lsn) == (FrameErrorKind.TRUNCATED_HEADER, 24 + len(GOOD), 2)


def test_a_stream_ending_inside_a_payload_is_a_truncated_payload():
    err = error_of(GOOD + SECOND[:-1])
    assert (err.reason, err.offset, err.lsn) == (FrameErrorKind.TRUNCATED_PAYLOAD, 24 + len(GOOD), 2)


def test_a_header_of_zeros_is_reported_as_zeroed_space():
    err = error_of(GOOD + bytes(64))
    assert (err.reason, err.offset, err.lsn) == (FrameErrorKind.ZEROED, 24 + len(GOOD), 2)


def test_an_impossible_length_is_refused_before_waiting_for_it():
    bad = bytearray(SECOND)
    struct.pack_into("<I", bad, 0, MAX_PAYLOAD_BYTES + 1)
    err = error_of(GOOD + bytes(bad), eof=False)  # without EOF: must not just wait for 16 MiB
    assert (err.reason, err.offset) == (FrameErrorKind.BAD_LENGTH, 24 + len(GOOD))


@pytest.mark.parametrize("position", [0, 3, 4, 8, 15, 16, 18, FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + 5])
def test_a_flipped_bit_anywhere_in_a_frame_fails_its_checksum(position):
    bad = bytearray(SECOND)
    bad[position] ^= 0x10
    err = error_of(GOOD + bytes(bad) + encode_frame(3, 1, b"third"))
    assert err.offset == 24 + len(GOOD)
    # a damaged length may also read as an impossible length or a payload running past the end
    assert err.reason in {
        FrameErrorKind.BAD_CHECKSUM,
        FrameErrorKind.BAD_LENGTH,
        FrameErrorKind.TRUNCATED_PAYLOAD,
    }
    if position not in range(4):
        assert err.reason == FrameErrorKind.BAD_CHECKSUM
        assert err.lsn == 2  # the LSN expected there, not whatever the damaged header says


def test_a_valid_frame_with_the_wrong_lsn_is_a_gap():
    err = error_of(GOOD + encode_frame(3, 1, b"skips two"))
    assert (err.reason, err.offset, err.lsn) == (FrameErrorKind.BAD_LSN, 24 + len(GOOD), 3)
    assert "expected LSN 2" in str(err)


def test_a_valid_frame_with_unknown_flags_is_refused():
    length = struct.pack("<I", 1)
    body = struct.pack("<QHH", 1, 1, 0x8000) + b"x"
    from crc32c import crc32c

    frame = length + struct.pack("<I", crc32c(body, crc32c(length))) + body
    err = error_of(frame)
    assert (err.reason, err.offset) == (FrameErrorKind.BAD_FLAGS, 24)


def test_an_error_is_sticky_and_feeding_after_eof_is_a_bug():
    decoder = FrameDecoder()
    decoder.feed(b"\x01" * 30)
    decoder.feed_eof()
    with pytest.raises(FrameError) as first:
        decoder.next_frame()
    with pytest.raises(FrameError) as again:
        decoder.next_frame()
    assert again.value is first.value
    with pytest.raises(RuntimeError):
        decoder.feed(b"x")


def test_without_an_expected_lsn_the_header_lsn_is_reported():
    bad = bytearray(SECOND)
    bad[-1] ^= 1
    err = error_of(bytes(bad), expected_lsn=None)
    assert (err.reason, err.lsn) == (FrameErrorKind.BAD_CHECKSUM, 2)


def test_parse_frame_at_finds_only_whole_valid_frames():
    data = GOOD + SECOND
    assert parse_frame_at(data, len(GOOD)) == Frame(2, 1, b"second record", len(GOOD), len(SECOND), 0)
    assert parse_frame_at(data, 1) is None
    assert parse_frame_at(data[:-1], len(GOOD)) is None
    assert parse_frame_at(data, len(GOOD), min_lsn=3) is None


def test_a_long_stream_fed_byte_by_byte_decodes_without_quadratic_copying():
    data = encode_batch(1, [(1, b"x" * 50)] * 400)
    decoder = FrameDecoder(expected_lsn=1)
    count = 0
    for i in range(0, len(data), 7):
        decoder.feed(data[i : i + 7])
        while isinstance(decoder.next_frame(), Frame):
            count += 1
    assert count == 400
    assert decoder.buffered == 0

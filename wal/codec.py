"""The frame codec: records to bytes and bytes back to records, with no I/O at all.

Like h11's connection object, the decoder is fed bytes by whoever owns the file and hands back whole
frames, "need more", or a typed `FrameError` carrying the byte offset, so every malformed input can be
tested without a file, a thread or a clock.

Frame layout (little-endian, 20-byte header, then the payload):

    offset  size  field
    0       4     payload length in bytes
    4       4     CRC32C over bytes 0-3 and 8-(19+length): the header without this field, and the payload
    8       8     LSN (log sequence number; starts at 1, rises by 1 per record, no gaps)
    16      2     record type (the service's type code; 0 is reserved)
    18      2     flags (bit 0: BATCH_START, the first frame of one write + fdatasync)

BATCH_START is what lets recovery tell a torn tail from corruption: the writer issues a write only after
the previous write's fdatasync returned, so only the last batch in the log can be incomplete. Damage with a
later batch after it sits in bytes that were already durable, which is corruption.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence

import attrs
from crc32c import crc32c

FRAME_HEADER = struct.Struct("<IIQHH")
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 20
_U32 = struct.Struct("<I")
_LSN_TYPE_FLAGS = struct.Struct("<QHH")

FLAG_BATCH_START = 0x0001
KNOWN_FLAGS = FLAG_BATCH_START

#: Largest payload a frame may carry. A bound keeps a damaged length field from making a reader wait
#: for (or allocate) gigabytes, and keeps one write of the writer small enough to scan on recovery.
MAX_PAYLOAD_BYTES = 16 * 2**20
MAX_RECORD_TYPE = 0xFFFF


def frame_size(payload_len: int) -> int:
    return FRAME_HEADER_SIZE + payload_len


def _check_fields(lsn: int, record_type: int, payload_len: int) -> None:
    if not 1 <= lsn < 2**64:
        raise ValueError(f"LSN must be in 1..2**64-1, got {lsn}")
    if not 1 <= record_type <= MAX_RECORD_TYPE:
        raise ValueError(f"record type must be in 1..{MAX_RECORD_TYPE}, got {record_type}")
    if payload_len > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {payload_len} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte frame limit")


def encode_frame(lsn: int, record_type: int, payload: bytes, *, flags: int = 0) -> bytes:
    """One frame as bytes."""
    _check_fields(lsn, record_type, len(payload))
    if flags & ~KNOWN_FLAGS:
        raise ValueError(f"unknown frame flags {flags:#x}")
    length = _U32.pack(len(payload))
    body = _LSN_TYPE_FLAGS.pack(lsn, record_type, flags) + payload
    crc = crc32c(body, crc32c(length))
    return length + _U32.pack(crc) + body


def encode_batch(first_lsn: int, records: Sequence[tuple[int, bytes]]) -> bytes:
    """Frames for consecutive LSNs from `first_lsn`, the first marked BATCH_START: the bytes of one write.

    Built in one preallocated buffer because this runs once per group commit on the append hot path.
    """
    total = 0
    for record_type, payload in records:
        _check_fields(first_lsn, record_type, len(payload))
        total += FRAME_HEADER_SIZE + len(payload)
    out = bytearray(total)
    view = memoryview(out)
    offset = 0
    lsn = first_lsn
    flags = FLAG_BATCH_START
    for record_type, payload in records:
        end = offset + FRAME_HEADER_SIZE + len(payload)
        _U32.pack_into(out, offset, len(payload))
        _LSN_TYPE_FLAGS.pack_into(out, offset + 8, lsn, record_type, flags)
        out[offset + FRAME_HEADER_SIZE : end] = payload
        crc = crc32c(view[offset + 8 : end], crc32c(view[offset : offset + 4]))
        _U32.pack_into(out, offset + 4, crc)
        offset = end
        lsn += 1
        flags = 0
    view.release()
    return bytes(out)


@attrs.frozen
class Frame:
    """A whole, checksum-verified frame and where it sat in the decoded stream."""

    lsn: int
    record_type: int
    payload: bytes
    offset: int  # byte offset of the frame's first header byte
    size: int  # header + payload bytes
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def batch_start(self) -> bool:
        return bool(self.flags & FLAG_BATCH_START)


@attrs.frozen
class NeedMore:
    """No whole frame is buffered yet. `offset` is where the next frame starts; `buffered` how many of its
    bytes are held. After `feed_eof()` a NeedMore with `buffered == 0` means a clean end."""

    offset: int
    buffered: int


class FrameErrorKind(enum.StrEnum):
    TRUNCATED_HEADER = "truncated_header"  # the stream ended inside a header
    TRUNCATED_PAYLOAD = "truncated_payload"  # the stream ended inside a payload
    ZEROED = "zeroed"  # a header of zero bytes: space the data never reached
    BAD_LENGTH = "bad_length"  # a length no frame can have
    BAD_CHECKSUM = "bad_checksum"
    BAD_FLAGS = "bad_flags"  # a checksum-valid frame with flags this version does not know
    BAD_LSN = "bad_lsn"  # a checksum-valid frame whose LSN is not the next one


class FrameError(Exception):
    """The stream cannot be decoded at `offset`. `lsn` is the LSN expected there when the decoder knows
    it, else the LSN read from the (unverified) header, else None."""

    def __init__(self, offset: int, reason: FrameErrorKind, lsn: int | None, detail: str = "") -> None:
        self.offset = offset
        self.reason = reason
        self.lsn = lsn
        self.detail = detail
        text = f"{reason.value} at offset {offset}" + (f" (LSN {lsn})" if lsn is not None else "")
        super().__init__(text + (f": {detail}" if detail else ""))

    def __reduce__(self) -> tuple[type[FrameError], tuple[int, FrameErrorKind, int | None, str]]:
        return (type(self), (self.offset, self.reason, self.lsn, self.detail))


_ZERO_HEADER = bytes(FRAME_HEADER_SIZE)


class FrameDecoder:
    """Incremental decoder: `feed()` bytes as they come, call `next_frame()` until it returns NeedMore.

    `offset` is the absolute position of the first byte fed (a segment's frames start after its header).
    With `expected_lsn`, every frame must carry the next LSN in sequence. An error is sticky: the stream
    past a bad frame has no trustworthy frame boundary, so the decoder refuses to guess one.
    """

    def __init__(
        self, *, offset: int = 0, expected_lsn: int | None = None, max_payload: int = MAX_PAYLOAD_BYTES
    ) -> None:
        self._buffer = bytearray()
        self._start = 0  # index in _buffer of the next undecoded byte; compacted lazily
        self._offset = offset  # absolute offset of _buffer[_start]
        self._expected_lsn = expected_lsn
        self._max_payload = max_payload
        self._eof = False
        self._error: FrameError | None = None

    @property
    def offset(self) -> int:
        """Absolute offset of the next frame (the end of the last frame returned)."""
        return self._offset

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._start

    @property
    def expected_lsn(self) -> int | None:
        return self._expected_lsn

    @property
    def eof(self) -> bool:
        return self._eof

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        if self._start and self._start * 2 >= len(self._buffer):
            del self._buffer[: self._start]  # compact: keeps feeding a long stream linear, not quadratic
            self._start = 0
        self._buffer += data

    def feed_eof(self) -> None:
        self._eof = True

    def next_frame(self) -> Frame | NeedMore:
        if self._error is not None:
            raise self._error
        try:
            return self._next_frame()
        except FrameError as exc:
            self._error = exc
            raise

    def _next_frame(self) -> Frame | NeedMore:
        buf = self._buffer
        start = self._start
        available = len(buf) - start
        if available < FRAME_HEADER_SIZE:
            if self._eof and available:
                lsn = self._expected_lsn
                raise FrameError(self._offset, FrameErrorKind.TRUNCATED_HEADER, lsn, f"{available} bytes")
            return NeedMore(self._offset, available)
        length, crc, lsn, record_type, flags = FRAME_HEADER.unpack_from(buf, start)
        reported_lsn = self._expected_lsn if self._expected_lsn is not None else lsn
        if length == 0 and crc == 0 and lsn == 0 and buf[start : start + FRAME_HEADER_SIZE] == _ZERO_HEADER:
            raise FrameError(self._offset, FrameErrorKind.ZEROED, reported_lsn)
        if length > self._max_payload:
            raise FrameError(
                self._offset, FrameErrorKind.BAD_LENGTH, reported_lsn, f"length field says {length} bytes"
            )
        end = start + FRAME_HEADER_SIZE + length
        if end > len(buf):
            if self._eof:
                raise FrameError(
                    self._offset,
                    FrameErrorKind.TRUNCATED_PAYLOAD,
                    reported_lsn,
                    f"{available - FRAME_HEADER_SIZE} of {length} payload bytes",
                )
            return NeedMore(self._offset, available)
        view = memoryview(buf)
        try:
            actual = crc32c(view[start + 8 : end], crc32c(view[start : start + 4]))
            payload = bytes(view[start + FRAME_HEADER_SIZE : end])
        finally:
            view.release()  # a live export would stop the bytearray from growing on the next feed
        if actual != crc:
            raise FrameError(
                self._offset,
                FrameErrorKind.BAD_CHECKSUM,
                reported_lsn,
                f"stored CRC32C {crc:#010x}, computed {actual:#010x}",
            )
        if flags & ~KNOWN_FLAGS:
            raise FrameError(self._offset, FrameErrorKind.BAD_FLAGS, lsn, f"flags {flags:#06x}")
        if self._expected_lsn is not None and lsn != self._expected_lsn:
            raise FrameError(self._offset, FrameErrorKind.BAD_LSN, lsn, f"expected LSN {self._expected_lsn}")
        size = FRAME_HEADER_SIZE + length
        frame = Frame(
            lsn=lsn, record_type=record_type, payload=payload, offset=self._offset, size=size, flags=flags
        )
        self._start = end
        self._offset += size
        self._expected_lsn = lsn + 1
        return frame


def parse_frame_at(data: bytes | bytearray | memoryview, offset: int, *, min_lsn: int = 1) -> Frame | None:
    """The frame starting exactly at `offset` of `data` if it is whole and checksum-valid with an LSN of at
    least `min_lsn`, else None. Recovery uses it to probe for frames beyond a damaged one."""
    if offset < 0 or offset + FRAME_HEADER_SIZE > len(data):
        return None
    length, crc, lsn, record_type, flags = FRAME_HEADER.unpack_from(data, offset)
    end = offset + FRAME_HEADER_SIZE + length
    if length > MAX_PAYLOAD_BYTES or end > len(data) or lsn < min_lsn or flags & ~KNOWN_FLAGS:
        return None
    view = memoryview(data)
    try:
        if crc32c(view[offset + 8 : end], crc32c(view[offset : offset + 4])) != crc:
            return None
        payload = bytes(view[offset + FRAME_HEADER_SIZE : end])
    finally:
        view.release()
    return Frame(
        lsn=lsn, record_type=record_type, payload=payload, offset=offset, size=end - offset, flags=flags
    )

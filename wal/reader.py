"""Reading the log: every record from any LSN across segments, and following the tail of a live log.

A reader never changes a file. For a live log pass the writer's durable LSN (`to_lsn`, or the `durable`
watermark to `follow`): records up to it must be whole, so damage there is corruption, while bytes beyond
it may be a write in progress and are left alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import anyio
import anyio.to_thread
import attrs

from wal.bulk import RawFrame, leading_frames, segment_frames
from wal.codec import FLAG_BATCH_START, FRAME_HEADER_SIZE, Frame, FrameDecoder, FrameError, NeedMore
from wal.errors import WalCorruption, WalFormatError
from wal.recover import FREE_SPACE_KINDS, find_later_batch_start, zeros_to_end
from wal.segment import (
    SEGMENT_HEADER_SIZE,
    HeaderProblem,
    check_segment_header,
    frame_offset,
    list_segment_files,
    segment_name,
)
from wal.watermark import Watermark

DEFAULT_FOLLOW_BATCH = 512
_READ_CHUNK = 1 << 20
T = TypeVar("T")


@attrs.frozen
class LogEntry:
    """A record read from the log, with the segment it sits in."""

    lsn: int
    record_type: int
    payload: bytes
    segment: str
    offset: int
    flags: int = 0

    @property
    def batch_start(self) -> bool:
        """The first record of one write + fdatasync (group commit) of the writer."""
        return bool(self.flags & FLAG_BATCH_START)

    @classmethod
    def from_frame(cls, frame: Frame, segment: str) -> LogEntry:
        return cls(frame.lsn, frame.record_type, frame.payload, segment, frame.offset, frame.flags)

    @classmethod
    def from_raw(cls, frame: RawFrame, segment: str) -> LogEntry:
        lsn, record_type, payload, flags, offset = frame
        return cls(lsn, record_type, payload, segment, offset, flags)


def _header_ok(path: Path, first_lsn: int, *, is_last: bool) -> bool:
    """True when frames follow; False for a last segment whose creation was cut short (no records)."""
    with open(path, "rb") as f:
        head = f.read(SEGMENT_HEADER_SIZE)
    problem = check_segment_header(head, first_lsn)
    if problem is None:
        return True
    if problem.problem == HeaderProblem.BAD_VERSION:
        raise WalFormatError(f"segment {path.name}: {problem.detail}")
    if is_last and problem.problem == HeaderProblem.SHORT:
        return False
    raise WalCorruption(path.name, 0, first_lsn, f"segment header {problem.problem.value}: {problem.detail}")


def iter_frames(wal_dir: Path | str, from_lsn: int = 1, *, to_lsn: int | None = None) -> Iterator[LogEntry]:
    """Records with LSN >= from_lsn (and <= to_lsn), in order, across segments.

    Raises WalCorruption for damage in a sealed segment, for an LSN gap, for damage before `to_lsn`, and
    (without `to_lsn`) for damage in the last segment that is not a torn tail; a torn tail ends the
    iteration quietly, as recovery would cut it.
    """
    return _walk(Path(wal_dir), from_lsn, to_lsn, LogEntry.from_raw)


def iter_raw_frames(
    wal_dir: Path | str, from_lsn: int = 1, *, to_lsn: int | None = None
) -> Iterator[RawFrame]:
    """`iter_frames` as plain tuples `(lsn, record_type, payload, flags, offset)`, with the same checks and
    errors: for readers of the whole log (a rebuild), to whom a LogEntry per record is a cost."""
    return _walk(Path(wal_dir), from_lsn, to_lsn, None)


def _walk(
    wal_dir: Path, from_lsn: int, to_lsn: int | None, make: Callable[[RawFrame, str], T] | None
) -> Iterator[T]:
    """The frames of `iter_frames`, each passed through `make` with its segment's name (None: as is)."""
    if from_lsn < 1:
        raise ValueError("LSNs start at 1")
    files = list_segment_files(wal_dir)
    if not files:
        if to_lsn is not None and to_lsn >= from_lsn:
            raise WalCorruption("(none)", 0, from_lsn, f"the log is empty, but LSN {to_lsn} was expected")
        return
    if files[0][0] != 1:
        raise WalCorruption(files[0][1].name, 0, 1, f"the log starts at LSN {files[0][0]}")
    start = max(i for i, (first, _) in enumerate(files) if first <= from_lsn)
    expected = files[start][0]
    seen = expected - 1
    end = SEGMENT_HEADER_SIZE  # where the last record read ends
    index = start
    while index < len(files):
        first_lsn, path = files[index]
        if first_lsn != expected:
            reason = (
                f"LSN gap: the previous segment ends at LSN {expected - 1}, this one starts at {first_lsn}"
            )
            raise WalCorruption(path.name, 0, expected, reason)
        is_last = index == len(files) - 1
        last: RawFrame | None = None
        try:
            if _header_ok(path, first_lsn, is_last=is_last):
                offset, offset_lsn = SEGMENT_HEADER_SIZE, first_lsn
                if from_lsn > first_lsn and index == start:
                    # Skip the records before from_lsn without decoding them (checksums still checked).
                    offset, offset_lsn = frame_offset(path, first_lsn, from_lsn)
                    seen, end = offset_lsn - 1, offset
                name = path.name
                for frame in segment_frames(path, offset=offset, expected_lsn=offset_lsn):
                    seen = frame[0]
                    last = frame
                    if to_lsn is not None and seen > to_lsn:
                        return
                    if seen >= from_lsn:
                        yield cast(T, frame) if make is None else make(frame, name)
        except FrameError as err:
            at_free_space = is_last and err.reason in FREE_SPACE_KINDS and zeros_to_end(path, err.offset)
            if not at_free_space:
                if not is_last or (to_lsn is not None and seen < to_lsn):
                    raise WalCorruption(path.name, err.offset, err.lsn, str(err)) from err
                if to_lsn is None:
                    later = find_later_batch_start(path, err.offset, seen + 1)
                    if later is not None:
                        reason = f"{err}; a later write (LSN {later.lsn}) follows it"
                        raise WalCorruption(path.name, err.offset, err.lsn, reason) from err
                return  # a torn tail, or a write in progress beyond to_lsn
        finally:
            if last is not None:
                end = last[4] + FRAME_HEADER_SIZE + len(last[2])
        expected = seen + 1
        index += 1
        end = SEGMENT_HEADER_SIZE if index < len(files) else end
        if index == len(files) and (to_lsn is None or seen < to_lsn):
            # A live log may have rolled over since the listing; pick up segments created meanwhile.
            files = files[:index] + [f for f in list_segment_files(wal_dir) if f[0] > first_lsn]
    if to_lsn is not None and seen < to_lsn:
        raise WalCorruption(
            files[-1][1].name,
            end,
            seen + 1,
            f"the log ends at LSN {seen}, but LSN {to_lsn} was acknowledged",
        )


class _FollowCursor:
    """Where a follower is: a segment, the byte offset after the last record handed out, and its LSN.

    Each read starts from that offset again, so bytes beyond the durable LSN that were read but not handed
    out are read afresh next time: a failed batch is cut off and its LSNs rewritten, and a stale copy of it
    must never reach the applier.
    """

    def __init__(self, wal_dir: Path, from_lsn: int) -> None:
        self.wal_dir = wal_dir
        self.next_lsn = from_lsn
        self._path: Path | None = None
        self._offset = 0
        self._offset_lsn = 0  # LSN of the frame starting at _offset
        self._seeds: dict[int, int] = {}  # CRC seed per frame length, for the fast walk

    def _position(self) -> None:
        files = list_segment_files(self.wal_dir)
        candidates = [(first, path) for first, path in files if first <= self.next_lsn]
        if not candidates:
            raise WalCorruption("(none)", 0, self.next_lsn, f"no segment holds LSN {self.next_lsn}")
        first, path = candidates[-1]
        _header_ok(path, first, is_last=False)
        self._path, self._offset, self._offset_lsn = path, SEGMENT_HEADER_SIZE, first

    def read(self, upto: int, limit: int) -> list[LogEntry]:
        """Up to `limit` records from `next_lsn` through `upto` (all durable, so all must be readable)."""
        out: list[LogEntry] = []
        while self.next_lsn <= upto and len(out) < limit:
            if self._path is None:
                self._position()
            assert self._path is not None
            progressed = self._read_segment(self._path, upto, limit, out)
            if not progressed and self.next_lsn <= upto:
                following = self.wal_dir / segment_name(self._offset_lsn)
                if not following.exists() or following == self._path:
                    raise WalCorruption(
                        self._path.name,
                        self._offset,
                        self.next_lsn,
                        f"LSN {upto} is durable but the log ends before LSN {self.next_lsn}",
                    )
                _header_ok(following, self._offset_lsn, is_last=False)
                self._path, self._offset = following, SEGMENT_HEADER_SIZE
        return out

    def _read_segment(self, path: Path, upto: int, limit: int, out: list[LogEntry]) -> bool:
        progressed = False
        with open(path, "rb") as f:
            # The fast walk takes the durable frames (nearly always all of them); the decoder below goes on
            # from where it stopped, to name a frame it would not take or find the end.
            while self.next_lsn <= upto and len(out) < limit:
                f.seek(self._offset)
                taken = leading_frames(
                    f.read(_READ_CHUNK),
                    offset=self._offset,
                    expected_lsn=self._offset_lsn,
                    upto=upto,
                    limit=limit - len(out) + max(0, self.next_lsn - self._offset_lsn),
                    seeds=self._seeds,
                )
                if not taken:
                    break
                progressed = True
                for lsn, record_type, payload, flags, offset in taken:
                    if lsn >= self.next_lsn:
                        out.append(LogEntry(lsn, record_type, payload, path.name, offset, flags))
                last = taken[-1]
                self._offset, self._offset_lsn = last[4] + FRAME_HEADER_SIZE + len(last[2]), last[0] + 1
                self.next_lsn = max(self.next_lsn, self._offset_lsn)
            decoder = FrameDecoder(offset=self._offset, expected_lsn=self._offset_lsn)
            f.seek(self._offset)
            while self.next_lsn <= upto and len(out) < limit:
                try:
                    item = decoder.next_frame()
                except FrameError as err:
                    if err.lsn is not None and err.lsn > upto:
                        break  # not durable yet: a write in progress
                    raise WalCorruption(path.name, err.offset, err.lsn, str(err)) from err
                if isinstance(item, NeedMore):
                    chunk = f.read(_READ_CHUNK)
                    if not chunk:
                        break  # the end of what is written: the caller decides whether that is wrong
                    decoder.feed(chunk)
                    continue
                if item.lsn > upto:
                    break  # not durable yet: leave the offset before it, it may still be rewritten
                progressed = True
                self._offset, self._offset_lsn = item.end, item.lsn + 1
                if item.lsn >= self.next_lsn:
                    out.append(LogEntry.from_frame(item, path.name))
                    self.next_lsn = item.lsn + 1
        return progressed


async def follow(
    wal_dir: Path | str, from_lsn: int, durable: Watermark, batch_max: int = DEFAULT_FOLLOW_BATCH
) -> AsyncIterator[list[LogEntry]]:
    """Batches of durable records from `from_lsn` on, forever: each batch holds what is durable now (up to
    `batch_max` records); when caught up it waits for the watermark to rise. Reads run in worker threads."""
    if from_lsn < 1:
        raise ValueError("LSNs start at 1")
    cursor = _FollowCursor(Path(wal_dir), from_lsn)
    while True:
        await durable.wait_for(cursor.next_lsn)
        batch = await anyio.to_thread.run_sync(cursor.read, durable.value, batch_max)
        if batch:
            yield batch

"""Opening the log: find what is on disk, tell a torn tail from corruption, and repair only the former.

The rule (DESIGN.md, WAL rule 5): only the tail of the last segment may be torn. The writer starts a write
only after the previous write's fdatasync returned, and marks the first frame of every write BATCH_START.
So if a damaged frame is followed anywhere later by a valid BATCH_START frame, the damage sits in bytes
that had already been made durable and acknowledged: that is corruption, and the process refuses to start.
Damage with no later batch after it lies in the last write, which was never acknowledged: a torn tail,
cut back to the end of the last whole record. Damage in a sealed segment is always corruption.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from wal.codec import FLAG_BATCH_START, Frame, FrameErrorKind, parse_frame_at
from wal.errors import WalCorruption, WalFormatError
from wal.fs import FileSystem, OsFileSystem, pwrite_all
from wal.segment import (
    SEGMENT_HEADER_SIZE,
    SEGMENT_SUFFIX,
    TEMP_SUFFIX,
    HeaderProblem,
    SegmentInfo,
    SegmentScan,
    SegmentStatus,
    encode_segment_header,
    list_segment_files,
    scan_segment,
)

# Errors a torn write can produce. A checksum-valid frame with a wrong LSN or unknown flags cannot come
# from a torn write, so those are corruption wherever they are.
_TEARABLE = frozenset(
    {
        FrameErrorKind.TRUNCATED_HEADER,
        FrameErrorKind.TRUNCATED_PAYLOAD,
        FrameErrorKind.ZEROED,
        FrameErrorKind.BAD_LENGTH,
        FrameErrorKind.BAD_CHECKSUM,
    }
)
# How free space looks to the decoder: the active segment is preallocated, so it ends in zeros.
FREE_SPACE_KINDS = frozenset({FrameErrorKind.ZEROED, FrameErrorKind.TRUNCATED_HEADER})
_FLAGS_FIELD = (FLAG_BATCH_START).to_bytes(2, "little")
_FLAGS_OFFSET = 18  # of the flags field inside a frame header


@attrs.frozen
class TornTail:
    """An incomplete last write at the end of the last segment."""

    segment: str
    offset: int  # where the log ends once the tail is cut (end of the last whole record)
    size: int  # file size when found
    reason: str
    header: bool = False  # the segment's own header is incomplete (its creation was cut short)

    @property
    def bytes(self) -> int:
        return self.size - self.offset


@attrs.frozen
class LogInspection:
    """What a read-only look at the log found. Never raises for damaged content."""

    wal_dir: Path
    segments: tuple[SegmentInfo, ...]
    last_lsn: int  # last LSN readable before any damage (0: empty log)
    torn_tail: TornTail | None
    corruption: WalCorruption | WalFormatError | None
    temp_files: tuple[Path, ...]


@attrs.frozen
class RecoveryReport:
    """What opening the log found and repaired."""

    wal_dir: Path
    segments: tuple[SegmentInfo, ...]
    last_lsn: int
    torn_tail: TornTail | None  # what was found at the tail (cut when `repaired`)
    repaired: bool
    removed_temp_files: tuple[str, ...] = ()

    @property
    def torn_bytes_cut(self) -> int:
        return self.torn_tail.bytes if self.torn_tail is not None and self.repaired else 0

    @property
    def active_segment(self) -> SegmentInfo | None:
        return self.segments[-1] if self.segments else None


def find_later_batch_start(path: Path, after: int, min_lsn: int) -> Frame | None:
    """A valid BATCH_START frame with LSN >= min_lsn starting anywhere after byte `after`, or None.

    Candidates are found by searching for the flags field's bytes (a C-speed scan) and each is verified
    with its checksum, so a damaged length field cannot hide a later batch.
    """
    with open(path, "rb") as f:
        f.seek(after)
        data = f.read()
    position = 1
    while True:
        hit = data.find(_FLAGS_FIELD, position + _FLAGS_OFFSET)
        if hit < 0:
            return None
        candidate = hit - _FLAGS_OFFSET
        frame = parse_frame_at(data, candidate, min_lsn=min_lsn)
        if frame is not None and frame.batch_start:
            return attrs.evolve(frame, offset=after + candidate)
        position = candidate + 1


def zeros_to_end(path: Path, offset: int) -> bool:
    """Every byte from `offset` to the end of the file is zero."""
    zeros = bytes(1 << 20)
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(len(zeros)):
            if chunk != zeros[: len(chunk)]:
                return False
    return True


def _torn_header_only(path: Path, first_lsn: int, size: int) -> bool:
    """A last segment shorter than its header whose bytes are a prefix of the right header, or zeros."""
    with open(path, "rb") as f:
        data = f.read()
    return data == encode_segment_header(first_lsn)[:size] or not any(data)


def _classify(
    scan: SegmentScan, *, is_last: bool
) -> tuple[SegmentStatus, str | None, WalCorruption | WalFormatError | None, TornTail | None]:
    name = scan.path.name
    header = scan.header_error
    if header is not None:
        if header.problem == HeaderProblem.BAD_VERSION:
            error = WalFormatError(
                f"segment {name}: {header.detail}; refusing to read a format it does not know"
            )
            return SegmentStatus.CORRUPT, header.detail, error, None
        if (
            is_last
            and header.problem == HeaderProblem.SHORT
            and _torn_header_only(scan.path, scan.first_lsn, scan.size)
        ):
            torn = TornTail(name, 0, scan.size, f"segment header cut short ({header.detail})", header=True)
            return SegmentStatus.TORN_TAIL, torn.reason, None, torn
        reason = f"segment header {header.problem.value}: {header.detail}"
        return SegmentStatus.CORRUPT, reason, WalCorruption(name, 0, scan.first_lsn, reason), None
    err = scan.frame_error
    if err is None:
        return SegmentStatus.OK, None, None, None
    if is_last and err.reason in FREE_SPACE_KINDS and zeros_to_end(scan.path, err.offset):
        return SegmentStatus.OK, None, None, None  # preallocated space the log has not reached yet
    reason = f"{err.reason.value}" + (f" ({err.detail})" if err.detail else "")
    if not is_last:
        reason += "; the segment is sealed, so these bytes had been acknowledged"
        return SegmentStatus.CORRUPT, reason, WalCorruption(name, err.offset, err.lsn, reason), None
    if err.reason not in _TEARABLE:
        return SegmentStatus.CORRUPT, reason, WalCorruption(name, err.offset, err.lsn, reason), None
    min_lsn = (scan.last_lsn if scan.last_lsn is not None else scan.first_lsn - 1) + 1
    later = find_later_batch_start(scan.path, err.offset, min_lsn)
    if later is not None:
        reason += (
            f"; a later write (LSN {later.lsn} at offset {later.offset}) follows it, "
            "so the damaged bytes had already been made durable"
        )
        return SegmentStatus.CORRUPT, reason, WalCorruption(name, err.offset, err.lsn, reason), None
    torn = TornTail(name, err.offset, scan.size, reason)
    return SegmentStatus.TORN_TAIL, reason, None, torn


def inspect_log(wal_dir: Path, *, only_last: bool = False) -> LogInspection:
    """Scan every segment read-only and classify what is found; see the module docstring for the rule.
    With `only_last`, just the last segment (and no check of the LSN chain before it)."""
    wal_dir = Path(wal_dir)
    files = list_segment_files(wal_dir)
    expected: int | None = 1  # the LSN the next segment must start with; None after a damaged one
    if only_last and files:
        files, expected = files[-1:], None
    temp_files = tuple(sorted(wal_dir.glob(f"*{SEGMENT_SUFFIX}{TEMP_SUFFIX}"))) if wal_dir.is_dir() else ()
    infos: list[SegmentInfo] = []
    corruption: WalCorruption | WalFormatError | None = None
    torn: TornTail | None = None
    readable_to = 0  # last LSN readable from LSN 1 with nothing missing or damaged before it
    intact = True
    for index, (first_lsn, path) in enumerate(files):
        is_last = index == len(files) - 1
        scan = scan_segment(path, first_lsn)
        status, problem, error, seg_torn = _classify(scan, is_last=is_last)
        if expected is not None and first_lsn != expected and error is None:
            if index == 0:
                problem = f"the log starts at LSN {first_lsn}; the segments before it are missing"
            else:
                ends = expected - 1
                problem = f"LSN gap: the previous segment ends at LSN {ends}, this one starts at {first_lsn}"
            status = SegmentStatus.CORRUPT
            error = WalCorruption(path.name, 0, expected, problem)
        if corruption is None and error is not None:
            corruption = error
        if seg_torn is not None:
            torn = seg_torn
        if status == SegmentStatus.CORRUPT:
            intact = False
        elif intact and scan.last_lsn is not None:
            readable_to = scan.last_lsn
        expected = None if status == SegmentStatus.CORRUPT else (scan.last_lsn or first_lsn - 1) + 1
        infos.append(
            SegmentInfo(
                path=path,
                first_lsn=first_lsn,
                last_lsn=scan.last_lsn,
                size=scan.size,
                sealed=not is_last,
                record_count=scan.record_count,
                valid_size=scan.valid_size,
                status=status,
                problem=problem,
            )
        )
    return LogInspection(wal_dir, tuple(infos), readable_to, torn, corruption, temp_files)


def open_log(wal_dir: Path, repair: bool = True, *, fs: FileSystem | None = None) -> RecoveryReport:
    """Open the log for use: raise `WalCorruption` (or `WalFormatError`) unless it is whole or merely
    torn at the tail. With `repair`, cut the torn tail, remove half-created segment files, and make the
    result durable, so that what this returns is what a power cut right now would leave. Without it,
    nothing on disk is touched and a torn tail is only reported."""
    wal_dir = Path(wal_dir)
    found = inspect_log(wal_dir)
    if found.corruption is not None:
        raise found.corruption
    if not repair:
        return RecoveryReport(wal_dir, found.segments, found.last_lsn, found.torn_tail, False)
    fs = fs or OsFileSystem()
    removed = []
    for temp in found.temp_files:
        fs.unlink(temp)
        removed.append(temp.name)
    segments = list(found.segments)
    if segments:
        last = segments[-1]
        fd = fs.open(last.path, os.O_WRONLY)
        try:
            torn = found.torn_tail
            if torn is not None and torn.header:
                pwrite_all(fs, fd, encode_segment_header(last.first_lsn), 0)
                fs.ftruncate(fd, SEGMENT_HEADER_SIZE)
            elif torn is not None:
                fs.ftruncate(fd, torn.offset)
            # Always sync: a crashed process may have left whole frames that sit only in the page cache,
            # and nothing may be built on records that a power cut could still take away.
            fs.fsync(fd)
        finally:
            fs.close(fd)
        new_size = last.size if found.torn_tail is None else max(found.torn_tail.offset, SEGMENT_HEADER_SIZE)
        valid = max(last.valid_size, SEGMENT_HEADER_SIZE)
        segments[-1] = attrs.evolve(
            last, size=new_size, valid_size=valid, status=SegmentStatus.OK, problem=None
        )
    if wal_dir.is_dir():
        fs.fsync_dir(wal_dir)
    return RecoveryReport(wal_dir, tuple(segments), found.last_lsn, found.torn_tail, True, tuple(removed))

"""What a restore needs from a backup target: download the segments, check each one, refuse any gap.

The list of what to fetch is the union of the manifest and a listing of `segments/`, so a manifest that
lags behind (a crash between upload and rewrite) or was lost costs nothing: every write-once segment name
carries its LSN range and, beside it, its checksum. A segment whose checksum cannot be found anywhere, or
whose content does not match it, stops the restore (WAL rule 8: fail loudly, never guess).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from service.backup.directory import fsync_dir
from service.backup.targets import SEGMENTS_PREFIX, Manifest, ObjectInfo, Target, digest_file, parse_range


class GapError(ValueError):
    """The backup lacks some LSNs (or holds two segments that overlap); the message names the range."""


class ChecksumError(ValueError):
    """A downloaded object is not what the backup says it is."""


@attrs.frozen
class RemoteSegment:
    name: str
    first_lsn: int
    last_lsn: int
    size: int
    sha256: str


def check_contiguous(
    ranges: Iterable[tuple[int, int]], *, start: int | None = 1, end: int | None = None
) -> None:
    """Raise GapError unless the (first_lsn, last_lsn) ranges cover start..end with no gap or overlap.
    `start` None accepts any first LSN; `end` None accepts any last one."""
    ordered = sorted(ranges)
    expected = start
    for first, last in ordered:
        if last < first:
            raise GapError(f"segment range {first}-{last} is empty or reversed")
        if expected is not None and first > expected:
            raise GapError(f"missing LSNs {expected}-{first - 1} (before the segment starting at {first})")
        if expected is not None and first < expected:
            raise GapError(
                f"segments overlap: one starts at LSN {first}, but LSNs up to {expected - 1} are covered"
            )
        expected = last + 1
    if end is not None:
        covered = (start - 1 if start is not None else 0) if expected is None else expected - 1
        if covered < end:
            raise GapError(f"missing LSNs {covered + 1}-{end} (the backup ends at LSN {covered})")


def remote_segments(target: Target, manifest: Manifest | None = None) -> list[RemoteSegment]:
    """The sealed segments at `target`: the manifest's entries plus any segment it does not list yet,
    whose checksum is then taken from the object's metadata (or sidecar)."""
    manifest = manifest if manifest is not None else target.read_manifest()
    known = {e.name: e for e in manifest.segments} if manifest is not None else {}
    found: dict[str, RemoteSegment] = {
        e.name: RemoteSegment(e.name, e.first_lsn, e.last_lsn, e.size, e.sha256) for e in known.values()
    }
    for name in target.list(SEGMENTS_PREFIX):
        lsns = parse_range(name)
        if lsns is None or name in found:
            continue
        info = target.head(name)
        if info is None or info.sha256 is None:
            raise ChecksumError(f"{target.url}: {name} has no checksum in the manifest or beside it")
        found[name] = RemoteSegment(name, lsns[0], lsns[1], info.size, info.sha256)
    return sorted(found.values(), key=lambda s: s.first_lsn)


def _fetch(target: Target, name: str, expected: ObjectInfo, dest: Path) -> None:
    """Download into a temporary file, check it, fsync it, and only then give it its final name."""
    if dest.exists():
        if digest_file(dest) == expected:
            return  # an earlier, interrupted restore already fetched it whole
        raise ChecksumError(f"{dest} exists with other content than {target.url}/{name}; not replacing it")
    tmp = dest.with_name(f".{dest.name}.download")
    try:
        target.get_to_file(name, tmp)
        actual = digest_file(tmp)
        if actual != expected:
            raise ChecksumError(f"{target.url}/{name}: downloaded {actual}, expected {expected}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(dest.parent)


def download_segments(
    target: Target,
    dest_dir: Path,
    to_lsn: int | None = None,
    *,
    start_lsn: int | None = 1,
    include_partial: bool = True,
) -> list[Path]:
    """Download the sealed segments from `start_lsn` (default 1, where the log starts) up to the one
    holding `to_lsn` (None: all) into `dest_dir` as `{first_lsn:020d}.wal`, each checked against its
    checksum; then, if `include_partial` and no `to_lsn` stops earlier, the newest active-segment prefix
    that continues them. Raises GapError naming any missing LSN range before anything is downloaded."""
    manifest = target.read_manifest()
    wanted = [s for s in remote_segments(target, manifest) if to_lsn is None or s.first_lsn <= to_lsn]
    next_lsn = wanted[-1].last_lsn + 1 if wanted else start_lsn
    partial = manifest.active if manifest is not None and include_partial else None
    if partial is not None and (partial.first_lsn != next_lsn or (to_lsn is not None and to_lsn < next_lsn)):
        partial = None  # it does not continue the segments, or they already reach to_lsn
    ranges = [(s.first_lsn, s.last_lsn) for s in wanted]
    if partial is not None:
        ranges.append((partial.first_lsn, partial.last_lsn))
    check_contiguous(ranges, start=start_lsn, end=to_lsn)
    dest_dir.mkdir(parents=True, exist_ok=True)
    downloaded = []
    fetches = [(s.name, ObjectInfo(s.size, s.sha256), s.first_lsn) for s in wanted]
    if partial is not None:
        fetches.append((partial.name, ObjectInfo(partial.size, partial.sha256), partial.first_lsn))
    for name, expected, first_lsn in fetches:
        dest = dest_dir / f"{first_lsn:020d}.wal"
        _fetch(target, name, expected, dest)
        downloaded.append(dest)
    return downloaded

"""`restore --from TARGET`: the log back from a backup, checked, then the database rebuilt from it.

1. Download the target's segments (and its newest active-segment prefix) into `<data_dir>/wal.restoring`,
   each checked against its SHA-256, after checking that their LSN ranges leave no gap (else nothing is
   downloaded and the missing range is named). An interrupted restore resumes: files already fetched
   whole are kept.
2. Check the result as a log (every frame's checksum, LSNs from 1 without a gap).
3. If a log is already there (only with `--force`), keep what it has beyond the backup: its intact
   segments that continue the restored LSNs (the active segment, sealed ones not shipped yet) are copied
   in, so restoring over one damaged sealed segment loses nothing else.
4. Move the old log aside (`wal.replaced-<time>`, never deleted), put the new one in place, set the old
   database aside, and rebuild the database from the new log (to `--to-lsn` if asked; the log itself is
   never cut, so the next start applies the rest).

Runs under the data directory's lock: it refuses while the service runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from recovery.lock import DataDirLock
from recovery.progress import NoProgress, Progress
from recovery.replay import rebuild_from_log, set_aside
from service.backup.directory import fsync_dir
from service.backup.restore import download_segments, remote_segments
from service.backup.targets import Target
from service.config import Config
from wal import SegmentInfo, SegmentStatus, inspect_log, list_segments

STAGING = "wal.restoring"


class RestoreRefused(Exception):
    """The restore would overwrite something, or the backup cannot give a whole log."""


@attrs.frozen
class RestoreReport:
    url: str
    downloaded: int  # segment files (the active prefix included)
    restored_lsn: int  # the backup's last LSN
    kept_local: tuple[str, ...]  # local segments beyond the backup that were kept
    last_lsn: int  # the end of the restored log
    old_log: Path | None  # where the previous log was moved
    old_database: Path | None
    database_lsn: int  # the rebuilt database's applied LSN
    seconds: float

    lost_note: str | None = None  # the previous log reached further than what could be kept

    @property
    def line(self) -> str:
        parts = [
            f"restored LSN 1-{self.restored_lsn:,} from {self.url} "
            f"({self.downloaded} segment files, checksums verified, no gaps)"
        ]
        if self.kept_local:
            parts.append(
                f"kept {self.last_lsn - self.restored_lsn:,} local records beyond it "
                f"(LSN {self.restored_lsn + 1:,}-{self.last_lsn:,})"
            )
        if self.lost_note:
            parts.append(self.lost_note)
        if self.old_log is not None:
            parts.append(f"the previous log is kept in {self.old_log}")
        rebuilt = f"database rebuilt to LSN {self.database_lsn:,} in {self.seconds:.2f} s"
        if self.database_lsn < self.last_lsn:
            rebuilt += f" (the next start applies the remaining {self.last_lsn - self.database_lsn:,})"
        parts.append(rebuilt)
        return "; ".join(parts)


class _Counting:
    """A target that advances a progress bar per downloaded object (everything else passes through)."""

    def __init__(self, target: Target, progress: Progress) -> None:
        self._target = target
        self._progress = progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def get_to_file(self, name: str, dest: Path) -> None:
        self._target.get_to_file(name, dest)
        self._progress.advance(1)


def _copy_prefix(source: Path, dest: Path, size: int) -> None:
    """Copy the first `size` bytes of a segment, durably, under its final name only once complete."""
    tmp = dest.with_name(f".{dest.name}.copy")
    with open(source, "rb") as src, open(tmp, "wb") as out:
        left = size
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                raise OSError(f"{source} is shorter than its {size} valid bytes")
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def _same_prefix(a: Path, b: Path, size: int) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            if fa.read(n) != fb.read(n):
                return False
            left -= n
    return True


def _keep_local(staging: Path, local: list[SegmentInfo], restored_last: int) -> list[str]:
    """Copy the old log's intact segments that continue the restored LSNs into `staging`."""
    kept = []
    staged = {s.first_lsn: s for s in list_segments(staging, verify=True)}
    end = restored_last
    for seg in local:
        if seg.status not in (SegmentStatus.OK, SegmentStatus.TORN_TAIL) or seg.last_lsn is None:
            if seg.first_lsn > end:
                break  # damaged, or nothing in it: what follows cannot continue the log
            continue
        if seg.last_lsn <= end:
            continue  # the backup has all of it
        partial = staged.get(seg.first_lsn)
        if partial is not None:
            # The backup holds a prefix of this segment (the shipped active prefix): keep the longer local
            # copy only if it starts with exactly those bytes.
            if not _same_prefix(partial.path, seg.path, partial.valid_size):
                break
        elif seg.first_lsn != end + 1:
            break
        _copy_prefix(seg.path, staging / seg.name, seg.valid_size)
        kept.append(seg.name)
        end = seg.last_lsn
    return kept


def restore(
    config: Config,
    url: str,
    *,
    to_lsn: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
    open_target: Callable[[str], Target] | None = None,
) -> RestoreReport:
    """See the module docstring. Raises RestoreRefused, GapError or ChecksumError (nothing replaced)."""
    import time

    from service.backup.targets import open_target as default_open

    started = time.perf_counter()
    progress = progress or NoProgress()
    data_dir, wal_dir = config.data_dir, config.wal_dir
    with DataDirLock(data_dir, "restore"):
        existing = list_segments(wal_dir)
        if existing and not force:
            last = existing[-1].last_lsn or existing[-1].first_lsn - 1
            raise RestoreRefused(
                f"a log is already at {wal_dir} ({len(existing)} segments, up to LSN {last:,}); restoring "
                "would replace it. Run again with --force to restore anyway: the old log is moved aside, "
                "never deleted, and its intact records beyond the backup are kept."
            )
        target = (open_target or (lambda u: default_open(u, config.backup)))(url)
        staging = data_dir / STAGING
        wanted = remote_segments(target)
        if not wanted:
            raise RestoreRefused(f"{url} holds no log segments: nothing to restore")
        progress.start(f"downloading from {url}", len(wanted) + 1)
        try:
            files = download_segments(_Counting(target, progress), staging, to_lsn)
        finally:
            progress.finish()
        for stale in set(staging.glob("*.wal")) - set(files):
            stale.unlink()  # left by an earlier, interrupted restore that wanted more
        found = inspect_log(staging)
        if found.corruption is not None or found.torn_tail is not None:
            problem = found.corruption or found.torn_tail
            raise RestoreRefused(f"the downloaded log does not check out: {problem}")
        restored_last = found.last_lsn
        if to_lsn is not None and restored_last < to_lsn:
            raise RestoreRefused(f"the backup ends at LSN {restored_last:,}, before --to-lsn {to_lsn:,}")
        kept: list[str] = []
        lost_note = None
        if existing and to_lsn is None:
            local = list(inspect_log(wal_dir).segments)
            kept = _keep_local(staging, local, restored_last)
            reach = local[-1].last_lsn or local[-1].first_lsn - 1
            if reach > inspect_log(staging).last_lsn:
                lost_note = (
                    f"the previous log reached LSN {reach:,} but is damaged before it: records after the "
                    "restored ones are only in the moved-aside log"
                )
        last = inspect_log(staging).last_lsn

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        old_log = None
        if wal_dir.exists() and any(wal_dir.iterdir()):
            old_log = data_dir / f"wal.replaced-{stamp}"
            os.replace(wal_dir, old_log)
        elif wal_dir.exists():
            wal_dir.rmdir()
        os.replace(staging, wal_dir)
        fsync_dir(data_dir)
        old_db = set_aside(config.db_path, f"before-restore-{stamp}")
        db_lsn = rebuild_from_log(wal_dir, config.db_path, to_lsn=to_lsn, progress=progress)
        seconds = time.perf_counter() - started
        return RestoreReport(
            url, len(files), restored_last, tuple(kept), last, old_log, old_db, db_lsn, seconds, lost_note
        )


def remove_staging(data_dir: Path) -> None:
    """Forget an interrupted restore's downloads (they would otherwise be resumed)."""
    shutil.rmtree(data_dir / STAGING, ignore_errors=True)

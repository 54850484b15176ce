"""The backup shipper: one actor that copies every sealed log segment to every configured target.

It only reads the log's files and never waits on, or is waited on by, the WAL writer: an outage of a
target shows as a growing backlog in `status()`, never as a slower join. Each target has its own lane
(a task) with its own retry schedule, so one dead bucket does not hold back a healthy directory.

Per segment and target (WAL rule 8): compute the local SHA-256, create the object under its write-once
name (`segments/{first}-{last}.wal`), read it back and compare size and checksum, then rewrite the target's
manifest and the local state file. A name already present with the same content counts as shipped (so a
crash between upload and bookkeeping costs one check, not a second copy); present with other content is an
alarm: logged at CRITICAL, listed in status, never overwritten. No local segment is ever removed here.

The shipper wakes on `notify()`, on a watermark advancing (any object with `.value` and
`async wait_for(v)`), and on a periodic scan; optionally it also ships the active segment's durable prefix
every `active_prefix_interval_s` under `active/{first}-{last}.partial`, which bounds what an off-box
restore can miss to that interval.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import anyio
import attrs

from service.backup.state import BackupState, TargetState, load_state, save_state
from service.backup.targets import (
    ACTIVE_PREFIX,
    SEGMENTS_PREFIX,
    Manifest,
    ManifestEntry,
    ObjectInfo,
    Target,
    TargetError,
    digest_file,
    open_target,
    parse_range,
    partial_name,
    segment_name,
)

if TYPE_CHECKING:
    from service.config import Config

log = logging.getLogger("invite_ledger.backup")


class SegmentLike(Protocol):
    """What the shipper needs of a segment (the WAL's SegmentInfo has this shape)."""

    @property
    def path(self) -> Path: ...
    @property
    def first_lsn(self) -> int: ...
    @property
    def last_lsn(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def sealed(self) -> bool: ...


class WatermarkLike(Protocol):
    @property
    def value(self) -> int: ...
    async def wait_for(self, value: int) -> None: ...


#: (path, first_lsn, last_lsn, size): the active segment's prefix that holds only whole, durable records.
ActivePrefix = tuple[Path, int, int, int]


@attrs.frozen
class TargetStatus:
    url: str
    shipped_lsn: int  # highest LSN such that every sealed segment up to it is shipped and verified
    backlog_segments: int
    backlog_bytes: int
    oldest_unshipped_age_s: float | None  # the oldest unshipped segment is at least this old
    last_success_at: datetime | None  # end of the last pass that reached the target without error
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int
    active_shipped_lsn: int | None  # last LSN of the newest shipped prefix of the active segment
    alarms: tuple[str, ...]  # names present at the target with other content: need a person


@attrs.frozen
class _Seg:
    path: Path
    first_lsn: int
    last_lsn: int
    size: int
    recorded_at: float  # seconds since the epoch: when its oldest record was (at the latest) written

    @property
    def name(self) -> str:
        return segment_name(self.first_lsn, self.last_lsn)


@attrs.define(eq=False)
class _Lane:
    """One target's state, owned by its own task."""

    target: Target
    shipped: dict[str, ManifestEntry] = attrs.field(factory=dict)
    active: ManifestEntry | None = None
    partials: set[str] = attrs.field(factory=set)
    manifest: Manifest = attrs.field(factory=Manifest)
    manifest_dirty: bool = False
    reconciled: bool = False
    conflicts: dict[str, str] = attrs.field(factory=dict)
    shipped_lsn: int = 0
    backlog_segments: int = 0
    backlog_bytes: int = 0
    oldest_unshipped_at: float | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    wake: anyio.Event | None = None
    next_partial_at: float = 0.0


def _upload_verified(target: Target, name: str, source: bytes | Path, local: ObjectInfo) -> str | None:
    """Create `name` unless present, then check what the target holds; None if it matches `local`, else
    the alarm text. Runs in a worker thread."""
    assert local.sha256 is not None
    created = target.put_if_absent(name, source, local.sha256)
    stored = target.head(name)
    if stored is None:
        raise TargetError(f"{target.url}: {name}: absent right after it was written")
    what = "uploaded" if created else "already present"
    if stored.size != local.size or (stored.sha256 is not None and stored.sha256 != local.sha256):
        return f"{target.url}: {name} {what} with other content: {stored} != local {local}"
    actual = target.digest(name)
    if actual != local:
        return f"{target.url}: {name} {what} but reads back as {actual} != local {local}"
    if not created:
        log.info("%s: %s already present with the same checksum: counted as shipped", target.url, name)
    return None


def _read_prefix(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{path}: durable prefix of {size} bytes, but only {len(data)} could be read")
    return data


def _now() -> datetime:
    return datetime.now(UTC)


class BackupShipper:
    def __init__(
        self,
        targets: Sequence[Target],
        wal_dir: Path,
        state_path: Path,
        *,
        sealed_segments: Callable[[Path], Iterable[SegmentLike]] | None = None,
        scan_interval_s: float = 60.0,
        retry_min_s: float = 1.0,
        retry_max_s: float = 300.0,
        active_prefix_interval_s: float = 0.0,
        active_durable_prefix: Callable[[], ActivePrefix | None] | None = None,
        watermark: WatermarkLike | None = None,
        first_record_time: Callable[[SegmentLike], float | None] | None = None,
    ) -> None:
        """`sealed_segments(wal_dir)` lists the log's segments (those with `sealed` false are skipped);
        by default `wal.segment.list_segments`. `active_durable_prefix()` must be cheap and non-blocking
        (it runs on the event loop). `first_record_time(segment)` gives the time of a segment's first
        record for the backlog's age; by default the file's mtime is used, a lower bound on the age."""
        if sealed_segments is None:
            from wal.segment import list_segments

            # list_segments' SegmentInfo has last_lsn None only for an empty (never sealed) segment.
            sealed_segments = cast(Callable[[Path], Iterable[SegmentLike]], list_segments)
        urls = [t.url for t in targets]
        if len(set(urls)) != len(urls):
            raise ValueError(f"backup targets listed twice: {urls}")
        self._lanes = [_Lane(t) for t in targets]
        self._wal_dir = wal_dir
        self._state_path = state_path
        self._lister = sealed_segments
        self._scan_interval = scan_interval_s
        self._retry_min = retry_min_s
        self._retry_max = max(retry_max_s, retry_min_s)
        self._prefix_interval = active_prefix_interval_s if active_durable_prefix is not None else 0.0
        self._active_prefix = active_durable_prefix
        self._watermark = watermark
        self._first_record_time = first_record_time
        self._digests: dict[Path, tuple[int, int, ObjectInfo]] = {}
        self._state_lock: anyio.Lock | None = None

    @classmethod
    def from_config(cls, config: Config, **kwargs: object) -> BackupShipper:
        """A shipper for `config.backup_targets`; keyword arguments as for the constructor."""
        backup = config.backup
        return cls(
            [open_target(url, backup) for url in config.backup_targets],
            config.wal_dir,
            config.backup_state_path,
            scan_interval_s=backup.interval_s,
            retry_min_s=backup.retry_min_s,
            retry_max_s=backup.retry_max_s,
            active_prefix_interval_s=backup.active_prefix_interval_s,
            **kwargs,  # type: ignore[arg-type]
        )

    # ---- the actor -----------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._state_lock = anyio.Lock()
        state = await anyio.to_thread.run_sync(load_state, self._state_path)
        for lane in self._lanes:
            saved = state.targets.get(lane.target.url, TargetState())
            lane.shipped = {e.name: e for e in saved.segments}
            lane.active = saved.active
            lane.wake = anyio.Event()
        async with anyio.create_task_group() as tg:
            for lane in self._lanes:
                tg.start_soon(self._lane_loop, lane, name=f"backup lane {lane.target.url}")
            if self._watermark is not None:
                tg.start_soon(self._watch, self._watermark)
            task_status.started()
            if not self._lanes:
                await anyio.sleep_forever()  # backup is off: stay up, as every actor does

    async def notify(self) -> None:
        """Something may have been sealed: look now (lanes in a retry backoff keep their schedule)."""
        self.nudge()

    def nudge(self) -> None:
        """`notify` for synchronous callers on the event loop thread."""
        for lane in self._lanes:
            if lane.wake is not None:
                lane.wake.set()

    def status(self) -> dict[str, TargetStatus]:
        now = _now().timestamp()
        return {
            lane.target.url: TargetStatus(
                url=lane.target.url,
                shipped_lsn=lane.shipped_lsn,
                backlog_segments=lane.backlog_segments,
                backlog_bytes=lane.backlog_bytes,
                oldest_unshipped_age_s=(
                    None if lane.oldest_unshipped_at is None else max(0.0, now - lane.oldest_unshipped_at)
                ),
                last_success_at=lane.last_success_at,
                last_error=lane.last_error,
                last_error_at=lane.last_error_at,
                consecutive_failures=lane.consecutive_failures,
                active_shipped_lsn=None if lane.active is None else lane.active.last_lsn,
                alarms=tuple(lane.conflicts.values()),
            )
            for lane in self._lanes
        }

    async def _watch(self, watermark: WatermarkLike) -> None:
        seen = watermark.value
        while True:
            await watermark.wait_for(seen + 1)
            seen = watermark.value
            self.nudge()

    async def _lane_loop(self, lane: _Lane) -> None:
        while True:
            lane.wake = anyio.Event()  # a nudge during the pass below sets this one: no wake-up is lost
            try:
                await self._pass(lane)
            except (TargetError, OSError) as exc:
                # An outage or a local read error: both are retried, neither stops the service.
                lane.consecutive_failures += 1
                lane.last_error, lane.last_error_at = str(exc), _now()
                delay = self._backoff(lane.consecutive_failures)
                log.warning(
                    "backup to %s failed (%d in a row), retrying in %.1fs: %s",
                    lane.target.url,
                    lane.consecutive_failures,
                    delay,
                    exc,
                )
                await anyio.sleep(delay)  # nudges do not cut a backoff short
                continue
            wait = self._scan_interval
            if self._prefix_interval > 0:
                wait = min(wait, max(0.0, lane.next_partial_at - anyio.current_time()))
            with anyio.move_on_after(wait):
                await lane.wake.wait()

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._retry_max, self._retry_min * 2 ** min(failures - 1, 30))
        return random.uniform(ceiling / 2, ceiling)  # jitter: lanes and processes do not retry in step

    # ---- one pass ------------------------------------------------------------------------------------

    async def _pass(self, lane: _Lane) -> None:
        segments = await anyio.to_thread.run_sync(self._list_sealed)
        self._measure(lane, segments)  # first, so an unreachable target still shows its backlog
        if not lane.reconciled:
            await self._reconcile(lane)
            self._measure(lane, segments)
        if lane.manifest_dirty:
            await self._publish(lane)
        for seg in segments:
            if seg.name in lane.shipped or seg.name in lane.conflicts:
                continue
            await self._ship_segment(lane, seg)
            self._measure(lane, segments)
        if self._prefix_interval > 0 and anyio.current_time() >= lane.next_partial_at:
            await self._ship_partial(lane)
            lane.next_partial_at = anyio.current_time() + self._prefix_interval
        lane.consecutive_failures = 0
        lane.last_success_at = _now()

    def _list_sealed(self) -> list[_Seg]:
        """The sealed segments in LSN order, with the time their oldest record was written. In a thread."""
        found = []
        for s in self._lister(self._wal_dir):
            if not getattr(s, "sealed", True):
                continue
            when = self._first_record_time(s) if self._first_record_time is not None else None
            if when is None:
                when = Path(s.path).stat().st_mtime
            found.append(_Seg(Path(s.path), s.first_lsn, s.last_lsn, s.size, when))
        return sorted(found, key=lambda s: s.first_lsn)

    async def _reconcile(self, lane: _Lane) -> None:
        """Once per start: trust the target over the state file, and read its manifest to merge into."""
        target = lane.target
        present = set(await anyio.to_thread.run_sync(target.list, SEGMENTS_PREFIX))
        for name in [n for n in lane.shipped if n not in present]:
            log.warning(
                "%s: %s is in the state file but not at the target: shipping it again", target.url, name
            )
            del lane.shipped[name]
        try:
            remote: Manifest | None = await anyio.to_thread.run_sync(target.read_manifest)
            lane.manifest = remote or Manifest()
        except ValueError as exc:
            log.error("%s; it will be rewritten from the shipped segments", exc)
            lane.manifest, lane.manifest_dirty = Manifest(), True
        lane.partials = set(await anyio.to_thread.run_sync(target.list, ACTIVE_PREFIX))
        if lane.active is not None and lane.active.name not in lane.partials:
            lane.active = None
        await self._retire_partials(lane, keep=None if lane.active is None else lane.active.name)
        lane.reconciled = True

    def _measure(self, lane: _Lane, segments: list[_Seg]) -> None:
        pending = [s for s in segments if s.name not in lane.shipped]
        lane.backlog_segments = len(pending)
        lane.backlog_bytes = sum(s.size for s in pending)
        lane.oldest_unshipped_at = min((s.recorded_at for s in pending), default=None)
        shipped_lsn = 0
        for s in segments:
            if s.name not in lane.shipped or (shipped_lsn and s.first_lsn != shipped_lsn + 1):
                break
            shipped_lsn = s.last_lsn
        lane.shipped_lsn = shipped_lsn

    async def _local_digest(self, path: Path) -> ObjectInfo:
        """A sealed segment's size and SHA-256, computed once for all targets (keyed by size and mtime,
        so a file that did change is hashed again rather than trusted)."""
        st = await anyio.to_thread.run_sync(path.stat)
        cached = self._digests.get(path)
        if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
            return cached[2]
        info = await anyio.to_thread.run_sync(digest_file, path)
        self._digests[path] = (st.st_size, st.st_mtime_ns, info)
        return info

    async def _ship_segment(self, lane: _Lane, seg: _Seg) -> None:
        local = await self._local_digest(seg.path)
        alarm = await anyio.to_thread.run_sync(_upload_verified, lane.target, seg.name, seg.path, local)
        if alarm is not None:
            self._alarm(lane, seg.name, alarm)
            return
        assert local.sha256 is not None
        lane.shipped[seg.name] = ManifestEntry(
            seg.name, seg.first_lsn, seg.last_lsn, local.size, local.sha256, _now()
        )
        log.info("backed up %s to %s (%d bytes)", seg.name, lane.target.url, local.size)
        if lane.active is not None and lane.active.first_lsn == seg.first_lsn:
            lane.active = None  # the sealed segment supersedes its prefix
        lane.manifest_dirty = True
        await self._publish(lane)
        await self._retire_partials(lane, keep=None if lane.active is None else lane.active.name)

    async def _ship_partial(self, lane: _Lane) -> None:
        assert self._active_prefix is not None
        prefix = self._active_prefix()
        if prefix is None:
            return
        path, first, last, size = prefix
        name = partial_name(first, last)
        if size <= 0 or last < first or name in lane.conflicts:
            return
        if (lane.active is not None and lane.active.name == name) or any(
            e.first_lsn == first for e in lane.shipped.values()
        ):
            return  # nothing new since the last prefix, or the segment is already shipped whole
        data = await anyio.to_thread.run_sync(_read_prefix, path, size)
        local = ObjectInfo(size, hashlib.sha256(data).hexdigest())
        alarm = await anyio.to_thread.run_sync(_upload_verified, lane.target, name, data, local)
        if alarm is not None:
            self._alarm(lane, name, alarm)
            return
        assert local.sha256 is not None
        lane.partials.add(name)
        lane.active = ManifestEntry(name, first, last, size, local.sha256, _now())
        lane.manifest_dirty = True
        await self._publish(lane)
        await self._retire_partials(lane, keep=name)

    async def _retire_partials(self, lane: _Lane, keep: str | None) -> None:
        """Delete partials superseded by a longer prefix of the same segment or by the sealed segment;
        only ever after their successor is verified and in the manifest."""
        shipped_firsts = {e.first_lsn for e in lane.shipped.values()}
        active_first = None if lane.active is None else lane.active.first_lsn
        for name in sorted(lane.partials):
            lsns = parse_range(name)
            if name == keep or lsns is None:
                continue
            if lsns[0] in shipped_firsts or lsns[0] == active_first:
                await anyio.to_thread.run_sync(lane.target.delete, name)
                lane.partials.discard(name)

    def _alarm(self, lane: _Lane, name: str, text: str) -> None:
        if name not in lane.conflicts:
            log.critical("BACKUP ALARM: %s. Not overwritten; a person must look at it.", text)
        lane.conflicts[name] = text

    async def _publish(self, lane: _Lane) -> None:
        """Rewrite the target's manifest from what is verified there, then save the local state."""
        manifest = lane.manifest.merged(lane.shipped.values(), lane.active, _now())
        await anyio.to_thread.run_sync(lane.target.write_manifest, manifest)
        lane.manifest, lane.manifest_dirty = manifest, False
        assert self._state_lock is not None
        async with self._state_lock:  # one writer at a time, so an older snapshot never lands last
            state = BackupState(
                targets={
                    ln.target.url: TargetState(tuple(ln.shipped.values()), ln.active) for ln in self._lanes
                }
            )
            await anyio.to_thread.run_sync(save_state, self._state_path, state)

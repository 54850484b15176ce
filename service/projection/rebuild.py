"""Rebuilding the projection from the whole log into a fresh file: the fast path of `recovery rebuild`.

The result is the database `apply_batch` would have built from the same records (the tests compare the
`dump_tables` of both), only built faster, because nothing in it needs to survive a crash until it is
complete:

- the file is a temporary one beside the target, written with journal_mode=OFF and synchronous=OFF and an
  exclusive lock; a crash leaves only a temporary file, removed by the next rebuild;
- the secondary indexes of joins and leaves are dropped while loading and built once at the end (a sort
  instead of a million random B-tree inserts); the first erasure in the log brings them back early,
  because redacting a user's rows needs them;
- the members table is not upserted per record but derived from joins and leaves at the end
  (`derive_members`);
- transactions hold `batch_size` records instead of one applier batch.

When complete, the file is switched to WAL mode, closed, fsynced and renamed over the target, and the
directory is fsynced. The tables' pages, most of the file, are flushed earlier, by a thread that fsyncs
the file while the indexes are built (CPU work): the last fsync then writes little more than the
indexes. The caller must have closed every connection to the target first (the applier and
the readers are stopped during a rebuild): a stale `-wal` file of the old database is deleted before the
rename, since SQLite would otherwise replay it into the new file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import apsw

from service.projection.apply import (
    JoinCounts,
    add_join_counts,
    apply_entries,
    continue_from,
    derive_members,
    set_applied_lsn,
)
from service.projection.frames import load_frames, load_in_transactions, no_cyclic_gc
from service.projection.schema import migrate
from service.records import Record

_SIDE_FILES = ("-wal", "-shm", "-journal")


def _remove_with_side_files(path: Path) -> None:
    for name in (path.name, *(path.name + suffix for suffix in _SIDE_FILES)):
        (path.parent / name).unlink(missing_ok=True)


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def building_path(target: Path) -> Path:
    """The temporary file a rebuild of `target` is built in (files beside it share this prefix)."""
    return target.with_name(target.name + ".rebuilding")


class _EarlyFlush:
    """An fsync of a file in a thread, started while the caller goes on writing to it: what is written by
    then reaches the disk meanwhile. Only ever in addition to the final fsync, never instead of it."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, path: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(path,), name="rebuild early fsync")
            self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            _fsync_path(path)
        except BaseException as exc:  # the caller's to raise: after a failed fsync a later one may
            self._error = exc  # succeed although pages were lost (WAL rule 4)

    def join(self) -> None:
        """Wait for the flush; raises its error, if any."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


class DeferredIndexes:
    """The secondary indexes of the tables a rebuild loads, dropped now and created again on demand.

    Restoring them first starts flushing the file (`flush`), which then holds the tables' rows."""

    def __init__(self, conn: apsw.Connection, flush: Callable[[], None] = lambda: None) -> None:
        self._conn = conn
        self._flush = flush
        # sql IS NULL marks the automatic indexes of primary keys, which stay.
        found = conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL "
            "AND tbl_name IN ('joins', 'leaves') ORDER BY name"
        ).fetchall()
        for name, _sql in found:
            conn.execute(f'DROP INDEX "{name}"')
        self._definitions: list[str] = [str(sql) for _name, sql in found]

    def restore(self) -> None:
        if self._definitions:
            self._flush()
        for sql in self._definitions:
            self._conn.execute(sql)
        self._definitions = []


def rebuild_database(
    path: str | os.PathLike[str], entries: Iterable[tuple[int, Record]], *, batch_size: int = 50_000
) -> int:
    """Build the projection of `entries` (the whole log, from LSN 1, without gaps) and put it at `path`.

    Replaces any database at `path` only once the new one is complete. Returns the applied LSN.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")

    def load(conn: apsw.Connection, indexes: DeferredIndexes) -> int:
        applied = 0
        iterator = iter(entries)
        while batch := list(itertools.islice(iterator, batch_size)):
            with conn:
                todo = continue_from(batch, applied)
                if todo:
                    apply_entries(conn, todo, maintain_members=False, before_erasure=indexes.restore)
                    applied = todo[-1][0]
                    set_applied_lsn(conn, applied)
        return applied

    return build_database(Path(path), load)


def rebuild_from_frames(
    path: str | os.PathLike[str], frames: Iterable[Sequence[Any]], *, batch_size: int = 50_000
) -> int:
    """`rebuild_database` from the log's frames as `(lsn, record_type, payload, ...)` (what
    `wal.iter_raw_frames` yields), decoding them here: a join's row comes straight from its payload's text
    (`join_rows`), the other records are decoded and applied as usual, each after the joins before it."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")

    def load(conn: apsw.Connection, indexes: DeferredIndexes) -> int:
        counts: JoinCounts = Counter()
        applied = 0

        def load_chunk(chunk: list[Sequence[Any]]) -> None:
            nonlocal applied
            applied = load_frames(conn, chunk, applied, counts, before_erasure=indexes.restore)

        with no_cyclic_gc():
            load_in_transactions(
                conn, frames, batch_size, load_chunk, before_commit=lambda: set_applied_lsn(conn, applied)
            )
        with conn:
            add_join_counts(conn, counts)
        return applied

    return build_database(Path(path), load)


def build_database(target: Path, load: Callable[[apsw.Connection, DeferredIndexes], int]) -> int:
    """Run `load` on a fresh file beside `target` set up for a bulk load, finish it (indexes, members, WAL
    mode) and rename it over `target`. Returns what `load` returns, the applied LSN."""
    building = building_path(target)
    _remove_with_side_files(building)
    conn = apsw.Connection(str(building))
    early_flush = _EarlyFlush()
    try:
        conn.pragma("journal_mode", "off")
        conn.pragma("synchronous", "off")
        conn.pragma("locking_mode", "exclusive")
        # A small page cache on purpose: CREATE INDEX sorts in chunks of the cache size, and small chunks
        # merged by two sorter threads beat one big in-memory sort (measured: 1.8 s against 3.1 s for the
        # four join indexes at a million rows with a 32 MB cache). Reads go through mmap instead.
        conn.pragma("cache_size", -2_000)
        conn.pragma("threads", 2)
        conn.pragma("mmap_size", 1 << 30)
        migrate(conn)
        with conn:
            indexes = DeferredIndexes(conn, flush=lambda: early_flush.start(building))
        applied = load(conn, indexes)
        indexes.restore()
        with conn:
            derive_members(conn)
        conn.pragma("locking_mode", "normal")
        conn.pragma("journal_mode", "wal")  # persisted in the header: the applier opens it in WAL mode
        early_flush.join()
        # Closing and syncing take a while on a big file: an interrupt there must still remove it (a
        # Ctrl-C caught here left the .rebuilding file behind once, in CI).
        conn.close()
        _fsync_path(building)
    except BaseException:
        conn.close()  # a second close is harmless
        with contextlib.suppress(BaseException):  # the first error is the one to report
            early_flush.join()
        _remove_with_side_files(building)
        raise
    try:
        for suffix in _SIDE_FILES:
            Path(str(target) + suffix).unlink(missing_ok=True)
        os.replace(building, target)
    except BaseException:  # an interrupt between the unlinks and the rename: no finished file left over
        building.unlink(missing_ok=True)
        raise
    _fsync_path(target.parent, directory=True)
    return applied

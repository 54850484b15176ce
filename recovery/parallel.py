"""Rebuilding a big log's projection with several processes: decoding a million joins is Python work, and
one process (one GIL) cannot do it fast enough.

The log's LSN range is cut into N consecutive parts (N = the CPUs this process may use, at most
MAX_PARTS). The parent loads the first part straight into the database being built while N - 1 worker
processes each load one of the others into a file of their own; then the parent merges them
(`service.projection.parts`, which says why the result equals the live applier's). The files are built
beside the target (`<db>.rebuilding-part<k>`) and removed whatever happens.

What the sequential rebuild guarantees holds here too:

- errors: each part stops at its first error, and the error of the earliest failing part is raised, so
  it is the error the sequential rebuild would have raised first (same type, same message: exceptions
  cross the process boundary pickled). An exception that does not survive pickling is not guessed at:
  `ErrorNotTransferred` asks the caller to run the sequential rebuild, which raises the real one;
- an interruption (Ctrl-C, an error) stops and reaps the workers and removes their files before it
  propagates, and the old database is untouched (`build_database` renames only a complete file); a
  worker whose parent died stops at its next batch;
- progress: the workers report each transaction's frames to the parent, which tells `progress`.

Workers are started with 'spawn': the parent may hold threads (anyio's worker threads), and forking a
process with threads can deadlock the child.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import apsw

from recovery.progress import Progress
from service.projection.parts import PartResult, build_part, load_part, merge_parts
from service.projection.rebuild import DeferredIndexes, build_database, building_path
from wal import iter_raw_frames

#: Logs shorter than this are rebuilt in one process: starting workers costs ~0.3 s, which only pays
#: off over a few hundred thousand records.
PARALLEL_FROM = 200_000
#: How many more records the parent's part holds than a worker's: a worker starts 0.25-0.45 s later (a
#: new interpreter, its imports and the parent's main module's; measured), in which the parent loads
#: about this many at ~7 µs per record. With 30,000 the parent still waited 0.2-0.5 s for the worker.
HEAD_START = 45_000
#: More parts than this gain little: the parent's merge and index builds are sequential.
MAX_PARTS = 4


class ErrorNotTransferred(Exception):
    """A worker failed with an exception that cannot be re-raised in the parent as it was."""


def part_count() -> int:
    """How many parts a big log is cut into: the CPUs this process may run on, at most MAX_PARTS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, MAX_PARTS)


def split(last_lsn: int, parts: int, head_start: int = 0) -> list[tuple[int, int]]:
    """LSN ranges (first, last) cutting 1..last_lsn into `parts` consecutive parts, near-equal but for
    the first, `head_start` records longer (the parent's: it starts while the workers are spawned)."""
    head_start = min(head_start, last_lsn // parts)
    rest = last_lsn - head_start
    bounds = [0, *(head_start + rest * k // parts for k in range(1, parts + 1))]
    return [(bounds[k] + 1, bounds[k + 1]) for k in range(parts) if bounds[k + 1] > bounds[k]]


def part_path(target: Path, k: int) -> Path:
    return building_path(target).with_name(f"{building_path(target).name}-part{k}")


def remove_stray_parts(target: Path) -> None:
    """Part files an interrupted rebuild (a killed parent) may have left."""
    for stray in target.parent.glob(f"{building_path(target).name}-part*"):
        stray.unlink(missing_ok=True)


def rebuild_in_parts(
    wal_dir: Path, db_path: Path, last_lsn: int, *, to_lsn: int | None, parts: int, progress: Progress
) -> int:
    """Build the projection of the log (1..`last_lsn`, its last part read like the sequential rebuild
    reads the log's end, up to `to_lsn`) with `parts` processes, and rename it over `db_path`."""
    ranges = split(last_lsn, parts, HEAD_START)
    remove_stray_parts(db_path)

    def load(conn: apsw.Connection, indexes: DeferredIndexes) -> int:
        workers = _Workers()
        try:
            for k, (first, last) in enumerate(ranges[1:], start=1):
                is_last = k == len(ranges) - 1
                workers.start(wal_dir, first, to_lsn if is_last else last, part_path(db_path, k))
            first_lsn, first_last = ranges[0]
            to = to_lsn if len(ranges) == 1 else first_last

            def report(frames: int) -> None:
                progress.advance(frames)
                progress.advance(workers.poll())

            mine = load_part(conn, iter_raw_frames(wal_dir, first_lsn, to_lsn=to), first_lsn, report=report)
            results = workers.results(progress)
            return merge_parts(conn, mine, results, restore_indexes=indexes.restore)
        finally:
            workers.stop()

    return build_database(db_path, load)


class _Workers:
    """The worker processes of one rebuild, in part order, and what they sent."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._running: list[tuple[BaseProcess, multiprocessing.connection.Connection, Path]] = []
        self._outcomes: dict[int, tuple[str, Any]] = {}  # part index -> ("done" | "error", payload)

    def start(self, wal_dir: Path, first: int, to_lsn: int | None, path: Path) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_work,
            args=(os.fspath(wal_dir), first, to_lsn, os.fspath(path), sender, os.getpid()),
            name=f"rebuild part from LSN {first}",
            daemon=True,  # never outlives a parent that exits
        )
        process.start()
        sender.close()  # the child's copy is the only one: its exit shows as end of file here
        self._running.append((process, receiver, path))

    def _receive(self, k: int) -> int:
        """Handle part `k`'s next message; returns the frames it reported as loaded."""
        process, receiver, _path = self._running[k]
        try:
            kind, payload = receiver.recv()
        except EOFError:
            process.join()
            self._outcomes[k] = ("lost", f"exit code {process.exitcode}")
            return 0
        except Exception:  # a message that cannot be unpickled: the error is not transferred
            self._outcomes[k] = ("error", None)
            return 0
        if kind == "progress":
            return int(payload)
        self._outcomes[k] = (kind, payload)
        return 0

    def poll(self) -> int:
        """Handle what the workers have sent so far, without waiting; returns the frames reported."""
        frames = 0
        for k, (_process, receiver, _path) in enumerate(self._running):
            while k not in self._outcomes and receiver.poll():
                frames += self._receive(k)
        return frames

    def results(self, progress: Progress) -> list[tuple[Path, PartResult]]:
        """Every part's result in part order; raises the error of the earliest failing part."""
        results = []
        for k, (process, _receiver, path) in enumerate(self._running):
            while k not in self._outcomes:
                multiprocessing.connection.wait([self._running[k][1]])
                progress.advance(self._receive(k))
                progress.advance(self.poll())
            kind, payload = self._outcomes[k]
            if kind == "error":
                if payload is None:
                    raise ErrorNotTransferred(f"{process.name} failed; its error could not be passed on")
                raise payload
            if kind == "lost":
                raise RuntimeError(f"{process.name} ended without a result ({payload})")
            results.append((path, payload))
        return results

    def stop(self) -> None:
        """End every worker still running, reap them all and remove their files."""
        for process, receiver, path in self._running:
            if process.is_alive():
                process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
            receiver.close()
            path.unlink(missing_ok=True)
        self._running.clear()


def _work(
    wal_dir: str,
    first: int,
    to_lsn: int | None,
    path: str,
    sender: multiprocessing.connection.Connection,
    parent_pid: int,
) -> None:
    """A worker process: load one part and send its result (or its error) to the parent."""

    def report(frames: int) -> None:
        if os.getppid() != parent_pid:
            raise SystemExit(1)  # the parent died: nobody will merge this part
        sender.send(("progress", frames))

    try:
        frames = iter_raw_frames(wal_dir, first, to_lsn=to_lsn)
        result = build_part(Path(path), frames, first, report=report)
    except KeyboardInterrupt:
        return  # Ctrl-C reached the whole process group: the parent cleans up and reports it
    except Exception as exc:  # any error is the parent's to raise
        sender.send(("error", exc if _survives_pickling(exc) else None))
    else:
        sender.send(("done", result))
    finally:
        sender.close()


def _survives_pickling(exc: BaseException) -> bool:
    """Whether `exc` comes out of pickling as the same type with the same message."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:  # any failure means: not transferable
        return False
    return type(copy) is type(exc) and str(copy) == str(exc)


def parallel_parts(last_lsn: int | None, parallel_from: int | None = None, parts: int | None = None) -> int:
    """How many parts a rebuild of a log of `last_lsn` records uses (1: the sequential rebuild): none
    below `parallel_from` (default PARALLEL_FROM) records, else `parts` (default `part_count()`)."""
    threshold = PARALLEL_FROM if parallel_from is None else parallel_from
    if last_lsn is None or last_lsn < max(threshold, 2):
        return 1
    return min(parts or part_count(), last_lsn)

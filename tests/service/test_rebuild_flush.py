"""The rebuild flushes its file early, while the indexes are built, and still fsyncs it last."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service import convert
from service.projection import dump_tables, open_database, rebuild_from_frames
from service.projection import rebuild as rebuild_module
from service.records import AttributionKind, JoinRecorded

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def frames(n: int) -> list[tuple[int, int, bytes]]:
    out = []
    for lsn in range(1, n + 1):
        record = JoinRecorded(
            timestamp=T0 + timedelta(seconds=lsn),
            guild_id="811111111111111111",
            guild_name="G",
            user_id=str(10**18 + lsn),
            username="u",
            display_name="U",
            kind=AttributionKind.UNKNOWN,
            invite_code=None,
            staff_id=None,
            staff_username=None,
            uses_before=None,
            uses_after=None,
        )
        code, payload = convert.encode(record)
        out.append((lsn, code, payload))
    return out


def test_the_file_is_flushed_while_the_indexes_are_built_and_again_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    events: list[tuple[str, str]] = []
    fsync = rebuild_module._fsync_path
    create_indexes = rebuild_module.DeferredIndexes.restore

    def recording_fsync(path: Path, *, directory: bool = False) -> None:
        fsync(path, directory=directory)
        events.append((threading.current_thread().name, "directory" if directory else path.name))

    def recording_restore(self: rebuild_module.DeferredIndexes) -> None:
        events.append(("indexes", "start"))
        create_indexes(self)

    monkeypatch.setattr(rebuild_module, "_fsync_path", recording_fsync)
    monkeypatch.setattr(rebuild_module.DeferredIndexes, "restore", recording_restore)
    target = tmp_path / "p.sqlite3"
    assert rebuild_from_frames(target, frames(50)) == 50
    building = rebuild_module.building_path(target).name
    main = threading.main_thread().name
    # the early flush runs in its thread once the indexes are being built; the last fsync comes after it
    assert events == [
        ("indexes", "start"),
        ("rebuild early fsync", building),
        (main, building),
        (main, "directory"),
    ]
    conn = open_database(target)
    assert len([row for table, row in dump_tables(conn) if table == "joins"]) == 50
    conn.close()


def test_an_error_of_the_early_flush_fails_the_rebuild_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fsync = rebuild_module._fsync_path
    calls = []

    def failing_first_fsync(path: Path, *, directory: bool = False) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        fsync(path, directory=directory)

    monkeypatch.setattr(rebuild_module, "_fsync_path", failing_first_fsync)
    target = tmp_path / "p.sqlite3"
    with pytest.raises(OSError, match="Input/output"):
        rebuild_from_frames(target, frames(20))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["last fsync", "rename"])
def test_an_interrupt_while_the_finished_file_is_put_in_place_leaves_the_old_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
):
    target = tmp_path / "p.sqlite3"
    assert rebuild_from_frames(target, frames(20)) == 20
    building = rebuild_module.building_path(target)
    fsync = rebuild_module._fsync_path
    replace = rebuild_module.os.replace

    def interrupted_fsync(path: Path, *, directory: bool = False) -> None:
        on_main_thread = threading.current_thread() is threading.main_thread()  # not the early flush
        if where == "last fsync" and path == building and on_main_thread:
            raise KeyboardInterrupt
        fsync(path, directory=directory)

    def interrupted_replace(src: object, dst: object) -> None:
        if where == "rename":
            assert Path(str(src)) == building and building.exists()  # the file was finished
            raise KeyboardInterrupt
        replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(rebuild_module, "_fsync_path", interrupted_fsync)
    monkeypatch.setattr(rebuild_module.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        rebuild_from_frames(target, frames(50))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    conn = open_database(target)
    assert len([row for table, row in dump_tables(conn) if table == "joins"]) == 20
    conn.close()

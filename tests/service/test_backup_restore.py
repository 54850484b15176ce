"""What restore needs: a download that checks every segment, and a loud refusal of any LSN gap."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.backup.directory import DirectoryTarget
from service.backup.restore import ChecksumError, GapError, check_contiguous, download_segments
from service.backup.targets import Manifest, ManifestEntry, partial_name, segment_name

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def backup(tmp_path: Path, ranges: list[tuple[int, int]], *, manifest: bool = True) -> DirectoryTarget:
    target = DirectoryTarget(tmp_path / "backup")
    entries = []
    for first, last in ranges:
        data = f"segment {first}-{last}".encode() * 100
        target.put_if_absent(segment_name(first, last), data, sha(data))
        entries.append(ManifestEntry(segment_name(first, last), first, last, len(data), sha(data), NOW))
    if manifest:
        target.write_manifest(Manifest().merged(entries, None, NOW))
    return target


def test_check_contiguous() -> None:
    check_contiguous([(1, 10), (11, 20), (21, 21)])
    check_contiguous([(11, 20), (1, 10)], end=20)  # order does not matter
    check_contiguous([], start=None)
    check_contiguous([(5, 9)], start=None)
    with pytest.raises(GapError, match="missing LSNs 11-14"):
        check_contiguous([(1, 10), (15, 20)])
    with pytest.raises(GapError, match="missing LSNs 1-4"):
        check_contiguous([(5, 10)])
    with pytest.raises(GapError, match="missing LSNs 21-30"):
        check_contiguous([(1, 10), (11, 20)], end=30)
    with pytest.raises(GapError, match="missing LSNs 1-5"):
        check_contiguous([], end=5)
    with pytest.raises(GapError, match="overlap"):
        check_contiguous([(1, 10), (5, 20)])


def test_download_all_and_up_to_an_lsn(tmp_path: Path) -> None:
    target = backup(tmp_path, [(1, 10), (11, 20), (21, 30)])
    got = download_segments(target, tmp_path / "wal")
    assert [p.name for p in got] == [f"{n:020d}.wal" for n in (1, 11, 21)]
    assert got[1].read_bytes() == target.get(segment_name(11, 20))
    again = download_segments(target, tmp_path / "wal")  # an interrupted restore can be run again
    assert again == got
    part = download_segments(target, tmp_path / "wal2", to_lsn=15)
    assert [p.name for p in part] == [f"{n:020d}.wal" for n in (1, 11)]
    assert sorted(p.name for p in (tmp_path / "wal2").iterdir()) == [p.name for p in part]  # no temp files


def test_a_gap_fails_before_anything_is_downloaded(tmp_path: Path) -> None:
    target = backup(tmp_path, [(1, 10), (21, 30)])
    with pytest.raises(GapError, match="missing LSNs 11-20"):
        download_segments(target, tmp_path / "wal")
    assert not (tmp_path / "wal").exists()
    with pytest.raises(GapError, match="missing LSNs 31-40"):
        download_segments(backup(tmp_path / "b", [(1, 30)]), tmp_path / "w", to_lsn=40)


def test_segments_missing_from_the_manifest_are_found_by_name(tmp_path: Path) -> None:
    target = backup(tmp_path, [(1, 10), (11, 20)], manifest=False)
    assert [p.name for p in download_segments(target, tmp_path / "wal")] == [
        f"{1:020d}.wal",
        f"{11:020d}.wal",
    ]


def test_a_damaged_segment_is_refused(tmp_path: Path) -> None:
    target = backup(tmp_path, [(1, 10), (11, 20)])
    (tmp_path / "backup" / segment_name(11, 20)).write_bytes(b"rotted")
    with pytest.raises(ChecksumError, match=segment_name(11, 20)):
        download_segments(target, tmp_path / "wal")
    assert not (tmp_path / "wal" / f"{11:020d}.wal").exists()


def test_an_existing_local_file_with_other_bytes_is_not_replaced(tmp_path: Path) -> None:
    target = backup(tmp_path, [(1, 10)])
    (tmp_path / "wal").mkdir()
    (tmp_path / "wal" / f"{1:020d}.wal").write_bytes(b"local")
    with pytest.raises(ChecksumError, match="not replacing"):
        download_segments(target, tmp_path / "wal")
    assert (tmp_path / "wal" / f"{1:020d}.wal").read_bytes() == b"local"


def test_the_active_prefix_extends_the_restore(tmp_path: Path) -> None:
    target = backup(tmp_path, [(1, 10)])
    data = b"prefix" * 10
    target.put_if_absent(partial_name(11, 14), data, sha(data))
    manifest = target.read_manifest()
    assert manifest is not None
    active = ManifestEntry(partial_name(11, 14), 11, 14, len(data), sha(data), NOW)
    target.write_manifest(manifest.merged([], active, NOW))
    got = download_segments(target, tmp_path / "wal", to_lsn=13)
    assert [p.name for p in got] == [f"{1:020d}.wal", f"{11:020d}.wal"]
    assert got[1].read_bytes() == data
    assert len(download_segments(target, tmp_path / "w2", include_partial=False)) == 1
    with pytest.raises(GapError, match="missing LSNs 15-20"):
        download_segments(target, tmp_path / "w3", to_lsn=20)

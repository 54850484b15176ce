"""Both target kinds against real storage: a directory, and moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.backup.directory import DirectoryTarget
from service.backup.s3 import S3Target, is_loopback
from service.backup.targets import (
    Manifest,
    ManifestEntry,
    ObjectInfo,
    Target,
    TargetError,
    open_target,
    parse_range,
    partial_name,
    segment_name,
)
from service.config import load_config
from tests.service.test_backup_support import (
    SECRET_KEY,
    CountingMotoServer,
    new_bucket,
    s3_target,
    versions,
)


@pytest.fixture(scope="module")
def moto() -> Iterator[CountingMotoServer]:
    server = CountingMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["directory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "directory":
        return DirectoryTarget(tmp_path / "backups")
    moto: CountingMotoServer = request.getfixturevalue("moto")
    return s3_target(moto.endpoint, new_bucket(moto.endpoint))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_names_carry_the_lsn_range() -> None:
    assert segment_name(1, 250) == "segments/00000000000000000001-00000000000000000250.wal"
    assert partial_name(251, 260) == "active/00000000000000000251-00000000000000000260.partial"
    assert parse_range(segment_name(1, 250)) == (1, 250)
    assert parse_range(partial_name(251, 260)) == (251, 260)
    assert parse_range("manifest.json") is None


def test_put_if_absent_creates_once_and_never_overwrites(target: Target, tmp_path: Path) -> None:
    name = segment_name(1, 10)
    assert target.head(name) is None
    assert target.put_if_absent(name, b"first", sha(b"first")) is True
    assert target.put_if_absent(name, b"second", sha(b"second")) is False
    assert target.get(name) == b"first"
    assert target.head(name) == ObjectInfo(5, sha(b"first"))
    assert target.digest(name) == ObjectInfo(5, sha(b"first"))
    source = tmp_path / "segment.wal"
    source.write_bytes(b"x" * 3_000_000)  # from a file, in more than one chunk
    assert target.put_if_absent(segment_name(11, 20), source, sha(source.read_bytes())) is True
    assert target.digest(segment_name(11, 20)) == ObjectInfo(3_000_000, sha(source.read_bytes()))
    out = tmp_path / "out.wal"
    target.get_to_file(segment_name(11, 20), out)
    assert out.read_bytes() == source.read_bytes()


def test_list_delete_and_manifest(target: Target) -> None:
    for first, last in [(1, 5), (6, 9)]:
        target.put_if_absent(segment_name(first, last), b"s", sha(b"s"))
    target.put_if_absent(partial_name(10, 12), b"p", sha(b"p"))
    assert target.list("segments/") == [segment_name(1, 5), segment_name(6, 9)]
    assert target.list("active/") == [partial_name(10, 12)]
    target.delete(partial_name(10, 12))
    target.delete(partial_name(10, 12))  # absent is fine
    assert target.list("active/") == []
    assert target.read_manifest() is None
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    entry = ManifestEntry(segment_name(1, 5), 1, 5, 1, sha(b"s"), now)
    manifest = Manifest().merged([entry], None, now)
    target.write_manifest(manifest)
    assert target.read_manifest() == manifest
    newer = manifest.merged([ManifestEntry(segment_name(6, 9), 6, 9, 1, sha(b"s"), now)], None, now)
    target.write_manifest(newer)  # the manifest is the one object that is replaced
    assert target.read_manifest() == newer
    assert [e.first_lsn for e in newer.segments] == [1, 6]


def test_racing_writers_one_wins_and_nothing_is_overwritten(target: Target) -> None:
    """Two shippers create the same names at the same moment: each name is created once, and keeps the
    winner's bytes (directory: os.link; S3: If-None-Match on PUT)."""
    for i in range(8):
        name = segment_name(100 * i + 1, 100 * i + 100)
        barrier = threading.Barrier(2)
        results: dict[bytes, bool] = {}

        def put(
            data: bytes,
            name: str = name,
            barrier: threading.Barrier = barrier,
            results: dict[bytes, bool] = results,
        ) -> None:
            barrier.wait()
            results[data] = target.put_if_absent(name, data, sha(data))

        threads = [threading.Thread(target=put, args=(d,)) for d in (b"A" * 1000, b"B" * 1000)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [d for d, created in results.items() if created]
        assert len(winners) == 1, results
        assert target.get(name) == winners[0]
        assert target.head(name) == ObjectInfo(1000, sha(winners[0]))


def test_directory_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "b")
    target.put_if_absent(segment_name(1, 2), b"data", sha(b"data"))
    target.write_manifest(Manifest())
    files = sorted(
        p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files == ["manifest.json", segment_name(1, 2), segment_name(1, 2) + ".sha256"]
    # The sidecar is in sha256sum format, so `sha256sum -c` works in that folder.
    sidecar = (tmp_path / "b" / (segment_name(1, 2) + ".sha256")).read_text()
    assert sidecar == f"{sha(b'data')}  {segment_name(1, 2).rpartition('/')[2]}\n"


def test_directory_target_refuses_names_that_escape_it(tmp_path: Path) -> None:
    target = DirectoryTarget(tmp_path / "b")
    for bad in ("../x", "/etc/passwd", "a//b", ""):
        with pytest.raises(ValueError):
            target.put_if_absent(bad, b"", sha(b""))


def test_s3_conditional_put_keeps_one_version(moto: CountingMotoServer) -> None:
    bucket = new_bucket(moto.endpoint)
    target = s3_target(moto.endpoint, bucket)
    name = segment_name(1, 1)
    assert target.put_if_absent(name, b"one", sha(b"one"))
    assert not target.put_if_absent(name, b"two", sha(b"two"))
    assert versions(moto.endpoint, bucket, "ledger/segments/") == {f"ledger/{name}": 1}
    # Present already: asked about, not uploaded again.
    assert len(moto.puts(f"/{bucket}/ledger/{name}")) == 1


def test_s3_outage_is_a_target_error_without_secrets(moto: CountingMotoServer) -> None:
    server = CountingMotoServer()
    server.start()
    endpoint = server.endpoint
    target = s3_target(endpoint, new_bucket(endpoint))
    server.stop()
    with pytest.raises(TargetError) as info:
        target.put_if_absent(segment_name(1, 1), b"x", sha(b"x"))
    assert target.url in str(info.value)
    assert SECRET_KEY not in str(info.value) and SECRET_KEY not in repr(target)


def test_open_target_from_configuration(tmp_path: Path) -> None:
    config = load_config(
        None,
        {
            "INVITE_LEDGER_BACKUP_S3_ENDPOINT": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "a",
            "AWS_SECRET_ACCESS_KEY": "b",
        },
    )
    s3 = open_target("s3://bucket/some/prefix", config.backup)
    assert isinstance(s3, S3Target) and s3.bucket == "bucket" and s3.prefix == "some/prefix"
    directory = open_target(f"file://{tmp_path}/b", config.backup)
    assert isinstance(directory, DirectoryTarget) and directory.root == tmp_path / "b"
    with pytest.raises(ValueError):
        open_target("ftp://x/y", config.backup)
    assert is_loopback("http://127.0.0.1:9000") and is_loopback("http://localhost:1")
    assert not is_loopback("http://minio.internal:9000")

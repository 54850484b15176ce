"""Helpers for the backup tests: a moto S3 server on 127.0.0.1 that counts requests, a folder of real
segment files, and a bounded wait. (No tests here; the name keeps it among the backup test files.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from service.backup.s3 import S3Target
from service.config import Secret

ACCESS_KEY = "AKIDTESTKEY"
SECRET_KEY = "test-secret-key-must-not-leak"


class CountingMotoServer(ThreadedMotoServer):
    """moto's threaded S3 server, with every request (method, path) appended to `requests`. Moto keeps
    its buckets in process memory, so a new server on the same port serves the same objects: that is
    how the tests take the target away and bring it back."""

    def __init__(self, port: int = 0, requests: list[tuple[str, str]] | None = None) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.requests: list[tuple[str, str]] = [] if requests is None else requests

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            return app(environ, start_response)

        self._server = make_server(
            self._ip_address, self._port, counting, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def endpoint(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"

    def puts(self, fragment: str) -> list[str]:
        return [path for method, path in self.requests if method == "PUT" and fragment in path]


def boto(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


def new_bucket(endpoint: str, *, versioned: bool = True) -> str:
    """A fresh bucket (moto's state is shared by the whole process), versioned so a second PUT of a
    name would leave a second version behind."""
    name = f"backups-{uuid.uuid4().hex[:12]}"
    client = boto(endpoint)
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def s3_target(endpoint: str, bucket: str, prefix: str = "ledger", **kwargs: Any) -> S3Target:
    kwargs.setdefault("timeout_s", 3.0)
    kwargs.setdefault("max_retries", 0)
    return S3Target(
        bucket,
        prefix,
        endpoint=endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=Secret(SECRET_KEY),
        **kwargs,
    )


def versions(endpoint: str, bucket: str, prefix: str) -> dict[str, int]:
    listed = boto(endpoint).list_object_versions(Bucket=bucket, Prefix=prefix)
    counts: dict[str, int] = {}
    for version in listed.get("Versions", []):
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


@attrs.frozen
class SegmentInfo:
    path: Path
    first_lsn: int
    last_lsn: int
    size: int
    sealed: bool
    record_count: int = 0


class SegmentDir:
    """A WAL folder of real files with arbitrary bytes, named `{first_lsn:020d}.wal` as the log names
    them; it stands in for `wal.segment.list_segments`, which is being written in parallel."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.ranges: dict[int, tuple[int, bool]] = {}  # first_lsn -> (last_lsn, sealed)

    def add(self, first: int, last: int, size: int = 5000, *, sealed: bool = True) -> Path:
        path = self.path / f"{first:020d}.wal"
        path.write_bytes(bytes((first * 7 + i) % 251 for i in range(size)))
        self.ranges[first] = (last, sealed)
        return path

    def seal(self, first: int) -> None:
        self.ranges[first] = (self.ranges[first][0], True)

    def __call__(self, wal_dir: Path) -> list[SegmentInfo]:
        assert wal_dir == self.path
        return [
            SegmentInfo(p, first, last, p.stat().st_size, sealed)
            for first, (last, sealed) in sorted(self.ranges.items())
            for p in [self.path / f"{first:020d}.wal"]
        ]


async def until(condition: Callable[[], bool], limit_s: float = 15.0, what: str = "condition") -> None:
    """Wait, bounded, for a condition the system under test must reach by itself."""
    try:
        with anyio.fail_after(limit_s):
            while not condition():
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit_s}s waiting for {what}") from None

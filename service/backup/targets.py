"""What a backup target is, how objects in it are named, and the manifest that indexes them.

Layout at a target (WAL rule 8):

    segments/{first_lsn:020d}-{last_lsn:020d}.wal      sealed segments, write-once
    active/{first_lsn:020d}-{last_lsn:020d}.partial    a durable prefix of the active segment, write-once
    manifest.json                                      the index; the one object that is rewritten

Every segment and partial carries its SHA-256 beside it (S3 object metadata `sha256`, a `.sha256` sidecar
file in a directory), so the manifest can always be rebuilt from the write-once objects: their names hold
the LSN range, their metadata the checksum. The manifest is a convenience and a cross-check, never the only
record of what was shipped.

Target methods block (network, fsync): call them from a worker thread (`anyio.to_thread.run_sync`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import attrs

from service import convert

if TYPE_CHECKING:
    from service.config import BackupConfig

SEGMENTS_PREFIX = "segments/"
ACTIVE_PREFIX = "active/"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
CHUNK = 1024 * 1024

_RANGE = re.compile(r"(\d{20})-(\d{20})\.(wal|partial)$")


class TargetError(Exception):
    """The target could not be reached or refused a request: retry later. Its text holds no secrets."""


def segment_name(first_lsn: int, last_lsn: int) -> str:
    return f"{SEGMENTS_PREFIX}{first_lsn:020d}-{last_lsn:020d}.wal"


def partial_name(first_lsn: int, last_lsn: int) -> str:
    return f"{ACTIVE_PREFIX}{first_lsn:020d}-{last_lsn:020d}.partial"


def parse_range(name: str) -> tuple[int, int] | None:
    """The (first_lsn, last_lsn) a segment or partial name carries, or None for any other name."""
    match = _RANGE.search(name.rpartition("/")[2])
    return (int(match[1]), int(match[2])) if match else None


class ObjectInfo(NamedTuple):
    size: int
    sha256: str | None  # as stored beside the object; None if the object has none


def digest_file(path: Path, limit: int | None = None) -> ObjectInfo:
    """Size and SHA-256 of a file, or of its first `limit` bytes; reads in chunks to bound memory."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while limit is None or size < limit:
            chunk = f.read(CHUNK if limit is None else min(CHUNK, limit - size))
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
    return ObjectInfo(size, h.hexdigest())


def digest_chunks(chunks: Iterable[bytes]) -> ObjectInfo:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return ObjectInfo(size, h.hexdigest())


@attrs.frozen
class ManifestEntry:
    """One verified object at a target."""

    name: str
    first_lsn: int
    last_lsn: int
    size: int
    sha256: str
    shipped_at: datetime


@attrs.frozen
class Manifest:
    format: int = MANIFEST_FORMAT
    segments: tuple[ManifestEntry, ...] = ()
    active: ManifestEntry | None = None  # the newest shipped prefix of the active segment, if any
    updated_at: datetime | None = None

    def merged(
        self, segments: Iterable[ManifestEntry], active: ManifestEntry | None, now: datetime
    ) -> Manifest:
        """This manifest plus `segments` (by name; an entry already listed keeps its first record), sorted
        by LSN. Merging, not replacing, keeps entries another shipper or an earlier state file added."""
        by_name = {e.name: e for e in self.segments}
        for entry in segments:
            by_name.setdefault(entry.name, entry)
        ordered = tuple(sorted(by_name.values(), key=lambda e: (e.first_lsn, e.last_lsn)))
        if active is not None and any(e.first_lsn == active.first_lsn for e in ordered):
            active = None  # its segment is sealed and shipped: the partial is superseded
        return Manifest(MANIFEST_FORMAT, ordered, active, now)


def manifest_to_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(convert.unstructure(manifest), indent=1) + "\n").encode()


def manifest_from_bytes(data: bytes, where: str) -> Manifest:
    try:
        manifest: Manifest = convert.structure(json.loads(data), Manifest)
    except Exception as exc:  # a damaged index must not stop shipping; the caller decides
        raise ValueError(f"{where}: unreadable manifest: {exc}") from exc
    if manifest.format != MANIFEST_FORMAT:
        raise ValueError(f"{where}: manifest format {manifest.format}, this version reads {MANIFEST_FORMAT}")
    return manifest


class Target(Protocol):
    """A place that keeps write-once copies of log segments. Blocking; call from a worker thread."""

    @property
    def url(self) -> str:
        """Where it is, for logs and status (never holds credentials)."""
        ...

    def put_if_absent(self, name: str, source: bytes | Path, sha256: str) -> bool:
        """Create `name` from bytes or a file, with its checksum beside it, unless it exists; True if this
        call created it. Never overwrites. Raises TargetError when the target cannot be reached."""
        ...

    def head(self, name: str) -> ObjectInfo | None:
        """Size and stored checksum of `name`, or None if absent."""
        ...

    def digest(self, name: str) -> ObjectInfo:
        """Size and SHA-256 of `name`'s content as read back from the target (verifies an upload)."""
        ...

    def get(self, name: str) -> bytes: ...

    def get_to_file(self, name: str, dest: Path) -> None:
        """Stream `name` into `dest` (created or truncated; not fsynced: the caller decides)."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Names under a folder such as "segments/", sorted; checksum sidecars are not listed."""
        ...

    def delete(self, name: str) -> None:
        """Remove a superseded partial; never called for a sealed segment. Absent is not an error."""
        ...

    def read_manifest(self) -> Manifest | None:
        """The manifest, None if there is none; ValueError if it cannot be read."""
        ...

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest atomically (readers see the old or the new one, whole)."""
        ...


def open_target(url: str, config: BackupConfig | None = None) -> Target:
    """The target for a URL: `file:///path` (or a plain path) is a directory, `s3://bucket/prefix` a bucket
    reached with the S3 settings of `config`."""
    # Imported here so a directory-only setup never loads obstore.
    if url.startswith("s3://"):
        from service.backup.s3 import S3Target

        return S3Target.from_url(url, config)
    if url.startswith("file://") or "://" not in url:
        from service.backup.directory import DirectoryTarget

        return DirectoryTarget(Path(url.removeprefix("file://")))
    raise ValueError(f"backup target {url!r}: expected file:///path or s3://bucket/prefix")

"""Off-box backup of the log's sealed segments (WAL rule 8): targets, the shipper actor, restore helpers."""

from __future__ import annotations

from service.backup.restore import ChecksumError, GapError, check_contiguous, download_segments
from service.backup.shipper import BackupShipper, TargetStatus
from service.backup.targets import Manifest, ManifestEntry, ObjectInfo, Target, TargetError, open_target

__all__ = [
    "BackupShipper",
    "ChecksumError",
    "GapError",
    "Manifest",
    "ManifestEntry",
    "ObjectInfo",
    "Target",
    "TargetError",
    "TargetStatus",
    "check_contiguous",
    "download_segments",
    "open_target",
]

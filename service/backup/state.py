"""The shipper's local record of what each target holds (`data/backup-state.json`).

It is a cache, not the truth: on start the shipper lists each target and forgets entries the target no
longer has, and a segment found already present with the same checksum counts as shipped. So a lost or
damaged state file costs a re-check, never a lost or doubled upload. It is replaced atomically (temporary
file, fsync, rename, fsync of the folder), like every file this service rewrites.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import attrs

from service import convert
from service.backup.directory import write_atomically
from service.backup.targets import ManifestEntry

STATE_FORMAT = 1
log = logging.getLogger("invite_ledger.backup")


@attrs.frozen
class TargetState:
    segments: tuple[ManifestEntry, ...] = ()
    active: ManifestEntry | None = None


@attrs.frozen
class BackupState:
    format: int = STATE_FORMAT
    targets: dict[str, TargetState] = attrs.field(factory=dict)  # keyed by the target's URL


def load_state(path: Path) -> BackupState:
    """The saved state, or an empty one if there is none or it cannot be read (logged: it is a cache)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return BackupState()
    try:
        state: BackupState = convert.structure(json.loads(data), BackupState)
        if state.format != STATE_FORMAT:
            raise ValueError(f"format {state.format}, this version reads {STATE_FORMAT}")
    except Exception as exc:
        log.error("backup state %s is unreadable (%s); re-checking every target from scratch", path, exc)
        return BackupState()
    return state


def save_state(path: Path, state: BackupState) -> None:
    write_atomically(path, (json.dumps(convert.unstructure(state), indent=1) + "\n").encode())

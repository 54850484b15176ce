"""The SQLite projection of the write-ahead log (DESIGN.md: "the log is the truth").

- `schema`: DDL, `PRAGMA user_version` migrations, `open_database`, typed errors for files to rebuild;
- `apply`: `apply_batch` (one transaction per batch, idempotent by LSN) and `rebuild_apply`;
- `frames`: `apply_frames`, `apply_batch` from undecoded frames (the live applier), and the rebuild's
  `load_frames`;
- `rebuild`: `rebuild_database` and `rebuild_from_frames`, the fast path that builds a fresh file from
  the whole log (`frames` and `join_rows`: joins decoded straight from their payloads; `parts`: the
  same in parts loaded by several processes, see `recovery.parallel`, then merged);
- `queries`: what staff commands, the CLI and metrics read;
- `export`: streaming CSV and JSON Lines.

All functions are synchronous on an apsw connection; the actors run them in worker threads. The names
below are the package's API; the modules' other names are for the package itself and its tests.
"""

from __future__ import annotations

from service.projection.apply import LsnGapError, applied_lsn, apply_batch, rebuild_apply
from service.projection.export import COLUMNS as EXPORT_COLUMNS
from service.projection.export import ExportTally, export_csv, export_jsonl, unescape_csv_cell
from service.projection.frames import apply_frames
from service.projection.queries import (
    Erasure,
    InviteComparison,
    JoinCursor,
    JoinEntry,
    JoinPage,
    MemberEvent,
    MemberState,
    ProjectionStats,
    Settlement,
    StaffPeriodCount,
    StaffProfile,
    UserLookup,
    dump_tables,
    invite_comparison,
    invite_owner,
    join_logs,
    lookup_user,
    projection_digest,
    staff_counts,
    staff_profile,
    stats,
)
from service.projection.rebuild import rebuild_database, rebuild_from_frames
from service.projection.schema import (
    ERASED,
    SCHEMA_VERSION,
    NotAProjectionError,
    ProjectionSchemaError,
    SchemaTooNewError,
    open_database,
    open_read_connection,
)

__all__ = [
    "ERASED",
    "EXPORT_COLUMNS",
    "SCHEMA_VERSION",
    "Erasure",
    "ExportTally",
    "InviteComparison",
    "JoinCursor",
    "JoinEntry",
    "JoinPage",
    "LsnGapError",
    "MemberEvent",
    "MemberState",
    "NotAProjectionError",
    "ProjectionSchemaError",
    "ProjectionStats",
    "SchemaTooNewError",
    "Settlement",
    "StaffPeriodCount",
    "StaffProfile",
    "UserLookup",
    "applied_lsn",
    "apply_batch",
    "apply_frames",
    "dump_tables",
    "export_csv",
    "export_jsonl",
    "invite_comparison",
    "invite_owner",
    "join_logs",
    "lookup_user",
    "open_database",
    "open_read_connection",
    "projection_digest",
    "rebuild_apply",
    "rebuild_database",
    "rebuild_from_frames",
    "staff_counts",
    "staff_profile",
    "stats",
    "unescape_csv_cell",
]

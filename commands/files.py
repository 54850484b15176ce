"""Turning an export file into a Discord attachment: gzip it when it is large, refuse when even gzipped it
is over Discord's attachment limit and point to the command line instead.

Runs in a worker thread (`package_export` reads and compresses files); the result holds the bytes to upload.
"""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

import attrs

DISCORD_ATTACHMENT_LIMIT = 25 * 1024 * 1024  # bytes, for a server without boosts
GZIP_ABOVE = 1024 * 1024  # a CSV compresses ~10x; below this size a plain file is friendlier
_CHUNK = 1024 * 1024


@attrs.frozen
class Attachment:
    file_name: str
    data: bytes
    gzipped: bool


@attrs.frozen
class TooLarge:
    size: int  # bytes after compression
    limit: int


def package_export(
    path: Path,
    file_name: str,
    *,
    limit: int = DISCORD_ATTACHMENT_LIMIT,
    gzip_above: int = GZIP_ABOVE,
) -> Attachment | TooLarge:
    """The export at `path` as an attachment named `file_name` (+ ".gz" when compressed)."""
    size = path.stat().st_size
    if size <= min(gzip_above, limit):
        return Attachment(file_name, path.read_bytes(), gzipped=False)
    buffer = io.BytesIO()
    # mtime=0: the same export gives the same bytes; the file name inside is the export's own.
    with path.open("rb") as source, gzip.GzipFile(file_name, "wb", fileobj=buffer, mtime=0) as target:
        while chunk := source.read(_CHUNK):
            target.write(chunk)
            if buffer.tell() > limit:  # stop early: it cannot fit, whatever the rest compresses to
                return TooLarge(buffer.tell(), limit)
    if buffer.tell() > limit:
        return TooLarge(buffer.tell(), limit)
    return Attachment(file_name + ".gz", buffer.getvalue(), gzipped=True)


def cli_hint(guild_id: str, fmt: str, since: datetime | None, until: datetime | None) -> str:
    """The command that writes the same export on the server, for exports too large for Discord. The times
    are the resolved ones (a bare `until` day already moved to the next midnight), as the CLI's `--until`
    means "before"."""
    parts = ["invite-ledger", "export", "--guild", guild_id, "--format", fmt]
    if since is not None:
        parts += ["--since", _iso(since)]
    if until is not None:
        parts += ["--until", _iso(until)]
    parts += ["--out", f"invite-logs.{fmt}"]
    return " ".join(parts)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

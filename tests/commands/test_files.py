"""Export files as attachments: plain when small, gzipped when large, refused when too large even gzipped."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from pathlib import Path

from commands.files import Attachment, TooLarge, cli_hint, package_export


def test_small_plain_large_gzipped_and_too_large_refused(tmp_path: Path) -> None:
    csv = tmp_path / "joins.csv"
    csv.write_bytes(b"user_id,invite_code\r\n" + b"123456789012345678,abc123XYZ\r\n" * 2000)
    small = package_export(csv, "joins.csv", gzip_above=1_000_000)
    assert small == Attachment("joins.csv", csv.read_bytes(), gzipped=False)

    large = package_export(csv, "joins.csv", gzip_above=1000)
    assert isinstance(large, Attachment) and large.gzipped and large.file_name == "joins.csv.gz"
    assert gzip.decompress(large.data) == csv.read_bytes() and len(large.data) < csv.stat().st_size / 10

    noise = tmp_path / "noise.jsonl"
    noise.write_bytes(os.urandom(300_000))  # does not compress
    refused = package_export(noise, "noise.jsonl", gzip_above=1000, limit=100_000)
    assert isinstance(refused, TooLarge) and refused.limit == 100_000 and refused.size > 100_000


def test_the_cli_hint_names_the_same_export() -> None:
    assert (
        cli_hint("42", "csv", None, None)
        == "invite-ledger export --guild 42 --format csv --out invite-logs.csv"
    )
    since, until = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
    hint = cli_hint("42", "jsonl", since, until)
    assert "--since 2025-10-01T00:00:00Z --until 2025-11-01T00:00:00Z" in hint

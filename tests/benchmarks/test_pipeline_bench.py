"""The pipeline benchmark runs end to end at a tiny size and ends with its RESULT line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from benchmarks.pipeline import main

REQUIRED = ("e2e_joins_per_s", "rebuild_records_per_s", "lookup_p99_ms", "export_1m_s", "export_peak_rss_mb")


def test_a_tiny_run_prints_every_figure_and_a_result_line_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    code = main(
        [
            "--quick",
            "--dir",
            str(tmp_path),
            "--e2e-joins",
            "200",
            "--guilds",
            "10",
            "--naive-joins",
            "50",
            "--log-records",
            "2000",
            "--lookups",
            "100",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[-1].startswith("RESULT ")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert all(result[key] > 0 for key in REQUIRED)
    assert result["e2e_wrong_credits"] == 0
    assert result["export_rows"] == result["log_records"] == 2000
    assert result["e2e_joins"] == 200 and result["naive_joins"] == 50
    assert any(line.startswith("bursts ") for line in lines)
    assert list(tmp_path.iterdir()) == []  # the run cleans up after itself
    assert time.perf_counter() - started < 30

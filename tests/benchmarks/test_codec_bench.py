"""`python -m benchmarks.codec` runs and prints each figure (its numbers are for people, not asserted)."""

from __future__ import annotations

import pytest

from benchmarks import codec


def test_the_codec_benchmark_runs_at_a_tiny_size(capsys: pytest.CaptureFixture[str]):
    assert codec.main(["--records", "300", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("µs CPU/record") == 5

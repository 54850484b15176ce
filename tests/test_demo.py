"""`make run` with no DISCORD_TOKEN: the demo runs the real bot against the simulator, and must exit 0.

A real process, as an operator would start it; the simulator and everything else on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_the_bot_against_the_simulator_and_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "INVITE_LEDGER_"))}
    env["INVITE_LEDGER_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "run", "--demo-pause", "1.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # The brief's answer, with the staff member's IB link and code, and the proof.
    assert "IB Link: https://vantage.example/ref/travis" in out
    assert "IB Code: `TRAVIS123`" in out
    assert "Proof:" in out and "LSN" in out
    for command in ("lookup_user_invite", "view_invite_logs", "export_invite_logs", "sync_member_invites"):
        assert f"/{command}" in out
    assert "[attachment invite-logs-" in out
    counted = json.loads(out.rsplit("demo finished: ", 1)[1])
    # Two joins no count could tell apart, one of them settled by hand, its lookup then crediting TravisP.
    assert "Candidates: `abc123XYZ`, `maya2024`." in out
    assert "Settled: the join of" in out and "**Settled by hand** by TravisP" in out
    assert counted["joins"] == 10
    assert counted["applied_lsn"] == counted["durable_lsn"] > 10
    # The log is on disk where the demo said, and a second run recovers it instead of starting afresh.
    assert list((tmp_path / "data" / "demo" / "wal").glob("*.wal"))

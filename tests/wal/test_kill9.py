"""kill -9 at random moments: every LSN a child printed as acknowledged is in the log after reopening."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from wal.reader import iter_frames
from wal.recover import open_log

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 24


LINE = re.compile(r"^(\d+) (\d+-\d+-\d+-x*)$")


def read_acknowledged(out: Path) -> dict[int, str]:
    """LSN -> payload of every `LSN PAYLOAD` line the child printed."""
    acked: dict[int, str] = {}
    for line in out.read_text().splitlines():
        if match := LINE.match(line):
            acked[int(match.group(1))] = match.group(2)
    return acked


def test_sigkill_at_random_moments_never_loses_an_acknowledged_record(tmp_path):
    rng = random.Random(0x5EED)
    wal_dir = tmp_path / "wal"
    acknowledged: dict[int, str] = {}
    killed_while_appending = 0
    for round_ in range(ROUNDS):
        out = tmp_path / f"out-{round_}.txt"
        backend = "trio" if round_ % 2 else "asyncio"
        with open(out, "wb") as stdout:
            child = subprocess.Popen(
                [sys.executable, "-m", "tests.wal.kill_child", str(wal_dir), backend],
                cwd=REPO,
                stdout=stdout,
                stderr=subprocess.PIPE,
            )
            if round_ % 4 == 3:
                time.sleep(rng.uniform(0.0, 0.4))  # anywhere from start-up and recovery on
            else:
                deadline = time.monotonic() + 20
                while "ready" not in out.read_text() and child.poll() is None:
                    assert time.monotonic() < deadline, "the child never became ready"
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.02, 0.25))
            child.send_signal(signal.SIGKILL)
            _, stderr = child.communicate(timeout=20)
        assert child.returncode == -signal.SIGKILL, stderr.decode()
        printed = read_acknowledged(out)
        if printed:
            killed_while_appending += 1
        for lsn, payload in printed.items():
            assert acknowledged.setdefault(lsn, payload) == payload, f"LSN {lsn} acknowledged twice"

        report = open_log(wal_dir)  # the restart: repairs a torn tail, refuses anything worse
        log = {e.lsn: e.payload.decode() for e in iter_frames(wal_dir)}
        assert report.last_lsn == len(log) == (max(log) if log else 0)  # no gap
        missing = {lsn: p for lsn, p in acknowledged.items() if log.get(lsn) != p}
        assert not missing, f"round {round_}: acknowledged records lost or changed: {sorted(missing)[:10]}"
    # the test must have killed children that were busy appending, not just ones starting up
    assert killed_while_appending >= ROUNDS // 3
    assert len(acknowledged) > 200

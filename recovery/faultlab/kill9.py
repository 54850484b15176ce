"""Campaign 1: kill -9 of the running service at random moments during a stream of joins.

Each round starts `recovery.faultlab.child` (a real process: `recover()`, then the real Service on a
scripted Discord), checks the invariant on what its recovery produced while the child waits at its gate,
lets it run, and kills it with SIGKILL 50-300 ms into its joins; one round in `early_every` is killed at a
random moment from start-up through recovery instead. A final in-process recovery is checked against a
full rebuild of the log.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from recovery.faultlab.child import child_config
from recovery.faultlab.invariants import Projection, Tally, check, record
from recovery.replay import database_digest, projection_digest_of_log
from recovery.startup import recover

REPO = Path(__file__).resolve().parents[2]


def _wait_for(out: Path, marker: str, child: subprocess.Popen[bytes], limit_s: float = 30.0) -> str:
    deadline = time.monotonic() + limit_s
    while True:
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith(marker):
                return line
        if child.poll() is not None:
            raise RuntimeError(f"the child exited ({child.returncode}) before printing {marker}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the child did not print {marker} within {limit_s} s")
        time.sleep(0.003)


def run(
    work: Path,
    *,
    rounds: int = 50,
    seed: int = 7,
    window_ms: tuple[float, float] = (50, 300),
    early_every: int = 8,
) -> Tally:
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    config = child_config(data_dir)
    tally = Tally("kill -9")
    rng = random.Random(seed)
    acked: dict[str, int] = {}
    acked_twice = 0
    killed_in_stream = 0
    expected = Projection(work / "expected.sqlite3")
    started = time.monotonic()
    try:
        for rnd in range(rounds):
            out, err, go = work / f"child-{rnd}.out", work / f"child-{rnd}.err", work / f"go-{rnd}"
            run_id = f"{seed % 100:02d}{rnd:04d}"
            backend = "trio" if rnd % 2 else "asyncio"
            command = [
                sys.executable,
                "-m",
                "recovery.faultlab.child",
                str(data_dir),
                run_id,
                backend,
                str(go),
            ]
            with open(out, "wb") as stdout, open(err, "wb") as stderr:
                child = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr)
            try:
                if rnd % early_every == early_every - 1:
                    go.touch()
                    time.sleep(rng.uniform(0.0, 0.5))  # anywhere from start-up through recovery on
                else:
                    recovered = json.loads(_wait_for(out, "RECOVERED", child).split(" ", 1)[1])
                    tally.recovery_ms.append(recovered["seconds"] * 1000)
                    record(tally, check(config, acked, expected))
                    go.touch()
                    _wait_for(out, "READY", child)
                    time.sleep(rng.uniform(*window_ms) / 1000)
                    killed_in_stream += 1
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=30)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=30)
            if child.returncode != -signal.SIGKILL:
                raise RuntimeError(
                    f"round {rnd}: the child died by itself ({child.returncode}): {err.read_text()}"
                )
            tally.crashes += 1
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith("ACK "):
                    _, user, lsn = line.split()
                    acked_twice += user in acked
                    acked[user] = int(lsn)
            for path in (out, err, go):
                path.unlink(missing_ok=True)
        tally.acknowledged = len(acked)
        # The last restart's recovery, checked against a full rebuild of the log (not the incremental one).
        report = recover(config, progress=False)
        tally.recovery_ms.append(report.seconds * 1000)
        record(tally, check(config, acked, expected))
        _, live = database_digest(config.db_path)
        _, rebuilt = projection_digest_of_log(config.wal_dir, work / "rebuilt.sqlite3")
        tally.mismatches += live != rebuilt
    finally:
        expected.close()
    tally.duplicated += acked_twice
    tally.notes.update(
        killed_during_joins=killed_in_stream,
        killed_during_startup=rounds - killed_in_stream,
        log_records=report.last_lsn,
        seconds=round(time.monotonic() - started, 1),
    )
    return tally

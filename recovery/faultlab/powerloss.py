"""Campaign 2: power loss. The WAL writes through `wal.powerloss.PowerLossFileSystem`, which at a chosen
call cuts the power and then rewrites the log's directory into a state a power cut could leave: every
write made durable by fdatasync/fsync survives; the others are lost whole, kept, cut short, garbled, or
torn sector by sector in any order (`LossPolicy`). New files and renames without a directory fsync vanish.

Each round runs the real writer and applier with four producers appending joins, records a join as
acknowledged when its append returned, cuts the power after a random number of file calls, applies the
loss, and, in one round out of three, also rolls the database back to its state at the round's start
(SQLite with synchronous=NORMAL may lose its last transactions: the projection is then simply behind).
Then `recover()` runs and the invariant is checked. Segments are small, so crash points fall inside
rollovers too. Rounds alternate between asyncio and trio.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

from recovery.faultlab.child import child_config
from recovery.faultlab.invariants import Projection, Tally, check, record
from recovery.replay import database_digest, projection_digest_of_log
from recovery.startup import recover
from service import convert
from service.applier import Applier
from service.config import Config
from service.records import AttributionKind, JoinRecorded
from wal import WalError, WalWriter
from wal.powerloss import LossPolicy, PowerLossFileSystem, SimulatedPowerCut

POLICIES = (LossPolicy.TORN, LossPolicy.LOSE, LossPolicy.TRUNCATE, LossPolicy.KEEP, LossPolicy.GARBLE)
PRODUCERS = 4


def _join(user: str) -> tuple[int, bytes]:
    now = datetime.now(UTC)
    record = JoinRecorded(now, "4242", "Power Guild", user, f"u{user}", f"U {user}", AttributionKind.UNKNOWN)
    return convert.encode(record)


async def _round(config: Config, fs: PowerLossFileSystem, tag: str, acked: dict[str, int]) -> None:
    writer = WalWriter(config.wal_dir, segment_bytes=8 * 1024, fs=fs)
    applier = Applier(config.wal_dir, config.db_path, writer.durable, batch_max=64)

    async def producer(k: int) -> None:
        n = 0
        while True:
            user = f"{tag}{k}{n:06d}"
            lsn = await writer.append(*_join(user))
            acked[user] = lsn  # the append returned: fdatasync did too
            n += 1

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(writer.run)
                await tg.start(applier.run)
                for k in range(PRODUCERS):
                    tg.start_soon(producer, k)
    except* (SimulatedPowerCut, WalError):
        pass  # the power went off: the writer stopped, and the appends waiting on it failed


def run(work: Path, *, rounds: int = 60, seed: int = 11, max_calls: int = 120) -> Tally:
    # The durability that matters here is the power-loss layer's model, so the files may live in memory.
    root = Path(tempfile.mkdtemp(prefix="powerloss-", dir="/dev/shm" if Path("/dev/shm").is_dir() else work))
    config = child_config(root / "data")
    config.wal_dir.mkdir(parents=True)
    tally = Tally("power loss")
    rng = random.Random(seed)
    acked: dict[str, int] = {}
    expected = Projection(root / "expected.sqlite3")
    policies: dict[str, int] = {}
    rolled_back = 0
    started = time.monotonic()
    try:
        for rnd in range(rounds):
            snapshot = root / "db-at-start.sqlite3"
            if config.db_path.exists():
                shutil.copyfile(config.db_path, snapshot)
            fs = PowerLossFileSystem(config.wal_dir)
            fs.cut_power_after(rng.randint(0, max_calls))
            anyio.run(_round, config, fs, f"{rnd:04d}", acked, backend="trio" if rnd % 2 else "asyncio")
            policy = POLICIES[rnd % len(POLICIES)]
            fs.apply_power_loss(rng, policy)
            policies[policy.value] = policies.get(policy.value, 0) + 1
            tally.crashes += 1
            if rnd % 3 == 2 and snapshot.exists():
                for suffix in ("-wal", "-shm"):
                    Path(str(config.db_path) + suffix).unlink(missing_ok=True)
                shutil.copyfile(snapshot, config.db_path)
                rolled_back += 1
            report = recover(config, progress=False)
            tally.recovery_ms.append(report.seconds * 1000)
            record(tally, check(config, acked, expected))
        tally.acknowledged = len(acked)
        _, live = database_digest(config.db_path)
        _, rebuilt = projection_digest_of_log(config.wal_dir, root / "rebuilt.sqlite3")
        tally.mismatches += live != rebuilt
        tally.notes.update(
            policies=policies,
            database_rolled_back=rolled_back,
            log_records=report.last_lsn,
            seconds=round(time.monotonic() - started, 1),
        )
    finally:
        expected.close()
        shutil.rmtree(root, ignore_errors=True)
    return tally

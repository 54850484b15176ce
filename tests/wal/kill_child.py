"""Child process for the kill -9 test: open the log, append forever from several tasks, print each
acknowledged record as `LSN PAYLOAD` the moment its append returns. The parent kills it with SIGKILL.

    python -m tests.wal.kill_child WAL_DIR BACKEND
"""

from __future__ import annotations

import os
import sys

import anyio

from wal.writer import WalWriter


async def main(wal_dir: str, producers: int = 8) -> None:
    writer = WalWriter(wal_dir, segment_bytes=32 * 1024)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        os.write(1, f"ready {writer.durable.value}\n".encode())

        async def producer(index: int) -> None:
            n = 0
            while True:
                payload = f"{os.getpid()}-{index}-{n}-" + "x" * (n % 50)
                lsn = await writer.append(1, payload.encode())
                os.write(1, f"{lsn} {payload}\n".encode())  # unbuffered: printed means acknowledged
                n += 1

        for index in range(producers):
            tg.start_soon(producer, index)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], backend=sys.argv[2])

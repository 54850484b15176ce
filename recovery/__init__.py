"""Recovery: start-up recovery, rebuild, verify, restore from backup, checkpoint inspection (DESIGN.md).

- `startup.recover(config) -> StartupReport`: run before connecting to Discord (blocking: call it in a
  worker thread). Repairs a torn tail, rebuilds or catches up the database, returns the `GuildRestored`
  events for the attribution actor and one line saying what it did (`StartupReport.line`). A damaged log
  raises `StartupRefused` (exit status `StartupRefused.exit_code`), naming the segment, offset, LSN and the
  `restore` command.
- `lock`: the data directory's lock. The service holds it from before `recover()` until it exits:

      with hold_data_dir(config.data_dir, "service"):
          report = await anyio.to_thread.run_sync(recover, config)
          service = Service.build(config, gateway, restored=report.restored, recovery_line=report.line)
          await service.run()

  `rebuild` and `restore` take it too, and refuse while it is held; `checkpoint`, `verify` and `export`
  only read.
- `cli`: the operator's commands; `status`, `verify`, `restore` hold their logic.
- `faultlab`: the fault campaigns' machinery (tests and `benchmarks.faults`), not used by the service.
"""

from __future__ import annotations

from recovery.lock import DataDirBusy, DataDirLock, hold_data_dir
from recovery.startup import StartupRefused, StartupReport, recover

__all__ = ["DataDirBusy", "DataDirLock", "StartupRefused", "StartupReport", "hold_data_dir", "recover"]

"""The interpreter settings the service runs with, set while it runs and put back when it stops.

Both are process-wide, so `Service.run` sets them (the benchmarks measure what production runs) and
restores what it found, which keeps tests that start many services in one process unaffected.

* GIL switch interval, 1 ms instead of Python's 5 ms: how long a thread may keep the GIL while another one
  waits for it. The applier, the log follower and the queries run in worker threads that give the GIL
  away at every SQLite call and must get it back from a busy event loop, each time waiting up to this
  long. In the pipeline benchmark's load (50,000 joins, two alternations) the applier ended 15,000-18,000
  records behind (p99) and 0.7-0.8 s after the last join was durable at 5 ms; 5,000-9,000 and 0.1-0.3 s
  at 1 ms, with the event loop's own rate unchanged.
* Cyclic GC's first generation threshold, 10,000 allocations instead of 700: every join allocates a few
  dozen short-lived objects (events, records, effects), so at 700 the collector ran every ~15 joins and
  promoted what was merely in flight into older generations, whose collections walk the whole heap.
  Measured over 30,000 joins of the pipeline benchmark (two alternations): 17-18 µs of collection per
  join at 700, 6 µs at 10,000 (3.5 µs at 50,000, which leaves more garbage waiting for little gain).
  Memory is not at stake: 10,000 young objects are a few MB at most.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

GIL_SWITCH_INTERVAL_S = 0.001
GC_YOUNG_THRESHOLD = 10_000


@contextmanager
def service_runtime() -> Iterator[None]:
    """Apply the settings above for the duration of the block (a shorter switch interval or a larger
    threshold already set is kept), then restore the previous ones."""
    interval = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    sys.setswitchinterval(min(interval, GIL_SWITCH_INTERVAL_S))
    if thresholds[0] > 0:  # 0: the embedding program turned automatic collection off; leave it so
        gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)

"""The live applier's write transaction: BEGIN and COMMIT run as statements, so the commit lets the GIL go.

apsw's `with conn:` ends its transaction (a savepoint released) while holding the GIL. The commit of an
applier batch writes its pages to SQLite's WAL, and every ~1,000 pages also checkpoints them into the
database file: 3-4 ms for 1,500 rows on the benchmark machine, more with a checkpoint. The applier runs in
a worker thread beside the event loop, so for that long the loop could not run at all. A COMMIT executed as
a statement goes through `sqlite3_step`, which apsw runs with the GIL released (measured: a thread
spinning in Python advanced 0 times during a `with conn:` commit and ~150,000 times during a COMMIT
statement).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import apsw


@contextmanager
def write_transaction(conn: apsw.Connection) -> Iterator[None]:
    """One transaction around the block: committed if it ends normally, rolled back if it raises.

    Inside a transaction the caller already holds, it is a savepoint instead (what `with conn:` does), so
    it nests the same way."""
    if conn.in_transaction:
        with conn:
            yield
        return
    conn.execute("BEGIN IMMEDIATE")  # the write lock up front: a batch never fails half-way on an upgrade
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # some errors end the transaction themselves
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a COMMIT that failed leaves it open: nothing of it may stay
            conn.execute("ROLLBACK")
        raise

"""The applier's write transaction: all or nothing, nests as a savepoint, and its COMMIT lets other threads
run (the event loop shares the GIL with the applier's worker thread)."""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import pytest

from service.projection.transaction import write_transaction


def table(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "full")  # an fsync in every commit: the commit takes a while
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    return conn


def count(conn: apsw.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").get)


def test_it_commits_what_the_block_wrote_and_rolls_back_all_of_it_on_an_error(tmp_path: Path) -> None:
    conn = table(tmp_path / "t.db")
    with write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (1, 'x')")
    assert count(conn) == 1 and not conn.in_transaction
    with pytest.raises(apsw.ConstraintError), write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (2, 'y')")
        conn.execute("INSERT INTO t VALUES (1, 'again')")  # primary key taken
    assert count(conn) == 1 and not conn.in_transaction
    with pytest.raises(KeyError), write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (3, 'z')")
        raise KeyError("the caller's own failure")
    assert count(conn) == 1 and not conn.in_transaction


def test_inside_a_callers_transaction_it_is_a_savepoint(tmp_path: Path) -> None:
    conn = table(tmp_path / "t.db")
    with conn:
        conn.execute("INSERT INTO t VALUES (1, 'outer')")
        with pytest.raises(KeyError), write_transaction(conn):
            conn.execute("INSERT INTO t VALUES (2, 'inner')")
            raise KeyError("undo the inner part only")
        with write_transaction(conn):
            conn.execute("INSERT INTO t VALUES (3, 'inner kept')")
    assert [row[0] for row in conn.execute("SELECT a FROM t ORDER BY a")] == [1, 3]


def test_its_commit_lets_another_python_thread_run(tmp_path: Path) -> None:
    conn = table(tmp_path / "t.db")
    # One statement, so the spinner cannot run during the inserts' binds either (apsw lets the GIL go
    # around each bind); only during the COMMIT.
    insert = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
        "INSERT INTO t SELECT i + ?, printf('row %d', i) FROM n"
    )
    spins = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal spins
        while not stop.is_set():
            spins += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        during = []
        for attempt in range(3):
            with write_transaction(conn):
                conn.execute(insert, (attempt * 10_000,))
                before = spins
            during.append(spins - before)  # the spinner ran only while the COMMIT let the GIL go
    finally:
        stop.set()
        spinner.join()
    # With apsw's `with conn:` the commit holds the GIL: 0 every time (measured).
    assert max(during) > 0
    assert count(conn) == 15_000

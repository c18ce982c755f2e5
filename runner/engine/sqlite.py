"""SQLite specifics: WAL, busy timeout, and BEGIN IMMEDIATE for every writing transaction.

A deferred transaction that reads and then writes fails at once with "database is
locked" whatever the busy timeout; starting writers with BEGIN IMMEDIATE makes them
queue on the busy handler instead. Read-only connections (``readonly=True``
execution option) begin deferred so status never blocks writers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from runner.engine.base import EngineOptions

BUSY_TIMEOUT_MS = 30_000

name = "sqlite"
skip_locked = False


def create_engine(url: sa.URL, options: EngineOptions) -> sa.Engine:
    engine = sa.create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None},
        pool_size=options.pool_size,
        max_overflow=options.pool_size,
        pool_pre_ping=False,
    )
    durable = options.sqlite_synchronous
    relaxed = options.sqlite_worker_synchronous

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={durable}")  # value from a Literal setting
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        _record.info["synchronous"] = durable

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        opts = conn.get_execution_options()
        if opts.get("readonly"):
            conn.exec_driver_sql("BEGIN")
            return
        # Per transaction: a worker's commits (claims, acks) may skip the fsync; the
        # next durable commit on the file syncs the whole WAL, theirs included.
        wanted = relaxed if opts.get("worker") else durable
        info = conn.connection.info
        if info.get("synchronous") != wanted:
            conn.exec_driver_sql(f"PRAGMA synchronous={wanted}")  # a Literal setting
            info["synchronous"] = wanted
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def worker_commit(options: EngineOptions) -> sa.ColumnElement[bool] | None:
    """Nothing in the statement: worker transactions set ``PRAGMA synchronous`` as they
    begin (``begin_raw``)."""
    return None


def json_rows(with_keys: bool) -> Any:
    """New jobs' rows from one text parameter, however many rows: ``payloads``, the
    payloads' JSON texts joined into one JSON array, numbered ``n`` in input order.

    ``json_each`` gives back each element's text as sent (the payloads are compact
    JSON already). Idempotency keys are not carried (None ``with_keys``): rows with keys
    and no dedupe go through a multi-row INSERT. One statement runs the loop in SQLite,
    where executemany bound eight parameters a row from Python.
    """
    if with_keys:
        return None
    each = sa.func.json_each(sa.bindparam("payloads", type_=sa.Text())).table_valued("key", "value")
    return sa.select(
        each.c.value.label("payload"),
        sa.null().label("idempotency_key"),
        each.c.key.label("n"),
    ).subquery("new_rows")


def lease_pairs() -> Any:
    """(id, token) rows from one JSON parameter: one statement text for any count."""
    each = sa.func.json_each(sa.bindparam("lease_pairs")).table_valued("value")
    return sa.select(
        sa.func.json_extract(each.c.value, sa.literal_column("'$[0]'")).label("id"),
        sa.func.json_extract(each.c.value, sa.literal_column("'$[1]'")).label("token"),
    ).subquery("leases")


def lease_pairs_params(pairs: Sequence[tuple[int, str]]) -> dict[str, Any]:
    return {"lease_pairs": json.dumps([[i, t] for i, t in pairs])}


MAX_ROWID = 2**63 - 1

sequential_ids = True
"""A bulk insert gives its rows their ids: the largest id in the table plus one, plus each
payload's index. The write lock (BEGIN IMMEDIATE) keeps other inserts out meanwhile; ids
above MAX_ROWID do not exist, so a batch that would reach it goes in row by row."""

single_statement_autocommit = False

claim_never_waits = False
"""A claim takes the write lock (BEGIN IMMEDIATE): it may wait for another process."""
"""BEGIN IMMEDIATE first: a deferred write could fail at once on a stale snapshot."""


def begin_single(cursor: Any, info: dict[str, Any], synchronous: str) -> None:
    """Set up a raw connection for one statement that is its own transaction (see
    prepared.one_statement). Safe without BEGIN IMMEDIATE: a writing statement takes the
    write lock as it starts (through the busy handler) and reads after it, so it can never
    fail on a stale snapshot the way a deferred transaction that read first can."""
    if info.get("synchronous") != synchronous:
        cursor.execute(f"PRAGMA synchronous={synchronous}")  # a Literal setting
        info["synchronous"] = synchronous


def begin_raw(cursor: Any, info: dict[str, Any], synchronous: str) -> None:
    """Begin a durable writing transaction on a raw DBAPI connection (see prepared.py)."""
    if info.get("synchronous") != synchronous:
        cursor.execute(f"PRAGMA synchronous={synchronous}")  # a Literal setting
        info["synchronous"] = synchronous
    cursor.execute("BEGIN IMMEDIATE")


def notify_column(queue: sa.ColumnElement[str]) -> sa.ColumnElement[Any] | None:
    """No notifications on SQLite: workers watch the file's data version."""
    return None


def now() -> sa.ColumnElement[float]:
    """The database's clock in epoch seconds (millisecond resolution)."""
    return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Double())


def insert(table: sa.Table) -> sqlite_dialect.Insert:
    return sqlite_dialect.insert(table)


def lock_queue(conn: sa.Connection, queue: str) -> bool:
    """BEGIN IMMEDIATE already serialises writers on the whole file."""
    return True


def lock_migrations(conn: sa.Connection) -> None:
    """BEGIN IMMEDIATE already holds the write lock."""


def notify(conn: sa.Connection, queues: set[str]) -> None:
    """No notifications on SQLite: workers poll."""


PAUSED_CHECK_S = 0.1
"""While the worker is busy, the watcher looks this often whether to stop."""


class DataVersionWatcher:
    """Wakes a worker within milliseconds of a commit by any other connection to the file.

    SQLite has no notifications; ``PRAGMA data_version`` changes whenever another
    connection commits, and reading it takes no lock and no disk I/O, so polling it every
    couple of milliseconds costs next to nothing. A wake is a hint: claims still decide.
    It polls only while the worker waits for jobs (``idle``).
    """

    def __init__(self, path: str, interval_s: float = 0.002) -> None:
        self.path = path
        self.interval_s = interval_s

    def run(
        self,
        queues: set[str],
        wake: Callable[[], None],
        stop: threading.Event,
        idle: threading.Event | None = None,
    ) -> None:
        conn: sqlite3.Connection | None = None
        last: int | None = None
        while not stop.is_set():
            if idle is not None and not idle.is_set():
                # The worker's claims are coming back full: nothing to wake it for, and a
                # thread polling every 2 ms would only take the GIL from its handlers.
                idle.wait(PAUSED_CHECK_S)
                continue
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None)
                version = int(conn.execute("PRAGMA data_version").fetchall()[0][0])
            except sqlite3.Error:
                if conn is not None:
                    conn.close()
                conn, last = None, None
                stop.wait(0.5)
                continue
            if last is not None and version != last:
                wake()
            last = version
            stop.wait(self.interval_s)
        if conn is not None:
            conn.close()

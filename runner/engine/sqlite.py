"""SQLite specifics: WAL, busy timeout, and BEGIN IMMEDIATE for every writing transaction.

A deferred transaction that reads and then writes fails at once with "database is
locked" whatever the busy timeout; starting writers with BEGIN IMMEDIATE makes them
queue on the busy handler instead. Read-only connections (``readonly=True``
execution option) begin deferred so status never blocks writers.
"""

from __future__ import annotations

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
    synchronous = options.sqlite_synchronous

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")  # value from a Literal setting
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


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

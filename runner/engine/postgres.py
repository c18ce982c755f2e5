"""PostgreSQL specifics (psycopg 3): SKIP LOCKED claims, advisory lock for migrations."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from runner.engine import tables
from runner.engine.base import EngineOptions

name = "postgresql"
skip_locked = True

MIGRATION_LOCK_ID = 0x72756E6E  # "runn"


def create_engine(url: sa.URL, options: EngineOptions) -> sa.Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(
        url,
        connect_args={"application_name": options.application_name, "connect_timeout": 10},
        pool_size=options.pool_size,
        max_overflow=0,
        pool_pre_ping=False,  # a lost connection fails one verb, which the worker retries
        pool_recycle=3600,
    )


def now() -> sa.ColumnElement[float]:
    """The database's clock (not the transaction start) in epoch seconds."""
    return sa.cast(sa.func.extract("epoch", sa.func.clock_timestamp()), sa.Double())


def insert(table: sa.Table) -> postgresql.Insert:
    return postgresql.insert(table)


def lock_queue(conn: sa.Connection, queue: str) -> bool:
    """Serialise claimers of one queue so its concurrency limit holds across hosts.

    A claim transaction lasts a few milliseconds, so waiting for the lock is cheaper than
    skipping the queue and polling again; job rows are still taken with SKIP LOCKED.
    """
    row = conn.execute(
        sa.select(tables.queues.c.name).where(tables.queues.c.name == queue).with_for_update()
    ).first()
    return row is not None


def lock_migrations(conn: sa.Connection) -> None:
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))

"""Versioned schema migrations, applied under a lock by whoever opens the store first.

Each step runs in the same transaction as the version bump; a step is never edited
once released, only followed by a new one.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from runner.engine import tables


def _v1_initial(conn: sa.Connection) -> None:
    tables.metadata.create_all(
        conn,
        tables=[tables.jobs, tables.job_errors, tables.idempotency_keys, tables.queues],
    )


def _v2_audit(conn: sa.Connection) -> None:
    """Who replayed or purged which dead jobs, and when."""
    tables.audit.create(conn)


def _v3_alerts(conn: sa.Connection) -> None:
    """Alert firings and resolutions, the lease that elects one evaluator, and counters
    of events that happen outside workers (backpressure refusals at producers)."""
    tables.leases.create(conn)
    tables.alert_events.create(conn)
    tables.counters.create(conn)


def _v4_slots(conn: sa.Connection) -> None:
    """A queue's concurrency as leased slots: workers prefetch many jobs per claim and
    run at most their slots of them at once."""
    tables.slots.create(conn)


def _v5_partial_indexes(conn: sa.Connection) -> None:
    """Only rows a query looks for are indexed: keyed pending jobs in the key index,
    succeeded and dead jobs in one index each (they were in full indexes that every
    enqueue, claim and ack had to update). A database created at v1 by this version
    already has them; the old ones are dropped where they exist."""
    for old in ("uq_runner_jobs_pending_key", "ix_runner_jobs_finished"):
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {old}")  # fixed names, not input
    for index in sorted(tables.jobs.indexes, key=lambda i: str(i.name)):
        index.create(conn, checkfirst=True)


# Each job leaves two or three dead row versions in runner_jobs (claimed, finished,
# pruned), and every claim walks the ready index past the dead entries until a vacuum
# removes them. PostgreSQL's default waits for a fifth of the table, and the table holds
# a week of finished jobs (RUNNER_DONE_RETENTION_S): a million rows would pile up
# 200,000 dead ones first. A fixed number of changed rows instead, as job queues on
# PostgreSQL recommend; a DBA's own ALTER TABLE after this step is kept.
JOBS_AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "2000",
    "autovacuum_analyze_scale_factor": "0.02",
    "autovacuum_analyze_threshold": "2000",
}


def _v6_jobs_autovacuum(conn: sa.Connection) -> None:
    """PostgreSQL: vacuum and analyze runner_jobs after a fixed number of changed rows.
    The lock this takes (SHARE UPDATE EXCLUSIVE) lets workers go on claiming and acking."""
    if conn.dialect.name != "postgresql":
        return  # SQLite has no dead row versions to collect: a deleted row's page is reused
    settings = ", ".join(f"{name} = {value}" for name, value in JOBS_AUTOVACUUM.items())
    conn.exec_driver_sql(f"ALTER TABLE runner_jobs SET ({settings})")  # constants above


STEPS: list[tuple[int, Callable[[sa.Connection], None]]] = [
    (1, _v1_initial),
    (2, _v2_audit),
    (3, _v3_alerts),
    (4, _v4_slots),
    (5, _v5_partial_indexes),
    (6, _v6_jobs_autovacuum),
]

LATEST = STEPS[-1][0]


def current_version(conn: sa.Connection) -> int:
    tables.schema_version.create(conn, checkfirst=True)
    version = conn.scalar(sa.select(sa.func.max(tables.schema_version.c.version)))
    return int(version or 0)


def apply(conn: sa.Connection) -> int:
    """Apply every step newer than the database's version; return the new version."""
    version = current_version(conn)
    for step_version, step in STEPS:
        if step_version > version:
            step(conn)
            conn.execute(sa.delete(tables.schema_version))
            conn.execute(sa.insert(tables.schema_version).values(version=step_version))
            version = step_version
    return version

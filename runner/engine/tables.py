"""The schema: one definition for both backends. Times are epoch seconds from the DB clock."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PENDING = ("queued", "running")
STATES = ("queued", "running", "succeeded", "dead")
STATE_LITERALS = {state: sa.literal_column(f"'{state}'", sa.String()) for state in STATES}
PENDING_PREDICATE = sa.text("state IN ('queued', 'running')")
# The pending-key index's predicate, and the ON CONFLICT target's: SQLite matches an upsert
# to a partial index only when the two are the same text, and PostgreSQL needs a literal
# (not bound) predicate to infer the index.
PENDING_KEY_PREDICATE = sa.text("state IN ('queued', 'running') AND idempotency_key IS NOT NULL")

jobs = sa.Table(
    "runner_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(512)),
    sa.Column("enqueued_at", sa.Double, nullable=False),
    sa.Column("run_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("lease_token", sa.String(32)),
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("worker", sa.String(128)),
    sa.Column("last_error", sa.Text),
    sa.Column("dead_owner", sa.Text),
    sa.Column("duplicate", sa.Boolean, nullable=False, server_default=sa.false()),
)

# States are compared as SQL literals, never bound parameters: a prepared statement's
# generic plan can only use the partial indexes (WHERE state = 'queued', ...) when the
# state is a constant in the statement text.
IS_QUEUED = jobs.c.state == STATE_LITERALS["queued"]
IS_RUNNING = jobs.c.state == STATE_LITERALS["running"]
IS_SUCCEEDED = jobs.c.state == STATE_LITERALS["succeeded"]
IS_DEAD = jobs.c.state == STATE_LITERALS["dead"]


def _partial_index(name: str, *columns: Any, where: Any, unique: bool = False) -> sa.Index:
    """An index of the jobs table over the rows matching ``where``, on both backends."""
    return sa.Index(name, *columns, unique=unique, postgresql_where=where, sqlite_where=where)


_partial_index(
    "ix_runner_jobs_ready",
    jobs.c.queue,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    where=jobs.c.state == "queued",
)
_partial_index(
    "ix_runner_jobs_running", jobs.c.queue, jobs.c.lease_expires_at, where=jobs.c.state == "running"
)
# Partial indexes hold only the rows their queries look for, so a job's write touches
# the fewest pages: a job without an idempotency key is in no key index, and a queued
# or running job in no finished one (enqueue, claim and ack each write ~4 fewer index
# entries than with full indexes on those columns; migration v5).
_partial_index(
    "uq_runner_jobs_keyed_pending",
    jobs.c.idempotency_key,
    where=PENDING_KEY_PREDICATE,
    unique=True,
)
_partial_index(
    "ix_runner_jobs_succeeded", jobs.c.queue, jobs.c.finished_at, where=jobs.c.state == "succeeded"
)
_partial_index(
    "ix_runner_jobs_dead", jobs.c.queue, jobs.c.finished_at, where=jobs.c.state == "dead"
)

job_errors = sa.Table(
    "runner_job_errors",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("error_type", sa.String(256), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("traceback", sa.Text, nullable=False, server_default=""),
    sa.Column("at", sa.Double, nullable=False),
)
sa.Index("ix_runner_job_errors_queue_at", job_errors.c.queue, job_errors.c.at)

idempotency_keys = sa.Table(
    "runner_idempotency_keys",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("job_id", sa.BigInteger, nullable=False),
    sa.Column("done_at", sa.Double, nullable=False, index=True),
)

queues = sa.Table(
    "runner_queues",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
)

audit = sa.Table(
    "runner_audit",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("operator", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),  # dlq_replay | dlq_purge
    sa.Column("selection", sa.Text, nullable=False),  # the filter, as JSON
    sa.Column("job_count", sa.Integer, nullable=False),
    sa.Column("job_ids", sa.Text, nullable=False),  # JSON list
)

leases = sa.Table(
    "runner_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),  # e.g. "alerts"
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

alert_events = sa.Table(
    "runner_alert_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # firing | resolved
    sa.Column("value", sa.Double, nullable=False),
    sa.Column("threshold", sa.Double, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
)
sa.Index("ix_runner_alert_events_queue_rule", alert_events.c.queue, alert_events.c.rule)

counters = sa.Table(
    "runner_counters",
    metadata,
    sa.Column("queue", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),  # e.g. backpressure_refused
    sa.Column("value", sa.BigInteger, nullable=False),
)

slots = sa.Table(
    "runner_slots",
    metadata,
    sa.Column("queue", sa.String(64), primary_key=True),
    sa.Column("worker", sa.String(128), primary_key=True),
    sa.Column("held", sa.Integer, nullable=False),  # handlers it may run at once
    sa.Column("wanted", sa.Integer, nullable=False),  # what it would run, for fair shares
    sa.Column("expires_at", sa.Double, nullable=False),  # renewed while the worker lives
)

schema_version = sa.Table(
    "runner_schema_version",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

"""PostgreSQL specifics (psycopg 3): SKIP LOCKED claims, advisory lock for migrations."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from runner import events
from runner.engine import tables
from runner.engine.base import EngineOptions

log = logging.getLogger("runner.engine")

name = "postgresql"
skip_locked = True

MIGRATION_LOCK_ID = 0x72756E6E  # "runn"


def create_engine(url: sa.URL, options: EngineOptions) -> sa.Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(
        url,
        connect_args={
            "application_name": options.application_name,
            "connect_timeout": 10,
            # A statement whose packets go unacknowledged (a network that drops them)
            # fails after 30 s instead of the kernel's ~15 minutes of retransmissions.
            "tcp_user_timeout": 30_000,
        },
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


def worker_commit(options: EngineOptions) -> sa.ColumnElement[bool] | None:
    """A WHERE term for a worker's one-statement transactions (claim, ack): with
    ``pg_worker_synchronous_commit=off`` it sets ``synchronous_commit`` off for that
    transaction only (``set_config(..., true)``, evaluated once as an InitPlan), so its
    commit returns without waiting for the WAL flush: ~0.1 ms of every claim on the path
    from enqueue to handler start. The session's setting, and with it every producer's
    commit on the same pooled connection, stays as it was."""
    if options.pg_worker_synchronous_commit != "off":
        return None
    relax = sa.func.set_config("synchronous_commit", "off", sa.true())
    return sa.select(relax).scalar_subquery().is_not(None)


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


CHANNEL = "runner_jobs"
STOP_CHECK_S = 0.1


def json_rows(with_keys: bool) -> Any:
    """New jobs' rows from text parameters, however many rows: ``payloads``, the
    payloads' JSON texts joined into one JSON array, and (``with_keys``) ``keys``, a JSON
    array of their idempotency keys or nulls; numbered ``n`` in input order. Without
    keys the rows carry none (the common case: one parse, no join).

    Elements of a ``json`` (not ``jsonb``) array come back as the exact text sent, so
    each payload is stored as the producer's canonical JSON. A parameter per column
    cost psycopg ~3 µs a row to dump as arrays; these cost one join in Python.
    """

    def numbered(function: Any, name: str, column: str) -> Any:
        text = sa.cast(sa.bindparam(name, type_=sa.Text()), postgresql.JSON())
        return function(text).table_valued(column, with_ordinality="n").render_derived(name=name)

    payloads = numbered(sa.func.json_array_elements, "payloads", "payload")
    payload = sa.cast(payloads.c.payload, sa.Text()).label("payload")
    if not with_keys:
        rows = sa.select(payload, sa.null().label("idempotency_key"), payloads.c.n)
        return rows.subquery("new_rows")
    keys = numbered(sa.func.json_array_elements_text, "keys", "key")
    return (
        sa.select(payload, keys.c.key.label("idempotency_key"), payloads.c.n)
        .select_from(payloads.join(keys, payloads.c.n == keys.c.n))
        .subquery("new_rows")
    )


def lease_pairs() -> Any:
    """(id, token) rows from two array parameters: one statement text for any count."""
    return (
        sa.func.unnest(
            sa.bindparam("lease_ids", type_=postgresql.ARRAY(sa.BigInteger())),
            sa.bindparam("lease_tokens", type_=postgresql.ARRAY(sa.String())),
        )
        .table_valued("id", "token")
        .render_derived(name="leases")
    )


def lease_pairs_params(pairs: Sequence[tuple[int, str]]) -> dict[str, Any]:
    return {"lease_ids": [i for i, _ in pairs], "lease_tokens": [t for _, t in pairs]}


sequential_ids = False
"""Ids come from a sequence that concurrent inserts share: a bulk insert returns them."""

single_statement_autocommit = True
"""One statement is its own transaction: no BEGIN/COMMIT round trips."""

claim_never_waits = True
"""A claim (no concurrency argument) is one statement that skips locked rows: it never
waits for another transaction, only for the server's answer."""


def begin_single(cursor: Any, info: dict[str, Any], synchronous: str) -> None:
    """Nothing to set up: the connection is in autocommit mode for the statement."""


def begin_raw(cursor: Any, info: dict[str, Any], synchronous: str) -> None:
    """psycopg begins a transaction with the first statement."""


def notify_column(queue: sa.ColumnElement[str]) -> sa.ColumnElement[Any] | None:
    """A NOTIFY sent from the INSERT's RETURNING list: no extra round trip per enqueue."""
    return sa.func.pg_notify(CHANNEL, queue)


def notify(conn: sa.Connection, queues: set[str]) -> None:
    """Announce new jobs; delivered when the enqueue transaction commits (a hint only)."""
    for queue in sorted(queues):
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, queue)))


class Listener:
    """LISTENs for new jobs on a connection of its own, in a thread.

    A notification is only a hint that wakes the worker early; polling stays the truth.
    The listener checks its own connection every ``heartbeat_s``: when it was lost (killed,
    server restarted) it logs one line, reconnects with backoff, and wakes the worker for
    a catch-up fetch, so no notification lost meanwhile leaves a job waiting.
    """

    def __init__(self, url: sa.URL, options: EngineOptions, heartbeat_s: float = 1.0) -> None:
        self.url = url
        self.options = options
        self.heartbeat_s = heartbeat_s

    def _connect(self) -> Any:
        import psycopg

        params = self.url.translate_connect_args(username="user", database="dbname")
        params.update(
            {k: v for k, v in self.url.query.items() if isinstance(v, str)},
        )
        conn = psycopg.connect(
            autocommit=True,
            application_name=self.options.application_name,
            connect_timeout=10,
            **params,
        )
        conn.execute(f"LISTEN {CHANNEL}")  # a constant channel name, not user input
        return conn

    def run(
        self,
        queues: set[str],
        wake: Callable[[], None],
        stop: threading.Event,
        idle: threading.Event | None = None,
    ) -> None:
        """Notifications are pushed: ``idle`` is not needed."""
        conn: Any = None
        delay = 0.1
        last_beat = time.monotonic()
        while not stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                    delay = 0.1
                    wake()  # catch up on anything enqueued while not listening
                # Short waits, so a stopping worker is not held up; the heartbeat query
                # (it notices a dead connection) still runs only every heartbeat_s.
                for note in conn.notifies(timeout=STOP_CHECK_S):
                    if note.payload in queues:
                        wake()
                    if stop.is_set():
                        break
                if time.monotonic() - last_beat >= self.heartbeat_s:
                    conn.execute("SELECT 1")
                    last_beat = time.monotonic()
            except Exception as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                events.emit(
                    log,
                    logging.WARNING,
                    "listen_lost",
                    channel=CHANNEL,
                    retry_in_s=delay,
                    reason=reason or type(exc).__name__,
                )
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

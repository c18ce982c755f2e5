"""Every statement the store runs on the jobs table is answered from an index.

The jobs table keeps finished jobs for days (a million rows is ordinary), so a statement
that reads the whole table is a latent outage. The store's verbs run here against the
real database; every statement they send is recorded on its connection (SQLite's trace
callback, a recording psycopg cursor), then explained by the database itself: no plan
may scan ``runner_jobs``. PostgreSQL plans with ``enable_seqscan`` off, so a sequential
scan is chosen only where no index can answer; SQLite prefers an index whenever one
applies (its partial indexes only when the query repeats the index's predicate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from runner import jobs
from runner.engine.base import DlqFilter, NewJob
from runner.engine.store import SqlStore

Q = "q1"
ERR = jobs.ErrorInfo("Boom", "it broke", "Traceback ...")


class Recorder:
    """The (sql, params) of every statement the store's connections execute."""

    def __init__(self, store: SqlStore) -> None:
        self.statements: list[tuple[str, Any]] = []
        sa.event.listen(store.engine, "connect", self._on_connect)
        store.engine.dispose()  # every connection from now on is a recorded one

    def _on_connect(self, dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, psycopg.Connection):
            statements = self.statements

            class RecordingCursor(psycopg.Cursor[Any]):
                def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
                    statements.append((str(query), params))
                    return super().execute(query, params, **kw)

                def executemany(self, query: Any, params_seq: Any, **kw: Any) -> Any:
                    rows = list(params_seq)
                    if rows:
                        statements.append((str(query), rows[0]))
                    return super().executemany(query, rows, **kw)

            dbapi_conn.cursor_factory = RecordingCursor
        else:
            dbapi_conn.set_trace_callback(lambda sql: self.statements.append((sql, None)))

    def on_jobs(self) -> list[tuple[str, Any]]:
        skip = ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT", "RELEASE")
        return [
            (sql, params)
            for sql, params in self.statements
            if "runner_jobs" in sql and not sql.lstrip().upper().startswith(skip)
        ]


def sqlite_scans(store: SqlStore, sql: str) -> list[str]:
    with store.engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    return [step for step in plan if re.match(r"SCAN runner_jobs\b(?! USING)", step)]


def postgres_scans(url: str, sql: str, params: Any) -> list[str]:
    dsn = sa.make_url(url).set(drivername="postgresql")
    options = dict(dsn.query).get("options", "")
    conninfo = dsn.set(query={}).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, options=f"{options} -cenable_seqscan=off") as conn:
        row = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
    assert row is not None
    plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    scans: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == "runner_jobs":
            scans.append(f"Seq Scan on runner_jobs filter {node.get('Filter')}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return scans


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore(db_url)
    s.migrate()
    s.ensure_queues([Q])
    yield s
    s.dispose()


def new(n: int, key: str | None = None) -> list[NewJob]:
    return [NewJob(Q, "t.x", '{"n": 1}', 0, 3, 1, key) for _ in range(n)]


def every_verb(store: SqlStore) -> None:
    """Each verb that touches the jobs table, on the paths a worker and an operator use."""
    store.enqueue(new(1), max_depth=None, dedupe=True)
    store.enqueue(new(1), max_depth=100, dedupe=True)
    store.enqueue(new(6), max_depth=100, dedupe=True)
    store.enqueue(new(1, "k1"), max_depth=None, dedupe=True)
    store.enqueue(new(2, "k1"), max_depth=None, dedupe=True)  # the pending key again
    claimed = store.claim(Q, limit=5, concurrency=None, lease_s=30, worker="w").jobs
    claimed += store.claim(Q, limit=5, concurrency=4, lease_s=30, worker="w").jobs
    assert len(claimed) >= 5
    store.extend_leases([(j.id, j.lease_token) for j in claimed], 30)
    first, second, third, fourth = claimed[:4]
    keyed = next((j for j in claimed if j.idempotency_key), claimed[4])
    store.ack_many(
        [(first.id, first.lease_token, None), (keyed.id, keyed.lease_token, keyed.idempotency_key)]
    )
    store.retry(second.id, second.lease_token, ERR, 0.0)
    store.dead_letter(third.id, third.lease_token, ERR, "ops")
    store.release_many([(fourth.id, fourth.lease_token)])
    store.reap({Q: "ops"})
    store.pending([Q])
    store.stats([Q], 300)
    store.prune([Q], done_before_s=0, keys_before_s=0)
    everything = DlqFilter(queues=[Q], types=["t.x"], ids=[], error_type="Boom", limit=10)
    store.dlq_list(everything)
    store.dlq_replay(everything, operator="test")
    store.dead_letter(fourth.id, fourth.lease_token, ERR, "ops")
    store.dlq_purge(DlqFilter(queues=[Q], older_than_s=0), operator="test")


def test_no_statement_scans_the_jobs_table(store: SqlStore, db_url: str) -> None:
    recorder = Recorder(store)
    every_verb(store)
    statements = recorder.on_jobs()
    assert len(statements) >= 25, statements  # the recording saw the verbs run
    scans = {}
    for sql, params in statements:
        if store.engine.dialect.name == "sqlite":
            found = sqlite_scans(store, sql)
        else:
            found = postgres_scans(db_url, sql, params)
        if found:
            scans[sql] = found
    assert not scans, json.dumps(scans, indent=1)

"""The least SQL a durable queue can do on this machine: the limit to approach.

One Python thread on the plain driver (sqlite3, psycopg), a bare table (id, payload,
state) with a partial index on queued rows, no validation, no leases, no retries:

- enqueue single: one INSERT per transaction;
- enqueue bulk: 1,000 rows per transaction (executemany on SQLite, COPY on PostgreSQL);
- drain, k = 1 and k = 100 jobs per round: one transaction leases k jobs (UPDATE ...
  SET state = 'running' WHERE id IN (SELECT id ... LIMIT k [FOR UPDATE SKIP LOCKED])
  RETURNING id, payload), each payload is decoded and a no-op called, and a second
  transaction marks them done: the two commits at-least-once delivery needs.

Beside them, the handler-threads ceiling: the benchmark's handler alone on 1 and on 4
threads (`handler_threads`), what a drain with that many handler threads could reach.

SQLite runs in WAL mode; enqueues commit with synchronous=FULL (an accepted job survives
a power loss, as runner's default) and the drain with NORMAL (as runner's workers, and
the issue's figures). PostgreSQL runs with its defaults. Runner's figures are compared
with these in the same run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import workload

BULK = 1000
PAYLOAD = '{"n": 1}'
SCHEMA = (
    "CREATE TABLE raw_jobs (id {pk}, payload TEXT NOT NULL, state TEXT NOT NULL)",
    "CREATE INDEX raw_jobs_queued ON raw_jobs (id) WHERE state = 'queued'",
)


_SQLITE_INSERT = "INSERT INTO raw_jobs (payload, state) VALUES (?, 'queued')"
_PG_INSERT = "INSERT INTO raw_jobs (payload, state) VALUES (%s, 'queued')"
_PG_COPY = "COPY raw_jobs (payload, state) FROM STDIN"


def _sqlite_one(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(_SQLITE_INSERT, (PAYLOAD,))
    conn.execute("COMMIT")


def _sqlite_bulk(conn: sqlite3.Connection, count: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(_SQLITE_INSERT, [(PAYLOAD,)] * count)
    conn.execute("COMMIT")


def _pg_one(conn: psycopg.Connection[Any]) -> None:
    conn.execute(_PG_INSERT, (PAYLOAD,))
    conn.commit()


def _pg_bulk(conn: psycopg.Connection[Any], count: int) -> None:
    with conn.cursor().copy(_PG_COPY) as copy:
        for _ in range(count):
            copy.write_row((PAYLOAD, "queued"))
    conn.commit()


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for stmt in SCHEMA:
        conn.execute(stmt.format(pk="INTEGER PRIMARY KEY"))
    return conn


def _pg_connect(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn)
    for stmt in SCHEMA:
        conn.execute(stmt.format(pk="BIGSERIAL PRIMARY KEY"))
    conn.commit()
    return conn


@contextlib.contextmanager
def raw_enqueues(backend: str, root: Path, pg_url: str) -> Iterator[workload.Enqueuer]:
    """The raw limit's two enqueues, as a yardstick measured right beside a system's own
    (``workload.enqueue_rates``): the machine's speed drifts over a run, and a ratio of
    two rates measured minutes apart carries the drift; one measured in alternation does
    not. On its own SQLite file in ``root``, or its own PostgreSQL database."""
    if backend == "sqlite":
        root.mkdir(parents=True, exist_ok=True)
        lite = _sqlite_connect(root / "yardstick.db")

        def empty() -> None:
            lite.execute("DELETE FROM raw_jobs")

        try:
            yield workload.Enqueuer(
                lambda n: _sqlite_one(lite), lambda numbers: _sqlite_bulk(lite, len(numbers)), empty
            )
        finally:
            lite.close()
        return
    url, drop = workload.postgres_database(pg_url)
    try:
        with _pg_connect(workload.libpq_dsn(url)) as conn:

            def reset() -> None:
                conn.execute("DELETE FROM raw_jobs")
                conn.commit()

            yield workload.Enqueuer(
                lambda n: _pg_one(conn), lambda numbers: _pg_bulk(conn, len(numbers)), reset
            )
    finally:
        drop()


def _noop(payload: object) -> None:
    """The handler."""


def _run(leased: list[Any]) -> None:
    for _, payload in leased:
        _noop(json.loads(payload))


def _rate(n: int, fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def _sqlite(path: Path, jobs: int, single: int) -> dict[str, float]:
    conn = _sqlite_connect(path)

    def one_by_one() -> None:
        for _ in range(single):
            _sqlite_one(conn)

    def bulk() -> None:
        for first in range(0, jobs, BULK):
            _sqlite_bulk(conn, min(BULK, jobs - first))

    def drain(k: int) -> Callable[[], None]:
        def run() -> None:
            while True:
                conn.execute("BEGIN IMMEDIATE")
                got = conn.execute(
                    "UPDATE raw_jobs SET state = 'running' WHERE id IN (SELECT id FROM raw_jobs "
                    "WHERE state = 'queued' ORDER BY id LIMIT ?) RETURNING id, payload",
                    (k,),
                ).fetchall()
                conn.execute("COMMIT")
                if not got:
                    return
                _run(got)
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "UPDATE raw_jobs SET state = 'done' WHERE id = ?", [(i,) for i, _ in got]
                )
                conn.execute("COMMIT")

        return run

    result = {"enqueue_single_jobs_s": _rate(single, one_by_one)}
    result["enqueue_bulk_jobs_s"] = _rate(jobs, bulk)
    conn.execute("PRAGMA synchronous=NORMAL")
    result["drain_batch_jobs_s"] = _rate(jobs + single, drain(100))
    conn.execute("UPDATE raw_jobs SET state = 'queued'")
    result["drain_one_jobs_s"] = _rate(jobs + single, drain(1))
    conn.close()
    return result


def _postgres(dsn: str, jobs: int, single: int) -> dict[str, float]:
    conn = _pg_connect(dsn)

    def one_by_one() -> None:
        for _ in range(single):
            _pg_one(conn)

    def bulk() -> None:
        for first in range(0, jobs, BULK):
            _pg_bulk(conn, min(BULK, jobs - first))

    def drain(k: int) -> Callable[[], None]:
        def run() -> None:
            while True:
                got = conn.execute(
                    "UPDATE raw_jobs SET state = 'running' WHERE id IN (SELECT id FROM raw_jobs "
                    "WHERE state = 'queued' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
                    "RETURNING id, payload",
                    (k,),
                ).fetchall()
                conn.commit()
                if not got:
                    return
                _run(got)
                conn.execute(
                    "UPDATE raw_jobs SET state = 'done' WHERE id = ANY(%s)", ([i for i, _ in got],)
                )
                conn.commit()

        return run

    result = {"enqueue_single_jobs_s": _rate(single, one_by_one)}
    result["enqueue_bulk_jobs_s"] = _rate(jobs, bulk)
    conn.execute("ANALYZE raw_jobs")
    conn.commit()
    result["drain_batch_jobs_s"] = _rate(jobs + single, drain(100))
    conn.execute("UPDATE raw_jobs SET state = 'queued'")
    conn.commit()
    result["drain_one_jobs_s"] = _rate(jobs + single, drain(1))
    conn.close()
    return result


def handler_threads(folder: Path, jobs: int, threads: int) -> float:
    """The benchmark's handler alone (append `n started enqueued` to a file, as every
    system's handler does), run `jobs` times over `threads` threads and nothing else:
    the ceiling of a drain with that many handler threads in one CPython process (each
    file call releases the GIL, and every release with a waiter hands it over)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "handler.log"

    def handler(n: int) -> None:
        with open(log, "a") as fh:
            fh.write(f"{n} {time.time()!r} {0.0!r}\n")

    def run() -> None:
        for n in range(jobs // threads):
            handler(n)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rate = (jobs // threads) * threads / (time.perf_counter() - started)
    log.unlink()
    return rate


def bench_limit(backend: str, root: Path, args: Any) -> dict[str, Any]:
    """The raw-SQL limits on one backend (its own SQLite file or PostgreSQL database),
    and the handler-threads ceiling (the same on both)."""
    jobs, single = args.jobs, args.single
    if backend == "sqlite":
        root.mkdir(parents=True, exist_ok=True)
        figures = _sqlite(root / "limit.db", jobs, single)
    else:
        url, drop = workload.postgres_database(args.pg_url)
        try:
            figures = _postgres(workload.libpq_dsn(url), jobs, single)
        finally:
            drop()
    for threads in (1, 4):
        key = f"handler_{threads}_thread{'s' if threads > 1 else ''}_jobs_s"
        figures[key] = handler_threads(root / "handler", jobs, threads)
    return {"system": "raw-sql", "backend": backend, "measure": "limit", "jobs": jobs, **figures}

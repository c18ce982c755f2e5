"""Producers on many threads: every enqueue lands once, and (SQLite) each thread's own
connection neither exhausts the pool, outlives its thread, nor crosses a fork."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.engine import tables
from runner.engine.base import EngineOptions, NewJob
from runner.engine.store import SqlStore

Q = "q1"
THREADS = 12
PER_THREAD = 40


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore(db_url, EngineOptions(pool_size=2))  # fewer than the producer threads
    s.migrate()
    s.ensure_queues([Q])
    yield s
    s.dispose()


def one(n: int) -> list[NewJob]:
    return [NewJob(Q, "t.x", f'{{"n": {n}}}', 0, 3, 1, None)]


def enqueue_from_threads(
    store: SqlStore, threads: int, per_thread: int, while_alive: Callable[[], None] = lambda: None
) -> list[int]:
    """Enqueue from `threads` threads at once; `while_alive` runs when all have enqueued
    and none has ended yet."""
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)
    done = threading.Barrier(threads + 1)
    release = threading.Event()

    def produce(t: int) -> None:
        try:
            start.wait(10)
            for i in range(per_thread):
                (job_id,) = store.enqueue(one(t * 1000 + i), max_depth=None, dedupe=True)
                with lock:
                    ids.append(job_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            done.wait(60)
            release.wait(60)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    done.wait(60)
    try:
        while_alive()
    finally:
        release.set()
        for w in workers:
            w.join(60)
    assert not errors, errors
    return ids


def payloads_in_table(store: SqlStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.scalars(sa.select(tables.jobs.c.payload)))


def test_more_producer_threads_than_pooled_connections_all_land_once(store: SqlStore) -> None:
    ids = enqueue_from_threads(store, THREADS, PER_THREAD)
    assert len(ids) == len(set(ids)) == THREADS * PER_THREAD
    payloads = payloads_in_table(store)
    assert len(payloads) == len(set(payloads)) == THREADS * PER_THREAD


def open_handles(path: Path) -> int:
    """File descriptors of this process open on the database file."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_sqlite_a_producer_threads_connection_closes_when_the_thread_ends(
    tmp_path: Path,
) -> None:
    path = tmp_path / "producers.db"
    store = SqlStore(f"sqlite:///{path}", EngineOptions(pool_size=2))
    store.migrate()
    store.ensure_queues([Q])
    before = open_handles(path)
    alive: list[int] = []
    enqueue_from_threads(store, THREADS, 5, lambda: alive.append(open_handles(path)))
    assert alive[0] >= THREADS  # each producer thread held a connection of its own
    gc.collect()
    assert open_handles(path) <= before  # and none outlived its thread
    assert len(payloads_in_table(store)) == THREADS * 5
    store.dispose()
    assert open_handles(path) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sqlite_a_forked_child_opens_its_own_connection_and_the_parents_stays_usable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fork.db"
    store = SqlStore(f"sqlite:///{path}")
    store.migrate()
    store.ensure_queues([Q])
    store.enqueue(one(1), max_depth=None, dedupe=True)  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: enqueue on a connection of its own, then leave at once
        code = 1
        try:
            store.enqueue(one(2), max_depth=None, dedupe=True)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.enqueue(one(3), max_depth=None, dedupe=True)
    assert sorted(payloads_in_table(store)) == ['{"n": 1}', '{"n": 2}', '{"n": 3}']
    store.dispose()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_producer_commits_stay_durable_after_relaxed_worker_commits(store: SqlStore) -> None:
    """Worker transactions skip the flush (SQLite synchronous=NORMAL, PostgreSQL
    synchronous_commit off for that transaction only); an enqueue afterwards, on whatever
    connection it gets, still waits for it."""
    store.enqueue(one(1), max_depth=None, dedupe=True)
    for _ in range(3):  # every pooled connection has run a worker transaction
        claimed = store.claim(Q, limit=5, concurrency=None, lease_s=30, worker="w").jobs
        store.ack_many([(c.id, c.lease_token, None) for c in claimed])
        store.enqueue(one(2), max_depth=None, dedupe=True)
    durable: list[object] = []

    def produce() -> None:  # a new producer thread: on SQLite, its own connection
        store.enqueue(one(3), max_depth=None, dedupe=True)
        if store.engine.dialect.name == "sqlite":
            assert store._producers is not None
            driver = store._producers._held().driver
            durable.append(driver.execute("PRAGMA synchronous").fetchone()[0])

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join(30)
    if store.engine.dialect.name == "sqlite":
        assert durable == [2]  # FULL
    else:
        with store.engine.connect() as conn:  # the pool's connections, after the claims
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_postgres_claim_commits_without_waiting_for_the_flush_in_its_own_transaction_only(
    pg_url: str,
) -> None:
    store = SqlStore(pg_url, EngineOptions(pool_size=1))
    store.migrate()
    store.ensure_queues([Q])
    store.enqueue(one(1), max_depth=None, dedupe=True)
    with store.engine.connect() as conn:
        with conn.begin():
            values = {
                "claim_queue": Q,
                "claim_limit": 1,
                "claim_token": "t",
                "claim_lease_s": 30.0,
                "claim_worker": "w",
            }
            claimed = conn.exec_driver_sql(store._claim.sql, store._claim.params(values)).all()
            assert len(claimed) == 1
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    store.dispose()

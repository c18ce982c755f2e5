"""The engine contract, run on SQLite and PostgreSQL: every verb against the real database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from runner import jobs
from runner.engine import migrations, tables
from runner.engine.base import DlqFilter, NewJob, QueueFullError, Slots, fair_shares
from runner.engine.store import SqlStore

Q = "q1"
ERR = jobs.ErrorInfo("Boom", "it broke", "Traceback ...")


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = SqlStore(db_url)
    s.migrate()
    s.ensure_queues([Q, "q2"])
    yield s
    s.dispose()


def new(
    n: int = 1, *, key: str | None = None, queue: str = Q, max_attempts: int = 3, priority: int = 0
) -> list[NewJob]:
    return [NewJob(queue, "t.x", f'{{"n": {i}}}', priority, max_attempts, 1, key) for i in range(n)]


def state_of(store: SqlStore, job_id: int) -> str:
    with store.engine.connect() as conn:
        return str(conn.scalar(sa.select(tables.jobs.c.state).where(tables.jobs.c.id == job_id)))


def claim(
    store: SqlStore, limit: int = 10, concurrency: int = 10, lease_s: float = 30.0, queue: str = Q
):
    return store.claim(queue, limit=limit, concurrency=concurrency, lease_s=lease_s, worker="w")


def test_migrate_is_idempotent(store: SqlStore) -> None:
    assert store.migrate() == store.migrate() == migrations.LATEST


def job_indexes(store: SqlStore) -> set[str]:
    with store.engine.connect() as conn:
        return {str(ix["name"]) for ix in sa.inspect(conn).get_indexes("runner_jobs")}


def test_v5_replaces_the_full_indexes_of_a_v4_database_and_keeps_its_jobs(
    store: SqlStore,
) -> None:
    """A database made by a v4 runner had full key and finished indexes; v5 swaps them
    for partial ones and the pending-key rule still holds on the jobs it already had."""
    (pending,) = store.enqueue(new(1, key="k"), max_depth=None, dedupe=True)
    replaced = job_indexes(store) - {"ix_runner_jobs_ready", "ix_runner_jobs_running"}
    with store.engine.begin() as conn:
        for name in sorted(replaced):
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql(
            "CREATE UNIQUE INDEX uq_runner_jobs_pending_key ON runner_jobs (idempotency_key) "
            "WHERE state IN ('queued', 'running')"
        )
        conn.exec_driver_sql(
            "CREATE INDEX ix_runner_jobs_finished ON runner_jobs (queue, state, finished_at)"
        )
        conn.execute(sa.update(tables.schema_version).values(version=4))
    assert store.migrate() == migrations.LATEST
    assert job_indexes(store) == {
        "ix_runner_jobs_ready",
        "ix_runner_jobs_running",
        "uq_runner_jobs_keyed_pending",
        "ix_runner_jobs_succeeded",
        "ix_runner_jobs_dead",
    }
    assert store.enqueue(new(1, key="k"), max_depth=None, dedupe=True) == [pending]
    with store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.insert(tables.jobs).values(**inserted_row(key="k")))


def test_v6_sets_autovacuum_of_the_jobs_table_on_postgres_and_changes_nothing_on_sqlite(
    store: SqlStore,
) -> None:
    """A v5 database keeps its jobs; on PostgreSQL the jobs table gets its own autovacuum
    thresholds, on SQLite the schema stays as it was."""
    (job,) = store.enqueue(new(1), max_depth=None, dedupe=True)
    postgres = store.engine.dialect.name == "postgresql"
    reloptions = "SELECT reloptions FROM pg_class WHERE oid = 'runner_jobs'::regclass"
    schema = "SELECT name, sql FROM sqlite_master ORDER BY name"
    with store.engine.begin() as conn:
        if postgres:
            conn.exec_driver_sql(
                "ALTER TABLE runner_jobs RESET (" + ", ".join(migrations.JOBS_AUTOVACUUM) + ")"
            )
            assert conn.exec_driver_sql(reloptions).scalar() is None
        else:
            before = conn.exec_driver_sql(schema).all()
        conn.execute(sa.update(tables.schema_version).values(version=5))
    assert store.migrate() == migrations.LATEST
    with store.engine.connect() as conn:
        if postgres:
            options = dict(o.split("=") for o in conn.exec_driver_sql(reloptions).scalar())
            assert options == migrations.JOBS_AUTOVACUUM
        else:
            assert conn.exec_driver_sql(schema).all() == before
    assert state_of(store, job) == "queued"


def inserted_row(key: str) -> dict[str, object]:
    return dict(
        queue=Q,
        type="t.x",
        state="queued",
        payload="{}",
        max_attempts=3,
        idempotency_key=key,
        enqueued_at=0.0,
        run_at=0.0,
    )


def test_enqueue_claim_ack_counts_the_attempt_at_claim(store: SqlStore) -> None:
    (job_id,) = store.enqueue(new(), max_depth=None, dedupe=True)
    result = claim(store)
    assert [c.id for c in result.jobs] == [job_id]
    assert result.jobs[0].attempt == 1
    assert state_of(store, job_id) == "running"
    assert claim(store).jobs == []  # leased: nobody else gets it
    assert store.ack(job_id, result.jobs[0].lease_token, None)
    assert state_of(store, job_id) == "succeeded"
    assert not store.ack(job_id, result.jobs[0].lease_token, None)  # no double ack


def test_enqueue_many_returns_ids_in_order(store: SqlStore) -> None:
    ids = store.enqueue(new(250), max_depth=None, dedupe=True)
    assert len(ids) == 250 and ids == sorted(ids) and len(set(ids)) == 250


@pytest.mark.parametrize("with_keys", [False, True], ids=["no-keys", "keys"])
def test_a_mixed_bulk_enqueue_stores_each_row_as_given_under_its_own_id(
    store: SqlStore, with_keys: bool
) -> None:
    """Rows of different queues, types and priorities interleaved, keys kept without
    dedupe, payload text with escapes and non-ASCII: every id holds its own row."""
    texts = ['{"s":"é\\"x\\u0000","i":%d}', '{"n":1e+20,"i":%d}', '{"a":[1,{"b":null}],"i":%d}']
    rows = [  # two kinds of job, interleaved: odd rows are one, even rows the other
        NewJob(
            Q if i % 2 else "q2",
            f"t.{i % 2}",
            texts[i % len(texts)] % i,
            i % 2,
            3 + i % 2,
            1 + i % 2,
            f"k{i}" if with_keys and i % 3 == 0 else None,
        )
        for i in range(60)
    ]
    assert_each_id_holds_its_row(store, rows, in_table=60)


def assert_each_id_holds_its_row(store: SqlStore, rows: list[NewJob], *, in_table: int) -> None:
    """Bulk-enqueue ``rows`` (keys kept, no dedupe) and check that the id given for each
    names a row holding exactly it, and that the table then holds ``in_table`` jobs."""
    ids = store.enqueue(rows, max_depth=None, dedupe=False)
    J = tables.jobs
    cols = [J.c.id, J.c.queue, J.c.type, J.c.payload, J.c.priority, J.c.max_attempts]
    cols += [J.c.schema_version, J.c.idempotency_key]
    with store.engine.connect() as conn:
        stored = {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(*cols))}
    assert len(stored) == in_table and len(set(ids)) == len(rows)
    assert [stored[i] for i in ids] == [tuple(r) for r in rows]


def test_bulk_ids_are_right_after_the_newest_jobs_were_pruned(store: SqlStore) -> None:
    """SQLite counts a bulk insert's ids from the largest id: pruning the newest jobs
    lowers it, and the next batch's ids still name its own rows."""
    store.enqueue(new(20), max_depth=None, dedupe=False)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(tables.jobs).where(tables.jobs.c.id > 10))
    rows = [job._replace(payload_json=f'{{"m":{i}}}') for i, job in enumerate(new(30))]
    assert_each_id_holds_its_row(store, rows, in_table=40)


def test_bulk_ids_are_right_at_the_end_of_the_id_range(store: SqlStore) -> None:
    """Near the largest possible id SQLite picks new ids at random: a batch there goes in
    row by row, and every id still names its own row (PostgreSQL: its sequence is not
    concerned, the same holds)."""
    top = 2**63 - 1 - 10
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(tables.jobs).values(
                id=top, queue=Q, type="t.x", state="queued", payload="{}", max_attempts=1,
                enqueued_at=0.0, run_at=0.0,
            )
        )  # fmt: skip
    rows = [job._replace(payload_json=f'{{"m":{i}}}') for i, job in enumerate(new(60))]
    assert_each_id_holds_its_row(store, rows, in_table=61)


def test_priority_then_fifo(store: SqlStore) -> None:
    low = store.enqueue(new(2), max_depth=None, dedupe=True)
    high = store.enqueue(new(1, priority=5), max_depth=None, dedupe=True)
    order = [claim(store, limit=1).jobs[0].id for _ in range(3)]
    assert order == [high[0], low[0], low[1]]


def test_concurrency_limit_counts_live_leases(store: SqlStore) -> None:
    store.enqueue(new(10), max_depth=None, dedupe=True)
    assert len(claim(store, limit=10, concurrency=3).jobs) == 3
    assert claim(store, limit=10, concurrency=3).jobs == []


def test_stale_lease_token_cannot_ack_or_fail(store: SqlStore) -> None:
    (job_id,) = store.enqueue(new(), max_depth=None, dedupe=True)
    first = claim(store, lease_s=0.2).jobs[0]
    time.sleep(0.35)
    reaped = store.reap({Q: "owner"})
    assert [r.id for r in reaped] == [job_id] and not reaped[0].dead
    second = claim(store).jobs[0]
    assert second.id == job_id and second.attempt == 2
    assert second.lease_token != first.lease_token
    assert not store.ack(job_id, first.lease_token, None)
    assert not store.retry(job_id, first.lease_token, ERR, 0)
    assert not store.dead_letter(job_id, first.lease_token, ERR, "o")
    assert state_of(store, job_id) == "running"
    assert store.ack(job_id, second.lease_token, None)
    assert state_of(store, job_id) == "succeeded"


def test_expired_lease_out_of_attempts_is_dead_lettered(store: SqlStore) -> None:
    (job_id,) = store.enqueue(new(max_attempts=1), max_depth=None, dedupe=True)
    claim(store, lease_s=0.1)
    time.sleep(0.25)
    reaped = store.reap({Q: "team-a"})
    assert reaped[0].dead
    dead = store.dlq_list(DlqFilter(queues=[Q]))
    assert [d.id for d in dead] == [job_id]
    assert dead[0].owner == "team-a"
    assert dead[0].errors[0].type == "LeaseExpired"


def test_retry_delays_the_job_and_keeps_the_error(store: SqlStore) -> None:
    (job_id,) = store.enqueue(new(), max_depth=None, dedupe=True)
    c = claim(store).jobs[0]
    assert store.retry(job_id, c.lease_token, ERR, 0.4)
    assert claim(store).jobs == []  # scheduled, not ready
    stats = store.stats([Q], 300)[Q]
    assert (stats.ready, stats.scheduled, stats.in_flight) == (0, 1, 0)
    time.sleep(0.5)
    again = claim(store).jobs[0]
    assert again.id == job_id and again.attempt == 2
    assert store.dead_letter(job_id, again.lease_token, ERR, "team")
    (dead,) = store.dlq_list(DlqFilter(queues=[Q]))
    assert dead.attempts == 2
    assert [e.attempt for e in dead.errors] == [1, 2]
    assert dead.errors[0].type == "Boom" and dead.errors[0].traceback == "Traceback ..."
    assert dead.last_error == "Boom: it broke"


def test_release_refunds_the_attempt(store: SqlStore) -> None:
    (job_id,) = store.enqueue(new(), max_depth=None, dedupe=True)
    c = claim(store).jobs[0]
    assert store.release(job_id, c.lease_token)
    again = claim(store).jobs[0]
    assert again.attempt == 1


def test_idempotency_key_done_is_acked_without_running(store: SqlStore) -> None:
    (first,) = store.enqueue(new(key="k1"), max_depth=None, dedupe=True)
    c = claim(store).jobs[0]
    assert store.ack(first, c.lease_token, "k1")
    (second,) = store.enqueue(new(key="k1"), max_depth=None, dedupe=True)
    assert second != first
    result = claim(store)
    assert result.jobs == [] and [d.id for d in result.duplicates] == [second]
    assert state_of(store, second) == "succeeded"


def test_pending_key_is_deduplicated_at_enqueue(store: SqlStore) -> None:
    a = store.enqueue(new(key="k2"), max_depth=None, dedupe=True)
    b = store.enqueue(new(key="k2") + new(key="k3") + new(key="k2"), max_depth=None, dedupe=True)
    assert b[0] == a[0] and b[2] == a[0] and b[1] != a[0]
    c = claim(store).jobs
    assert len(c) == 2


def test_failure_releases_the_key(store: SqlStore) -> None:
    (job_id,) = store.enqueue(new(key="k4", max_attempts=1), max_depth=None, dedupe=True)
    c = claim(store).jobs[0]
    assert store.dead_letter(job_id, c.lease_token, ERR, "o")
    (again,) = store.enqueue(new(key="k4"), max_depth=None, dedupe=True)
    assert again != job_id
    assert [j.id for j in claim(store).jobs] == [again]


def test_backpressure_refuses_at_max_depth_all_or_nothing(store: SqlStore) -> None:
    store.enqueue(new(3), max_depth=4, dedupe=True)
    with pytest.raises(QueueFullError) as info:
        store.enqueue(new(2), max_depth=4, dedupe=True)
    assert info.value.depth == 3
    assert store.stats([Q], 300)[Q].ready == 3
    store.enqueue(new(1), max_depth=4, dedupe=True)
    with pytest.raises(QueueFullError):
        store.enqueue(new(1), max_depth=4, dedupe=True)


def test_dlq_replay_resets_attempts_and_purge_deletes(store: SqlStore) -> None:
    ids = store.enqueue(new(3, max_attempts=1), max_depth=None, dedupe=True)
    for c in claim(store).jobs:
        assert store.dead_letter(c.id, c.lease_token, ERR, "o")
    everything = DlqFilter(queues=[Q])
    assert len(store.dlq_list(everything)) == 3
    result = store.dlq_replay(DlqFilter(queues=[Q], ids=[ids[0]]), operator="test")
    assert result.replayed == [ids[0]]
    replayed = claim(store).jobs
    assert [(c.id, c.attempt) for c in replayed] == [(ids[0], 1)]
    assert store.dlq_purge(DlqFilter(queues=[Q], ids=[ids[1]]), operator="test") == 1
    assert [d.id for d in store.dlq_list(everything)] == [ids[2]]
    assert store.get_job(ids[1]) is None
    assert store.dlq_purge(everything, operator="test") == 1


def test_dlq_filters_by_type_error_and_queue(store: SqlStore) -> None:
    a = store.enqueue(new(1, max_attempts=1), max_depth=None, dedupe=True)[0]
    b = store.enqueue(new(1, max_attempts=1, queue="q2"), max_depth=None, dedupe=True)[0]
    ca = claim(store).jobs[0]
    cb = claim(store, queue="q2").jobs[0]
    store.dead_letter(a, ca.lease_token, ERR, "o")
    store.dead_letter(b, cb.lease_token, jobs.ErrorInfo("Other", "x"), "o")
    assert [d.id for d in store.dlq_list(DlqFilter(queues=[Q, "q2"], error_type="Other"))] == [b]
    assert [d.id for d in store.dlq_list(DlqFilter(queues=["q2"]))] == [b]
    assert store.dlq_list(DlqFilter(queues=[Q], older_than_s=3600)) == []


def test_stats_counts_states_rates_and_p95(store: SqlStore) -> None:
    store.enqueue(new(4), max_depth=None, dedupe=True)
    got = claim(store, limit=3).jobs
    store.ack(got[0].id, got[0].lease_token, None)
    store.retry(got[1].id, got[1].lease_token, ERR, 60)
    s = store.stats([Q, "q2"], 300)
    assert (s[Q].ready, s[Q].scheduled, s[Q].in_flight, s[Q].done, s[Q].dead) == (1, 1, 1, 1, 0)
    assert s[Q].failure_rate == pytest.approx(0.5)
    assert s[Q].p95_s is not None and s[Q].p95_s >= 0
    assert s[Q].oldest_ready_age_s is not None
    assert s["q2"].failure_rate is None and s["q2"].p95_s is None


def test_extend_leases_reports_lost_ones(store: SqlStore) -> None:
    store.enqueue(new(2), max_depth=None, dedupe=True)
    a, b = claim(store, lease_s=0.2).jobs
    assert store.extend_leases([(a.id, a.lease_token), (b.id, "not-the-token")], 30) == {b.id}
    time.sleep(0.3)
    reaped = store.reap({Q: "o"})
    assert [r.id for r in reaped] == [b.id]  # a was renewed, b expired


def test_prune_removes_old_succeeded_jobs(store: SqlStore) -> None:
    store.enqueue(new(3), max_depth=None, dedupe=True)
    for c in claim(store).jobs:
        store.ack(c.id, c.lease_token, f"key{c.id}")
    assert store.prune([Q], done_before_s=3600, keys_before_s=3600) == 0
    time.sleep(0.05)
    assert store.prune([Q], done_before_s=0, keys_before_s=0) == 3
    assert store.stats([Q], 300)[Q].done == 0


def test_concurrent_claimers_never_share_a_job_or_exceed_the_limit(store: SqlStore) -> None:
    total = 200
    store.enqueue(new(total), max_depth=None, dedupe=True)
    seen: list[int] = []
    peak = [0]
    lock = threading.Lock()
    running = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                got = store.claim(Q, limit=2, concurrency=4, lease_s=30, worker="w").jobs
                if not got:
                    if store.pending([Q]) == 0:
                        return
                    time.sleep(0.005)
                    continue
                with lock:
                    running[0] += len(got)
                    peak[0] = max(peak[0], running[0])
                    seen.extend(c.id for c in got)
                for c in got:
                    with lock:
                        running[0] -= 1
                    assert store.ack(c.id, c.lease_token, None)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(seen) == total and len(set(seen)) == total
    assert store.stats([Q], 300)[Q].done == total


def slots(store: SqlStore, worker: str, *, executing: int = 0, wanted: int = 4, ttl: float = 30):
    return store.acquire_slots(
        Q, worker, wanted=wanted, executing=executing, concurrency=4, ttl_s=ttl
    )


def recorded(store: SqlStore) -> dict[str, int]:
    S = tables.slots
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(S.c.worker, S.c.held).where(S.c.queue == Q)).all()
    return {r.worker: int(r.held) for r in rows}


def test_slots_are_shared_fairly_and_never_sum_above_the_concurrency(store: SqlStore) -> None:
    assert slots(store, "a") == Slots(held=4, share=4)  # alone: all of it
    assert slots(store, "b") == Slots(held=0, share=2)  # a still holds everything
    # a renews while 3 of its handlers still run: its share is 2, its row keeps 3
    assert slots(store, "a", executing=3) == Slots(held=2, share=2)
    assert recorded(store) == {"a": 3, "b": 0}
    assert slots(store, "b") == Slots(held=1, share=2)
    assert slots(store, "a", executing=1) == Slots(held=2, share=2)
    assert slots(store, "b") == Slots(held=2, share=2)
    assert sum(recorded(store).values()) == 4
    # a stopping worker wants only what it still runs; the other takes the rest
    assert slots(store, "a", wanted=0) == Slots(held=0, share=0)
    assert slots(store, "b") == Slots(held=4, share=4)
    store.release_slots("b", [Q])
    assert recorded(store) == {"a": 0}


def test_slots_of_a_worker_that_stopped_renewing_expire(store: SqlStore) -> None:
    assert slots(store, "dead", ttl=0.2).held == 4
    assert slots(store, "alive").held == 0
    time.sleep(0.35)
    assert slots(store, "alive").held == 4
    assert recorded(store) == {"alive": 4}


def test_concurrent_slot_takers_never_hold_more_than_the_concurrency(store: SqlStore) -> None:
    """Eight threads renew as fast as they can; every recorded total stays within 4.

    When they stop, the split is whatever the last renewals left: a worker that renewed
    while another still held the slot it is owed gets it at its next renewal. Two quiet
    rounds of renewals later every worker holds exactly its fair share.
    """
    stop = time.monotonic() + 2.0
    totals: list[int] = []
    errors: list[BaseException] = []

    def taker(name: str) -> None:
        try:
            while time.monotonic() < stop:
                slots(store, name)
                totals.append(sum(recorded(store).values()))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=taker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert totals and max(totals) <= 4
    names = [f"w{i}" for i in range(8)]
    for _ in range(2):
        for name in names:
            slots(store, name)
    shares = fair_shares(4, dict.fromkeys(names, 4))
    assert recorded(store) == shares and sum(shares.values()) == 4


def test_release_many_gives_claimed_jobs_back_with_their_attempt_refunded(
    store: SqlStore,
) -> None:
    ids = store.enqueue(new(3), max_depth=None, dedupe=True)
    got = claim(store).jobs
    stale = (got[2].id, "not-the-token")
    released = store.release_many([(c.id, c.lease_token) for c in got[:2]] + [stale])
    assert released == {ids[0], ids[1]}
    assert [state_of(store, i) for i in ids] == ["queued", "queued", "running"]
    again = claim(store).jobs
    assert sorted(c.id for c in again) == ids[:2] and all(c.attempt == 1 for c in again)

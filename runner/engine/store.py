"""The SQL behind every store verb, shared by both backends.

Backend differences (clock, locking, upsert) live in ``sqlite.py`` and
``postgres.py``; this module never formats SQL from strings: every value is bound.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import operator
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from runner import jobs as jobs_mod
from runner import json_array
from runner.engine import base, migrations, sqlite, tables
from runner.engine.base import (
    AlertEvent,
    AuditEntry,
    Claimed,
    ClaimResult,
    DeadJob,
    DlqFilter,
    EngineOptions,
    ErrorRecord,
    NewBatch,
    NewJob,
    QueueFullError,
    QueueStats,
    Reaped,
    ReplayResult,
    Slots,
    StoreUnavailable,
)
from runner.engine.prepared import Prepared, one_statement, raw_transaction
from runner.engine.producers import ProducerConnections
from runner.engine.sqlite_rows import SqliteRows
from runner.engine.tables import IS_DEAD, IS_QUEUED, IS_RUNNING, IS_SUCCEEDED

J = tables.jobs
E = tables.job_errors
K = tables.idempotency_keys

IS_PENDING = tables.PENDING_PREDICATE

TRACEBACK_LIMIT = 8000
MESSAGE_LIMIT = 2000
P95_SAMPLE = 10_000

# In the order of base.Claimed's fields: a claimed row becomes Claimed(*row).
_CLAIM_COLUMNS = (
    J.c.id,
    J.c.queue,
    J.c.type,
    J.c.payload,
    J.c.attempt,
    J.c.max_attempts,
    J.c.lease_token,
    J.c.idempotency_key,
    J.c.schema_version,
    J.c.enqueued_at,
    J.c.started_at,
)


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    """Turn "cannot connect", "connection lost" and "still locked" into StoreUnavailable."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise StoreUnavailable(str(exc.orig or exc).strip().splitlines()[0]) from exc
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(str(exc.orig or exc).strip().splitlines()[0]) from exc
        raise


class SchemaTooNew(Exception):
    """The database was migrated by a newer runner than this one."""


def backend_for(url: sa.URL) -> ModuleType:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return sqlite
    if backend in ("postgresql", "postgres"):
        # imported on first use: a SQLite project never loads the PostgreSQL dialect
        return importlib.import_module("runner.engine.postgres")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _claim_values(queue: str, limit: int, lease_s: float, worker: str) -> dict[str, Any]:
    """The parameters of the prepared claim statement (a new lease token each time)."""
    return {
        "claim_queue": queue,
        "claim_limit": limit,
        "claim_token": uuid.uuid4().hex,
        "claim_lease_s": lease_s,
        "claim_worker": worker,
    }


_NEW_JOB_KEYS = (
    "queue",
    "type",
    "state",
    "priority",
    "payload",
    "schema_version",
    "max_attempts",
    "idempotency_key",
)


# What the jobs of one type share: a bulk insert binds these once per type.
_SHARED_KEYS: tuple[str, ...] = NewBatch._fields[:5]


_shared: Callable[[NewJob], tuple[Any, ...]] = operator.attrgetter(*_SHARED_KEYS)


def _new_job_params(job: NewJob) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "type": job.type,
        "state": "queued",
        "priority": job.priority,
        "payload": job.payload_json,
        "schema_version": job.schema_version,
        "max_attempts": job.max_attempts,
        "idempotency_key": job.idempotency_key,
    }


def _row_params(batch: NewBatch, i: int) -> dict[str, Any]:
    """The parameters of the batch's job ``i`` for a row-at-a-time INSERT."""
    key = None if batch.keys is None else batch.keys[i]
    job = NewJob(
        batch.queue,
        batch.type,
        batch.payloads[i],
        batch.priority,
        batch.max_attempts,
        batch.schema_version,
        key,
    )
    return _new_job_params(job)


def _batches(new: Sequence[NewJob]) -> tuple[list[NewBatch], list[list[int]]]:
    """The jobs grouped by what they share (one group per job type, usually), and each
    group's indexes in ``new``."""
    places: dict[tuple[Any, ...], list[int]] = {}
    for i, job in enumerate(new):
        places.setdefault(_shared(job), []).append(i)
    batches = []
    for indexes in places.values():
        job = new[indexes[0]]
        keys = [new[i].idempotency_key for i in indexes]
        texts = [new[i].payload_json for i in indexes]
        has_keys = any(key is not None for key in keys)
        batch = NewBatch(
            job.queue, job.type, job.priority, job.schema_version, job.max_attempts, texts
        )
        batches.append(batch._replace(keys=keys) if has_keys else batch)
    return batches, list(places.values())


def _error_text(error: jobs_mod.ErrorInfo) -> tuple[str, str, str]:
    return (
        error.type[:256],
        error.message[:MESSAGE_LIMIT],
        error.traceback[-TRACEBACK_LIMIT:],
    )


def _percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[rank]


class SqlStore:
    """A job store on one SQLAlchemy engine. Thread-safe: each verb uses its own connection."""

    def __init__(self, url: str | sa.URL, options: EngineOptions | None = None) -> None:
        self.url = sa.make_url(url)
        self.backend = backend_for(self.url)
        self.options = options or EngineOptions()
        self.engine = self.backend.create_engine(self.url, self.options)
        self._now = self.backend.now
        self.claim_never_waits: bool = self.backend.claim_never_waits
        self._prepare_hot_statements()
        self._producers: ProducerConnections | None = None
        if self.backend is sqlite and self._sqlite_file() is not None:
            self._producers = ProducerConnections(self.engine, self._begin_single)

    def _prepare_hot_statements(self) -> None:
        """Compile once the statements of the verbs that run per job (``prepared.py``)."""
        now = self._now()
        returning: list[sa.ColumnElement[Any]] = [J.c.id]
        notify = self.backend.notify_column(J.c.queue)
        if notify is not None:
            returning.append(notify)
        insert_one = sa.insert(J).values(enqueued_at=now, run_at=now)
        self._insert_one = Prepared(insert_one.returning(*returning), self.engine, _NEW_JOB_KEYS)
        # The same, in one statement with the depth check: inserts nothing when the queue
        # holds max_depth ready jobs already (backpressure without a second round trip).
        # Count at most max_depth rows: the check costs O(max_depth), never O(depth).
        ready = (
            sa.select(sa.literal_column("1"))
            .where(J.c.queue == sa.bindparam("queue"), IS_QUEUED)
            .limit(sa.bindparam("max_depth", type_=sa.Integer()))
            .subquery()
        )
        depth = sa.select(sa.func.count()).select_from(ready).scalar_subquery()
        insert_within = sa.insert(J).from_select(
            [*(J.c[k] for k in _NEW_JOB_KEYS), J.c.enqueued_at, J.c.run_at],
            sa.select(*(sa.bindparam(k, type_=J.c[k].type) for k in _NEW_JOB_KEYS), now, now).where(
                depth < sa.bindparam("max_depth", type_=sa.Integer())
            ),
        )
        within_keys = [*_NEW_JOB_KEYS, "max_depth"]
        self._insert_one_within = Prepared(
            insert_within.returning(*returning), self.engine, within_keys
        )
        # SQLite producer threads read the new id off their own connection (lastrowid):
        # no RETURNING row to step to and fetch.
        self._insert_one_bare = Prepared(insert_one, self.engine, _NEW_JOB_KEYS)
        self._insert_one_within_bare = Prepared(insert_within, self.engine, within_keys)
        # Bulk inserts: one statement per job type, rows from JSON text parameters; the
        # clock is read once per statement (an InitPlan), not twice per row.
        once = sa.select(now).scalar_subquery()
        self._insert_json: dict[bool, Prepared] = {}
        for with_keys in (False, True):
            rows = self.backend.json_rows(with_keys)
            if rows is None:
                continue
            columns = [
                *(J.c[k] for k in _SHARED_KEYS),
                *(J.c.state, J.c.payload, J.c.idempotency_key, J.c.enqueued_at),
                J.c.run_at,
            ]
            values = [
                *(sa.bindparam(k, type_=J.c[k].type) for k in _SHARED_KEYS),
                tables.STATE_LITERALS["queued"],
                rows.c.payload,
                rows.c.idempotency_key,
                once,
                once,
            ]
            keys = [*_SHARED_KEYS, "payloads", "keys"]
            if self.backend.sequential_ids:
                # Ids given, not drawn: the job at index n gets first_id + n. Nothing else
                # inserts under the write lock, so the mapping holds by construction, and
                # no sort or RETURNING is needed (see _insert_rows).
                first = sa.bindparam("first_id", type_=sa.BigInteger())
                insert = sa.insert(J).from_select(
                    [J.c.id, *columns], sa.select(first + rows.c.n, *values)
                )
                keys.append("first_id")
            else:
                insert = (
                    sa.insert(J)
                    .from_select(columns, sa.select(*values).order_by(rows.c.n))
                    .returning(J.c.id)
                )
            self._insert_json[with_keys] = Prepared(insert, self.engine, keys)
        self._max_id = Prepared(sa.select(sa.func.max(J.c.id)), self.engine, [])
        pick = (
            sa.select(J.c.id)
            .where(J.c.queue == sa.bindparam("claim_queue"), IS_QUEUED, J.c.run_at <= now)
            .order_by(J.c.priority.desc(), J.c.run_at, J.c.id)
            .limit(sa.bindparam("claim_limit", type_=sa.Integer()))
        )
        if self.backend.skip_locked:
            pick = pick.with_for_update(skip_locked=True)
        claim_values: dict[str, Any] = {
            "state": "running",
            "attempt": J.c.attempt + 1,
            "lease_token": sa.bindparam("claim_token"),
            "lease_expires_at": now + sa.bindparam("claim_lease_s", type_=sa.Double()),
            "started_at": now,
            "worker": sa.bindparam("claim_worker"),
        }
        claim_keys = ["claim_queue", "claim_limit", "claim_token", "claim_lease_s", "claim_worker"]
        relaxed = [t for t in [self.backend.worker_commit(self.options)] if t is not None]
        self._claim = Prepared(
            sa.update(J)
            .where(J.c.id.in_(pick.scalar_subquery()), *relaxed)
            .values(**claim_values)
            .returning(*_CLAIM_COLUMNS),
            self.engine,
            claim_keys,
        )
        pairs = self.backend.lease_pairs()
        pairs_keys = list(self.backend.lease_pairs_params([]))
        ack_values: dict[str, Any] = {
            "state": "succeeded",
            "finished_at": now,
            "lease_token": None,
            "lease_expires_at": None,
        }
        self._ack = Prepared(
            sa.update(J)
            .where(
                IS_RUNNING,
                sa.tuple_(J.c.id, J.c.lease_token).in_(sa.select(pairs.c.id, pairs.c.token)),
                *relaxed,
            )
            .values(**ack_values)
            .returning(J.c.id),
            self.engine,
            pairs_keys,
            binary=pairs_keys,
        )
        self._key_done = Prepared(
            self.backend.insert(K).values(done_at=now).on_conflict_do_nothing(),
            self.engine,
            ["key", "job_id"],
        )
        self._rows: SqliteRows | None = None
        if self.backend is sqlite:
            self._rows = SqliteRows(
                self.engine,
                self._begin_worker,
                pick=pick,
                claim_values=claim_values,
                claim_keys=claim_keys,
                columns=_CLAIM_COLUMNS,
                lease_pairs=pairs,
                pairs_keys=pairs_keys,
                ack_values=ack_values,
                now=now,
            )
        self._queued_depth = Prepared(
            sa.select(sa.func.count()).where(J.c.queue == sa.bindparam("queue"), IS_QUEUED),
            self.engine,
            ["queue"],
        )

    def _begin_durable(self, cursor: Any, info: dict[str, Any]) -> None:
        self.backend.begin_raw(cursor, info, self.options.sqlite_synchronous)

    def _begin_single(self, cursor: Any, info: dict[str, Any]) -> None:
        self.backend.begin_single(cursor, info, self.options.sqlite_synchronous)

    def _begin_worker(self, cursor: Any, info: dict[str, Any]) -> None:
        self.backend.begin_raw(cursor, info, self.options.sqlite_worker_synchronous)

    # -- connections -------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A transaction whose commit is durable (producers, operators, migrations)."""
        with _unavailable_on_connection_errors(), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _work(self) -> Iterator[sa.Connection]:
        """A worker's transaction (claims, acks, leases). On SQLite its commit is not
        synced to disk at once: a power loss may undo the last few, which at worst
        redelivers jobs (at-least-once holds); a crashed process loses nothing."""
        with _unavailable_on_connection_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(worker=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with _unavailable_on_connection_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(readonly=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        if self._producers is not None:
            self._producers.close()
        self.engine.dispose()

    def _sqlite_file(self) -> str | None:
        """The database file's path; None for an in-memory database."""
        path = self.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            return path
        return None

    def listener(self) -> base.Listener | None:
        """Early wake-ups when jobs are enqueued: LISTEN/NOTIFY on PostgreSQL, a watch on
        the file's data version on SQLite; None for an in-memory database (poll only)."""
        if self.backend is not sqlite:
            listener: base.Listener = self.backend.Listener(self.url, self.options)
            return listener
        path = self._sqlite_file()
        return sqlite.DataVersionWatcher(path) if path is not None else None

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> int:
        with self._write() as conn:
            self.backend.lock_migrations(conn)
            version = migrations.current_version(conn)
            if version > migrations.LATEST:
                raise SchemaTooNew(
                    f"database schema version {version} is newer than this runner "
                    f"({migrations.LATEST}); upgrade runner"
                )
            return migrations.apply(conn)

    def ensure_queues(self, names: Sequence[str]) -> None:
        if not names:
            return
        with self._write() as conn:
            stmt = self.backend.insert(tables.queues).on_conflict_do_nothing()
            conn.execute(stmt, [{"name": n} for n in names])

    def now(self) -> float:
        with self._read() as conn:
            return float(conn.scalar(sa.select(self._now())) or 0.0)

    # -- producers ---------------------------------------------------------------

    def enqueue(
        self, new: Sequence[NewJob] | NewBatch, *, max_depth: int | None, dedupe: bool
    ) -> list[int]:
        """Insert jobs durably; all or nothing. Returns one id per input, in order.

        With ``dedupe``, a job whose idempotency key is already pending (queued or
        running) is not inserted: its id is the pending job's id.
        """
        if not (new.payloads if isinstance(new, NewBatch) else new):
            return []
        if isinstance(new, NewBatch):
            batches, places = [new], None
        elif len(new) == 1 and new[0].idempotency_key is None:
            return [self._enqueue_one(new[0], max_depth)]
        else:
            batches, places = _batches(new)
        with self._write() as conn:
            if max_depth is not None:
                self._check_depth(conn, batches, max_depth)
            got = [self._insert_batch(conn, batch, dedupe) for batch in batches]
            self.backend.notify(conn, {batch.queue for batch in batches})
        if places is None:
            return got[0]
        ids = [0] * len(new)
        for indexes, batch_ids in zip(places, got, strict=True):
            for i, job_id in zip(indexes, batch_ids, strict=True):
                ids[i] = job_id
        return ids

    def _enqueue_one(self, job: NewJob, max_depth: int | None) -> int:
        """The common case (one job, no idempotency key): one prepared statement."""
        values = _new_job_params(job)
        if max_depth is not None:
            values["max_depth"] = max_depth
        job_id: int | None
        if self._producers is not None:
            bare = self._insert_one_bare if max_depth is None else self._insert_one_within_bare
            job_id = self._producers.insert(bare, values)
        else:
            stmt = self._insert_one if max_depth is None else self._insert_one_within
            row = one_statement(self.engine, self._begin_single, stmt, values, autocommit=True)
            job_id = None if row is None else int(row[0])
        if job_id is None:  # full: nothing was inserted
            with raw_transaction(self.engine, self._begin_durable) as tx:
                depth = int(tx.one(self._queued_depth, {"queue": job.queue})[0])
            raise QueueFullError(job.queue, depth, max_depth or 0, 1)
        return job_id

    def _check_depth(
        self, conn: sa.Connection, batches: Sequence[NewBatch], max_depth: int
    ) -> None:
        wanted: dict[str, int] = {}
        for batch in batches:
            wanted[batch.queue] = wanted.get(batch.queue, 0) + len(batch.payloads)
        rows = conn.execute(
            sa.select(J.c.queue, sa.func.count())
            .where(J.c.queue.in_(list(wanted)), IS_QUEUED)
            .group_by(J.c.queue)
        ).all()
        depth = {q: int(n) for q, n in rows}
        for queue, count in wanted.items():
            if depth.get(queue, 0) + count > max_depth:
                raise QueueFullError(queue, depth.get(queue, 0), max_depth, count)

    def _insert_batch(self, conn: sa.Connection, batch: NewBatch, dedupe: bool) -> list[int]:
        """Ids in input order. With ``dedupe``, jobs with a key go through the
        deduplicating insert; the rest (all, usually) through one statement."""
        if batch.keys is None or not dedupe:
            return self._insert_rows(conn, batch)
        ids = [0] * len(batch.payloads)
        plain = [i for i, key in enumerate(batch.keys) if key is None]
        if plain:
            unkeyed = batch._replace(payloads=[batch.payloads[i] for i in plain], keys=None)
            for i, job_id in zip(plain, self._insert_rows(conn, unkeyed), strict=True):
                ids[i] = job_id
        keyed = [i for i, key in enumerate(batch.keys) if key is not None]
        self._insert_keyed(conn, batch, keyed, ids)
        return ids

    def _insert_rows(self, conn: sa.Connection, batch: NewBatch) -> list[int]:
        """One ``INSERT ... SELECT`` over the payloads joined into one JSON array, the shared
        columns bound once. On SQLite the ids are given, not returned (returning them cost
        about as much as inserting the rows, and sorting the rows into input order a
        tenth): the largest id plus one, plus each payload's index (``sqlite.sequential_ids``).
        """
        count = len(batch.payloads)
        bulk = self._insert_json.get(batch.keys is not None)
        if bulk is not None:
            values: dict[str, Any] = dict(zip(_SHARED_KEYS, batch))  # noqa: B905 (a prefix)
            values["payloads"] = json_array.joined(batch.payloads)
            if batch.keys is not None:
                values["keys"] = json.dumps(batch.keys)
            cursor = conn.connection.cursor()
            try:
                if not self.backend.sequential_ids:
                    cursor.execute(bulk.sql, bulk.params(values))
                    # Ids are given in the SELECT's order: sorted, they are the input order.
                    return sorted([int(row[0]) for row in cursor.fetchall()])
                cursor.execute(self._max_id.sql, ())
                row = cursor.fetchone()
                top = int(row[0] or 0) if row is not None else 0  # NULL: an empty table
                if top <= sqlite.MAX_ROWID - count:
                    values["first_id"] = top + 1
                    cursor.execute(bulk.sql, bulk.params(values))
                    if cursor.rowcount != count:
                        raise RuntimeError("bulk insert: not every row was inserted")
                    return list(range(top + 1, top + count + 1))
            finally:
                cursor.close()
        # SQLite, with keys kept without dedupe, or ids at the end of their range (where
        # SQLite picks them at random): a multi-row INSERT whose ids come back in order.
        now = self._now()
        stmt = (
            sa.insert(J)
            .values(enqueued_at=now, run_at=now)
            .returning(J.c.id, sort_by_parameter_order=True)
        )
        result = conn.execute(stmt, [_row_params(batch, i) for i in range(count)])
        return [int(row.id) for row in result.all()]

    def _insert_keyed(
        self, conn: sa.Connection, batch: NewBatch, keyed: list[int], ids: list[int]
    ) -> None:
        assert batch.keys is not None
        keys = batch.keys
        first_of_key: dict[str, int] = {}
        for i in keyed:
            first_of_key.setdefault(str(keys[i]), i)
        now = self._now()
        stmt = (
            self.backend.insert(J)
            .values(enqueued_at=now, run_at=now)
            .on_conflict_do_nothing(
                index_elements=[J.c.idempotency_key],
                index_where=tables.PENDING_KEY_PREDICATE,
            )
            .returning(J.c.id, J.c.idempotency_key)
        )
        # One multi-row INSERT per batch; rows that hit a pending key return nothing.
        inserted = conn.execute(stmt, [_row_params(batch, i) for i in first_of_key.values()])
        by_key: dict[str, int] = {row.idempotency_key: int(row.id) for row in inserted}
        missing = [k for k in first_of_key if k not in by_key]
        if missing:
            rows = conn.execute(
                sa.select(J.c.id, J.c.idempotency_key).where(
                    J.c.idempotency_key.in_(missing), IS_PENDING
                )
            ).all()
            by_key.update({r.idempotency_key: int(r.id) for r in rows})
        for i in keyed:
            ids[i] = by_key[str(keys[i])]

    # -- workers -----------------------------------------------------------------

    def claim(
        self,
        queue: str,
        *,
        limit: int,
        lease_s: float,
        worker: str,
        concurrency: int | None = None,
    ) -> ClaimResult:
        """Lease up to ``limit`` ready jobs of one queue.

        Workers hold slots of the queue's concurrency (``acquire_slots``) and claim ahead
        of them; a caller without slots passes ``concurrency`` to count leased jobs
        instead. The attempt is counted here, so a handler that kills its process cannot
        loop forever. Jobs whose idempotency key is already done are acked as duplicates.
        """
        if concurrency is None and self.backend.single_statement_autocommit:
            return self._claim_one_statement(queue, limit, lease_s, worker)
        if concurrency is None and self._rows is not None:
            claimed = self._rows.claim(_claim_values(queue, limit, lease_s, worker))
            return self._without_done_keys(claimed)
        with self._work() as conn:
            room = limit
            if concurrency is not None:
                if not self.backend.lock_queue(conn, queue):
                    return ClaimResult([], [], saturated=True)
                running = int(
                    conn.scalar(sa.select(sa.func.count()).where(J.c.queue == queue, IS_RUNNING))
                    or 0
                )
                room = min(limit, concurrency - running)
            if room <= 0:
                return ClaimResult([], [], saturated=True)
            values = _claim_values(queue, room, lease_s, worker)
            stmt = self._claim
            rows = conn.exec_driver_sql(stmt.sql, stmt.params(values)).all()
            claimed = sorted((Claimed(*r) for r in rows), key=lambda c: c.id)
            return self._skip_done_keys(conn, claimed)

    def _claim_one_statement(
        self, queue: str, limit: int, lease_s: float, worker: str
    ) -> ClaimResult:
        """PostgreSQL: the claim is one statement, its own transaction (one round trip)."""
        values = _claim_values(queue, limit, lease_s, worker)
        rows = one_statement(
            self.engine, self._begin_worker, self._claim, values, autocommit=True, all_rows=True
        )
        claimed = sorted((Claimed(*row) for row in rows), key=lambda c: c.id)
        return self._without_done_keys(claimed)

    def _without_done_keys(self, claimed: list[Claimed]) -> ClaimResult:
        """After a claim committed: jobs whose key is done already are acked as duplicates."""
        if not any(c.idempotency_key is not None for c in claimed):
            return ClaimResult(claimed, [])
        with self._work() as conn:
            return self._skip_done_keys(conn, claimed)

    def _skip_done_keys(self, conn: sa.Connection, claimed: list[Claimed]) -> ClaimResult:
        keys = [c.idempotency_key for c in claimed if c.idempotency_key is not None]
        if not keys:
            return ClaimResult(claimed, [])
        done = set(conn.scalars(sa.select(K.c.key).where(K.c.key.in_(keys))).all())
        if not done:
            return ClaimResult(claimed, [])
        duplicates = [c for c in claimed if c.idempotency_key in done]
        conn.execute(
            sa.update(J)
            .where(J.c.id.in_([c.id for c in duplicates]))
            .values(
                state="succeeded",
                duplicate=True,
                finished_at=self._now(),
                lease_token=None,
                lease_expires_at=None,
            )
        )
        return ClaimResult([c for c in claimed if c.idempotency_key not in done], duplicates)

    def acquire_slots(
        self,
        queue: str,
        worker: str,
        *,
        wanted: int,
        executing: int,
        concurrency: int,
        ttl_s: float,
    ) -> Slots:
        """Take, keep or give back slots of a queue's concurrency, under the queue's lock.

        Live workers split the concurrency fairly (``fair_shares``); a worker is granted
        at most what the others leave free, and its row never records fewer than the
        handlers it is still running, so the sum over live workers stays within the limit.
        Rows of workers that stopped renewing expire after ``ttl_s``.
        """
        S = tables.slots
        with self._work() as conn:
            if not self.backend.lock_queue(conn, queue):
                return Slots(0, 0)
            now = float(conn.scalar(sa.select(self._now())) or 0.0)
            conn.execute(
                sa.delete(S).where(S.c.queue == queue, S.c.expires_at <= now, S.c.worker != worker)
            )
            rows = conn.execute(
                sa.select(S.c.worker, S.c.held, S.c.wanted).where(
                    S.c.queue == queue, S.c.worker != worker
                )
            ).all()
            wants = {r.worker: int(r.wanted) for r in rows}
            wants[worker] = wanted
            share = base.fair_shares(concurrency, wants)[worker]
            free = concurrency - sum(int(r.held) for r in rows)
            held = max(0, min(share, free))
            values = {"held": max(held, executing), "wanted": wanted, "expires_at": now + ttl_s}
            conn.execute(
                self.backend.insert(S)
                .values(queue=queue, worker=worker, **values)
                .on_conflict_do_update(index_elements=[S.c.queue, S.c.worker], set_=values)
            )
            return Slots(held, share)

    def release_slots(self, worker: str, queues: Sequence[str]) -> None:
        """Give every slot back (a worker that stops)."""
        S = tables.slots
        with self._work() as conn:
            conn.execute(sa.delete(S).where(S.c.worker == worker, S.c.queue.in_(list(queues))))

    def _lease_matches(self, job_id: int, token: str) -> sa.ColumnElement[bool]:
        return sa.and_(J.c.id == job_id, IS_RUNNING, J.c.lease_token == token)

    def extend_leases(self, leases: Sequence[tuple[int, str]], lease_s: float) -> set[int]:
        """Renew leases still held; return the ids whose lease was lost."""
        if not leases:
            return set()
        if self._rows is not None:
            held = self._rows.extend(self.backend.lease_pairs_params(leases), lease_s)
            return {job_id for job_id, _ in leases} - held
        with self._work() as conn:
            kept = conn.scalars(
                sa.update(J)
                .where(
                    IS_RUNNING,
                    sa.tuple_(J.c.id, J.c.lease_token).in_(list(leases)),
                )
                .values(lease_expires_at=self._now() + lease_s)
                .returning(J.c.id)
            ).all()
        return {job_id for job_id, _ in leases} - set(kept)

    def ack(self, job_id: int, token: str, idempotency_key: str | None) -> bool:
        return job_id in self.ack_many([(job_id, token, idempotency_key)])

    def ack_many(self, acks: Sequence[tuple[int, str, str | None]]) -> set[int]:
        """Mark jobs succeeded in one transaction, each only if its lease still matches.

        Returns the ids acked; the others had lost their lease (stale). The idempotency
        keys of acked jobs are recorded as done in the same transaction.
        """
        if not acks:
            return set()
        pairs = [(i, t) for i, t, _ in acks]
        if self.backend.single_statement_autocommit and all(k is None for _, _, k in acks):
            # PostgreSQL, no keys to record: one statement, its own transaction.
            rows = one_statement(
                self.engine,
                self._begin_worker,
                self._ack,
                self.backend.lease_pairs_params(pairs),
                autocommit=True,
                all_rows=True,
            )
            return {int(r[0]) for r in rows}
        if self._rows is not None:
            key_done = self._key_done

            def record_keys(cursor: Any, acked: set[int]) -> None:
                keys = [(k, i) for i, _, k in acks if k is not None and i in acked]
                if keys:
                    cursor.executemany(
                        key_done.sql, [key_done.params({"key": k, "job_id": i}) for k, i in keys]
                    )

            return self._rows.ack(self.backend.lease_pairs_params(pairs), record_keys)
        with self._work() as conn:
            now = self._now()
            stmt = self._ack
            values = self.backend.lease_pairs_params([(i, t) for i, t, _ in acks])
            rows = conn.exec_driver_sql(stmt.sql, stmt.params(values)).all()
            acked = {int(r[0]) for r in rows}
            keys = [{"key": k, "job_id": i} for i, _, k in acks if k is not None and i in acked]
            if keys:
                conn.execute(
                    self.backend.insert(K).values(done_at=now).on_conflict_do_nothing(), keys
                )
            return acked

    def _record_error(self, conn: sa.Connection, job_id: int, error: jobs_mod.ErrorInfo) -> None:
        error_type, message, tb = _error_text(error)
        conn.execute(
            sa.insert(E).from_select(
                ["job_id", "queue", "attempt", "error_type", "message", "traceback", "at"],
                sa.select(
                    J.c.id,
                    J.c.queue,
                    J.c.attempt,
                    sa.literal(error_type),
                    sa.literal(message),
                    sa.literal(tb),
                    self._now(),
                ).where(J.c.id == job_id),
            )
        )

    def retry(self, job_id: int, token: str, error: jobs_mod.ErrorInfo, delay_s: float) -> bool:
        with self._work() as conn:
            changed = conn.execute(
                sa.update(J)
                .where(self._lease_matches(job_id, token))
                .values(
                    state="queued",
                    run_at=self._now() + delay_s,
                    lease_token=None,
                    lease_expires_at=None,
                    last_error=f"{error.type}: {error.message}"[:MESSAGE_LIMIT],
                )
            ).rowcount
            if changed != 1:
                return False
            self._record_error(conn, job_id, error)
            return True

    def dead_letter(self, job_id: int, token: str, error: jobs_mod.ErrorInfo, owner: str) -> bool:
        with self._work() as conn:
            changed = conn.execute(
                sa.update(J)
                .where(self._lease_matches(job_id, token))
                .values(
                    state="dead",
                    finished_at=self._now(),
                    lease_token=None,
                    lease_expires_at=None,
                    dead_owner=owner,
                    last_error=f"{error.type}: {error.message}"[:MESSAGE_LIMIT],
                )
            ).rowcount
            if changed != 1:
                return False
            self._record_error(conn, job_id, error)
            return True

    def release(self, job_id: int, token: str) -> bool:
        """Give a leased job back at once (graceful shutdown); its attempt is refunded."""
        return job_id in self.release_many([(job_id, token)])

    def release_many(self, leases: Sequence[tuple[int, str]]) -> set[int]:
        """Give leased jobs back at once (shutdown, or claimed ahead and never started);
        their attempts are refunded. Returns the ids released (lease still held)."""
        if not leases:
            return set()
        with self._work() as conn:
            return set(
                conn.scalars(
                    sa.update(J)
                    .where(IS_RUNNING, sa.tuple_(J.c.id, J.c.lease_token).in_(list(leases)))
                    .values(
                        state="queued",
                        attempt=sa.func.max(J.c.attempt - 1, 0)
                        if self.backend is sqlite
                        else sa.func.greatest(J.c.attempt - 1, 0),
                        run_at=self._now(),
                        lease_token=None,
                        lease_expires_at=None,
                    )
                    .returning(J.c.id)
                ).all()
            )

    def reap(self, owners: Mapping[str, str]) -> list[Reaped]:
        """Requeue running jobs whose lease expired, or dead-letter them when out of attempts."""
        if not owners:
            return []
        with self._work() as conn:
            now = self._now()
            expired = (
                sa.select(J.c.id, J.c.queue, J.c.type, J.c.attempt, J.c.max_attempts)
                .where(
                    J.c.queue.in_(list(owners)),
                    IS_RUNNING,
                    J.c.lease_expires_at <= now,
                )
                .limit(1000)
            )
            if self.backend.skip_locked:
                expired = expired.with_for_update(skip_locked=True)
            rows = conn.execute(expired).all()
            reaped: list[Reaped] = []
            for row in rows:
                dead = row.attempt >= row.max_attempts
                error = jobs_mod.ErrorInfo(
                    "LeaseExpired",
                    f"no ack within the visibility timeout (attempt {row.attempt}); "
                    "the worker died or stalled",
                )
                values: dict[str, Any] = {
                    "lease_token": None,
                    "lease_expires_at": None,
                    "last_error": f"{error.type}: {error.message}",
                }
                if dead:
                    values.update(state="dead", finished_at=now, dead_owner=owners[row.queue])
                else:
                    values.update(state="queued", run_at=now)
                changed = conn.execute(
                    sa.update(J)
                    .where(J.c.id == row.id, IS_RUNNING, J.c.lease_expires_at <= now)
                    .values(**values)
                ).rowcount
                if changed == 1:
                    self._record_error(conn, row.id, error)
                    reaped.append(
                        Reaped(row.id, row.queue, row.type, row.attempt, row.max_attempts, dead)
                    )
            return reaped

    def prune(self, queues: Sequence[str], *, done_before_s: float, keys_before_s: float) -> int:
        """Delete up to PRUNE_BATCH succeeded jobs of these queues older than the retention,
        and old idempotency keys. Returns how many jobs were deleted."""
        with self._work() as conn:
            now = self._now()
            old = (
                sa.select(J.c.id)
                .where(
                    J.c.queue.in_(list(queues)),
                    IS_SUCCEEDED,
                    J.c.finished_at < now - done_before_s,
                )
                .limit(base.PRUNE_BATCH)
            )
            ids = list(conn.scalars(old).all())
            if ids:
                conn.execute(sa.delete(E).where(E.c.job_id.in_(ids)))
                conn.execute(sa.delete(J).where(J.c.id.in_(ids)))
            conn.execute(sa.delete(K).where(K.c.done_at < now - keys_before_s))
            return len(ids)

    def pending(self, queues: Sequence[str]) -> int:
        """Jobs queued (ready or scheduled) or running in these queues."""
        if not queues:
            return 0
        in_queues = J.c.queue.in_(list(queues))
        with self._read() as conn:  # one count per state: each from its partial index
            return sum(
                int(conn.scalar(sa.select(sa.func.count()).where(in_queues, state)) or 0)
                for state in (IS_QUEUED, IS_RUNNING)
            )

    # -- operators ---------------------------------------------------------------

    def stats(self, queues: Sequence[str], window_s: float) -> dict[str, QueueStats]:
        names = list(queues)
        with self._read() as conn:
            now = float(conn.scalar(sa.select(self._now())) or 0.0)
            counts: dict[str, dict[str, int]] = {q: {} for q in names}
            oldest: dict[str, float] = {}
            in_queues = J.c.queue.in_(names)
            # One count per state, each answered from that state's partial index alone.
            ready = (J.c.run_at <= now).label("ready")
            for queue, is_ready, n, min_run_at in conn.execute(
                sa.select(J.c.queue, ready, sa.func.count(), sa.func.min(J.c.run_at))
                .where(in_queues, IS_QUEUED)
                .group_by(J.c.queue, ready)
            ):
                counts[queue]["ready" if is_ready else "scheduled"] = int(n)
                if is_ready and min_run_at is not None:
                    oldest[queue] = max(0.0, now - float(min_run_at))
            for state, predicate in (
                ("running", IS_RUNNING),
                ("succeeded", IS_SUCCEEDED),
                ("dead", IS_DEAD),
            ):
                for queue, n in conn.execute(
                    sa.select(J.c.queue, sa.func.count())
                    .where(in_queues, predicate)
                    .group_by(J.c.queue)
                ):
                    counts[queue][state] = int(n)
            since = now - window_s
            failed: dict[str, int] = dict(
                conn.execute(
                    sa.select(E.c.queue, sa.func.count())
                    .where(E.c.queue.in_(names), E.c.at >= since)
                    .group_by(E.c.queue)
                ).all()
            )
            result: dict[str, QueueStats] = {}
            for queue in names:
                durations = sorted(
                    float(d)
                    for d in conn.scalars(
                        sa.select(J.c.finished_at - J.c.started_at)
                        .where(
                            J.c.queue == queue,
                            IS_SUCCEEDED,
                            J.c.duplicate == sa.false(),
                            J.c.finished_at >= since,
                        )
                        .order_by(J.c.finished_at.desc())
                        .limit(P95_SAMPLE)
                    )
                    if d is not None
                )
                n_failed = int(failed.get(queue, 0))
                attempts = len(durations) + n_failed
                c = counts[queue]
                result[queue] = QueueStats(
                    ready=c.get("ready", 0),
                    scheduled=c.get("scheduled", 0),
                    in_flight=c.get("running", 0),
                    done=c.get("succeeded", 0),
                    dead=c.get("dead", 0),
                    oldest_ready_age_s=oldest.get(queue),
                    failure_rate=(n_failed / attempts) if attempts else None,
                    p95_s=_percentile(durations, 0.95),
                    p50_s=_percentile(durations, 0.50),
                    processed_in_window=len(durations),
                    failed_in_window=n_failed,
                    window_s=window_s,
                )
            return result

    def _dead_where(self, flt: DlqFilter, now: float | None) -> sa.ColumnElement[bool]:
        clauses: list[sa.ColumnElement[bool]] = [
            IS_DEAD,
            J.c.queue.in_(list(flt.queues)),
        ]
        if flt.types:
            clauses.append(J.c.type.in_(list(flt.types)))
        if flt.ids:
            clauses.append(J.c.id.in_(list(flt.ids)))
        if flt.error_type:
            clauses.append(J.c.last_error.like(f"{flt.error_type}:%", escape="\\"))
        if flt.older_than_s is not None and now is not None:
            clauses.append(J.c.finished_at <= now - flt.older_than_s)
        return sa.and_(*clauses)

    def _errors_of(self, conn: sa.Connection, ids: list[int]) -> dict[int, list[ErrorRecord]]:
        out: dict[int, list[ErrorRecord]] = {i: [] for i in ids}
        if not ids:
            return out
        for row in conn.execute(
            sa.select(E).where(E.c.job_id.in_(ids)).order_by(E.c.job_id, E.c.at, E.c.id)
        ):
            out[row.job_id].append(
                ErrorRecord(row.attempt, row.error_type, row.message, row.traceback, row.at)
            )
        return out

    def _dead_jobs(
        self, conn: sa.Connection, where: sa.ColumnElement[bool], limit: int | None
    ) -> list[DeadJob]:
        stmt = sa.select(J).where(where).order_by(J.c.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = conn.execute(stmt).all()
        errors = self._errors_of(conn, [r.id for r in rows])
        return [
            DeadJob(
                id=r.id,
                type=r.type,
                queue=r.queue,
                attempts=r.attempt,
                max_attempts=r.max_attempts,
                last_error=r.last_error,
                owner=r.dead_owner,
                enqueued_at=r.enqueued_at,
                dead_at=r.finished_at,
                idempotency_key=r.idempotency_key,
                payload_json=r.payload,
                errors=errors[r.id],
            )
            for r in rows
        ]

    def dlq_list(self, flt: DlqFilter) -> list[DeadJob]:
        with self._read() as conn:
            now = float(conn.scalar(sa.select(self._now())) or 0.0)
            return self._dead_jobs(conn, self._dead_where(flt, now), flt.limit)

    def get_job(self, job_id: int) -> DeadJob | None:
        """Any job by id, in the DLQ's shape (with its error history)."""
        with self._read() as conn:
            found = self._dead_jobs(conn, J.c.id == job_id, 1)
            return found[0] if found else None

    def dlq_replay(self, flt: DlqFilter, *, operator: str) -> ReplayResult:
        """Queue dead jobs again with attempts reset; their error history is kept.

        A job whose idempotency key is pending again (a newer job holds it) is skipped.
        """
        with self._write() as conn:
            now = float(conn.scalar(sa.select(self._now())) or 0.0)
            stmt = sa.select(J.c.id, J.c.idempotency_key).where(self._dead_where(flt, now))
            if flt.limit is not None:
                stmt = stmt.limit(flt.limit)
            rows = conn.execute(stmt.order_by(J.c.id.desc())).all()
            keys = {r.idempotency_key for r in rows if r.idempotency_key is not None}
            taken: set[str] = set()
            if keys:
                taken = set(
                    conn.scalars(
                        sa.select(J.c.idempotency_key).where(
                            J.c.idempotency_key.in_(list(keys)), IS_PENDING
                        )
                    ).all()
                )
            replay: list[int] = []
            skipped: list[int] = []
            for row in rows:
                key = row.idempotency_key
                if key is not None and key in taken:
                    skipped.append(row.id)
                    continue
                if key is not None:
                    taken.add(key)
                replay.append(row.id)
            if replay:
                self.backend.notify(conn, set(flt.queues))
                conn.execute(
                    sa.update(J)
                    .where(J.c.id.in_(replay), IS_DEAD)
                    .values(
                        state="queued",
                        attempt=0,
                        run_at=self._now(),
                        finished_at=None,
                        dead_owner=None,
                    )
                )
            self._audit(conn, operator, "dlq_replay", flt, sorted(replay))
            return ReplayResult(sorted(replay), sorted(skipped))

    def dlq_purge(self, flt: DlqFilter, *, operator: str) -> int:
        with self._write() as conn:
            now = float(conn.scalar(sa.select(self._now())) or 0.0)
            stmt = sa.select(J.c.id).where(self._dead_where(flt, now))
            if flt.limit is not None:
                stmt = stmt.limit(flt.limit)
            ids = list(conn.scalars(stmt).all())
            if ids:
                conn.execute(sa.delete(E).where(E.c.job_id.in_(ids)))
                conn.execute(sa.delete(J).where(J.c.id.in_(ids), IS_DEAD))
            self._audit(conn, operator, "dlq_purge", flt, sorted(ids))
            return len(ids)

    def _audit(
        self, conn: sa.Connection, operator: str, action: str, flt: DlqFilter, ids: list[int]
    ) -> None:
        """Record who replayed or purged what, in the same transaction as the change."""
        selection = {
            "queues": list(flt.queues),
            "types": list(flt.types),
            "ids": list(flt.ids),
            "error_type": flt.error_type,
            "older_than_s": flt.older_than_s,
        }
        conn.execute(
            sa.insert(tables.audit).values(
                at=self._now(),
                operator=operator[:128],
                action=action,
                selection=json.dumps(selection),
                job_count=len(ids),
                job_ids=json.dumps(ids),
            )
        )

    # -- counters -----------------------------------------------------------------------

    def count(self, queue: str, job_type: str, name: str, n: int) -> None:
        """Add to a durable counter (for events no worker sees, like producer refusals)."""
        C = tables.counters
        with self._write() as conn:
            stmt = self.backend.insert(C).values(queue=queue, type=job_type, name=name, value=n)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[C.c.queue, C.c.type, C.c.name],
                    set_={"value": C.c.value + n},
                )
            )

    def counters(self, queues: Sequence[str]) -> list[tuple[str, str, str, int]]:
        C = tables.counters
        with self._read() as conn:
            rows = conn.execute(
                sa.select(C.c.queue, C.c.type, C.c.name, C.c.value).where(
                    C.c.queue.in_(list(queues))
                )
            ).all()
        return [(r.queue, r.type, r.name, int(r.value)) for r in rows]

    # -- alerts -------------------------------------------------------------------------

    def try_lead(self, name: str, holder: str, lease_s: float) -> bool:
        """Take or keep a named lease (one alert evaluator across every process)."""
        L = tables.leases
        with self._write() as conn:
            now = self._now()
            conn.execute(
                self.backend.insert(L)
                .values(name=name, holder="", expires_at=0.0)
                .on_conflict_do_nothing()
            )
            taken = conn.execute(
                sa.update(L)
                .where(L.c.name == name, sa.or_(L.c.holder == holder, L.c.expires_at <= now))
                .values(holder=holder, expires_at=now + lease_s)
            ).rowcount
            return taken == 1

    def alert_states(self, queues: Sequence[str]) -> dict[tuple[str, str], str]:
        """The latest state (firing or resolved) of each (queue, rule) that ever fired."""
        A = tables.alert_events
        with self._read() as conn:
            latest = (
                sa.select(sa.func.max(A.c.id))
                .where(A.c.queue.in_(list(queues)))
                .group_by(A.c.queue, A.c.rule)
            )
            rows = conn.execute(
                sa.select(A.c.queue, A.c.rule, A.c.state).where(A.c.id.in_(latest))
            ).all()
        return {(r.queue, r.rule): r.state for r in rows}

    def record_alert(
        self, queue: str, rule: str, state: str, value: float, threshold: float
    ) -> None:
        with self._write() as conn:
            conn.execute(
                sa.insert(tables.alert_events).values(
                    queue=queue,
                    rule=rule,
                    state=state,
                    value=value,
                    threshold=threshold,
                    at=self._now(),
                )
            )

    def alert_events(self, queues: Sequence[str], limit: int) -> list[AlertEvent]:
        A = tables.alert_events
        with self._read() as conn:
            rows = conn.execute(
                sa.select(A).where(A.c.queue.in_(list(queues))).order_by(A.c.id.desc()).limit(limit)
            ).all()
        return [AlertEvent(r.queue, r.rule, r.state, r.value, r.threshold, r.at) for r in rows]

    def audit_log(self, limit: int) -> list[AuditEntry]:
        A = tables.audit
        with self._read() as conn:
            rows = conn.execute(sa.select(A).order_by(A.c.id.desc()).limit(limit)).all()
        return [
            AuditEntry(r.at, r.operator, r.action, r.selection, r.job_count, json.loads(r.job_ids))
            for r in rows
        ]

"""Model-based test: random sequences of store verbs against a simple in-memory model.

Hypothesis drives enqueue / claim / ack / fail / lease expiry / replay on each backend and
checks states, attempts, DLQ contents and idempotency against the documented semantics.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import hypothesis.strategies as st
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from runner import jobs
from runner.engine import tables
from runner.engine.base import DlqFilter, NewJob
from runner.engine.store import SqlStore

Q = "mq"
KEYS = st.sampled_from([None, None, "k1", "k2", "k3"])


@dataclass
class ModelJob:
    id: int
    key: str | None
    max_attempts: int
    state: str = "queued"
    attempt: int = 0
    token: str | None = None
    old_tokens: list[str] = field(default_factory=list)


class StoreMachine(RuleBasedStateMachine):
    url: str = ""

    @initialize()
    def open_store(self) -> None:
        self.store = SqlStore(self.url)
        self.store.migrate()
        with self.store.engine.begin() as conn:
            for table in (tables.job_errors, tables.idempotency_keys, tables.jobs):
                conn.execute(sa.delete(table))
        self.store.ensure_queues([Q])
        self.jobs: dict[int, ModelJob] = {}
        self.done_keys: set[str] = set()

    def teardown(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.dispose()

    # -- helpers -------------------------------------------------------------------------

    def _pending_with_key(self, key: str) -> ModelJob | None:
        for job in self.jobs.values():
            if job.key == key and job.state in ("queued", "running"):
                return job
        return None

    def _running(self) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.state == "running"]

    # -- rules ---------------------------------------------------------------------------

    @rule(key=KEYS, max_attempts=st.integers(1, 3))
    def enqueue(self, key: str | None, max_attempts: int) -> None:
        existing = self._pending_with_key(key) if key else None
        (job_id,) = self.store.enqueue(
            [NewJob(Q, "t", "{}", 0, max_attempts, 1, key)], max_depth=None, dedupe=True
        )
        if existing is not None:
            assert job_id == existing.id
        else:
            assert job_id not in self.jobs
            self.jobs[job_id] = ModelJob(job_id, key, max_attempts)

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        queued = sorted(j.id for j in self.jobs.values() if j.state == "queued")
        result = self.store.claim(Q, limit=limit, concurrency=1000, lease_s=3600, worker="m")
        got = result.jobs + result.duplicates
        assert len(got) == min(limit, len(queued))
        for c in got:
            job = self.jobs[c.id]
            assert job.state == "queued"
            job.attempt += 1
            assert c.attempt == job.attempt
            if job.token:
                job.old_tokens.append(job.token)
            job.token = c.lease_token
            job.state = "running"
        for c in result.duplicates:
            job = self.jobs[c.id]
            assert job.key in self.done_keys
            job.state, job.token = "succeeded", None
        for c in result.jobs:
            assert self.jobs[c.id].key not in self.done_keys or self.jobs[c.id].key is None

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), stale=st.booleans())
    def ack(self, data: st.DataObject, stale: bool) -> None:
        job = data.draw(st.sampled_from(self._running()))
        token = uuid.uuid4().hex if stale else job.token
        assert token is not None
        ok = self.store.ack(job.id, token, job.key)
        assert ok == (not stale)
        if ok:
            job.state, job.token = "succeeded", None
            if job.key:
                self.done_keys.add(job.key)

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data(), permanent=st.booleans())
    def fail(self, data: st.DataObject, permanent: bool) -> None:
        job = data.draw(st.sampled_from(self._running()))
        assert job.token is not None
        error = jobs.ErrorInfo("E", "failed")
        if permanent or job.attempt >= job.max_attempts:
            assert self.store.dead_letter(job.id, job.token, error, "owner")
            job.state = "dead"
        else:
            assert self.store.retry(job.id, job.token, error, 0.0)
            job.state = "queued"
        job.old_tokens.append(job.token)
        job.token = None

    @precondition(lambda self: any(j.old_tokens for j in self.jobs.values()))
    @rule(data=st.data())
    def stale_worker_acts(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from([j for j in self.jobs.values() if j.old_tokens]))
        token = data.draw(st.sampled_from(job.old_tokens))
        error = jobs.ErrorInfo("E", "late")
        assert not self.store.ack(job.id, token, job.key)
        assert not self.store.retry(job.id, token, error, 0.0)
        assert not self.store.dead_letter(job.id, token, error, "o")

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data())
    def lease_expires(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(self._running()))
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.update(tables.jobs)
                .where(tables.jobs.c.id == job.id)
                .values(lease_expires_at=0.0)
            )
        reaped = self.store.reap({Q: "owner"})
        assert [r.id for r in reaped] == [job.id]
        assert reaped[0].dead == (job.attempt >= job.max_attempts)
        job.state = "dead" if reaped[0].dead else "queued"
        assert job.token is not None
        job.old_tokens.append(job.token)
        job.token = None

    @precondition(lambda self: any(j.state == "dead" for j in self.jobs.values()))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from([j for j in self.jobs.values() if j.state == "dead"]))
        blocked = job.key is not None and self._pending_with_key(job.key) is not None
        result = self.store.dlq_replay(DlqFilter(queues=[Q], ids=[job.id]), operator="test")
        if blocked:
            assert result.skipped_pending_key == [job.id]
        else:
            assert result.replayed == [job.id]
            job.state, job.attempt = "queued", 0

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        if not hasattr(self, "store"):
            return
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tables.jobs.c.id, tables.jobs.c.state, tables.jobs.c.attempt)
            ).all()
        assert {r.id: (r.state, r.attempt) for r in rows} == {
            j.id: (j.state, j.attempt) for j in self.jobs.values()
        }
        dead = {d.id for d in self.store.dlq_list(DlqFilter(queues=[Q]))}
        assert dead == {j.id for j in self.jobs.values() if j.state == "dead"}
        pending_keys = [
            j.key for j in self.jobs.values() if j.key and j.state in ("queued", "running")
        ]
        assert len(pending_keys) == len(set(pending_keys))


def test_store_against_model(db_url: str) -> None:
    StoreMachine.url = db_url
    StoreMachine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    StoreMachine.TestCase().runTest()

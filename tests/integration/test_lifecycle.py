"""The job lifecycle through the public API and a real worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import runner
from runner.config.settings import Settings
from runner.engine.base import DlqFilter
from tests.helpers import Provider, email, write_pipeline


def load(project: Path, db_url: str, **overrides: object) -> runner.Pipeline:
    path = write_pipeline(project, **overrides)
    settings = Settings(
        database_url=db_url, poll_interval_s=0.02, reap_interval_s=0.1, shutdown_grace_s=5
    )
    return runner.load(path, settings=settings)


def test_a_job_runs_once_and_is_acked(project: Path, db_url: str) -> None:
    with load(project, db_url) as pipeline:
        job_id = pipeline.enqueue("email.send", email(1))
        worker = pipeline.run_worker(until_idle=True)
        assert worker.stats.processed == 1
        calls = Provider(project).calls()
        assert [(c.job_id, c.attempt, c.outcome) for c in calls] == [(job_id, 1, "ok")]
        stats = pipeline.status()["mail"]
        assert (stats.done, stats.ready, stats.in_flight, stats.dead) == (1, 0, 0, 0)


def test_duplicate_delivery_yields_one_business_effect(project: Path, db_url: str) -> None:
    with load(project, db_url) as pipeline:
        first = pipeline.enqueue("email.send", email(7))
        assert pipeline.enqueue("email.send", email(7)) == first  # pending key: deduplicated
        pipeline.run_worker(until_idle=True)
        second = pipeline.enqueue("email.send", email(7))  # key done: acked without running
        assert second != first
        worker = pipeline.run_worker(until_idle=True)
        assert worker.stats.duplicates == 1
        provider = Provider(project)
        assert len(provider.calls()) == 1
        assert provider.effects_by_key() == {"email:welcome:7": 1}
        assert pipeline.status()["mail"].done == 2


def test_flaky_job_succeeds_after_retries_with_growing_delays(project: Path, db_url: str) -> None:
    with load(project, db_url, base="200ms", jitter=0.2, max_attempts=5) as pipeline:
        job_id = pipeline.enqueue("email.send", email(2, "x@flaky3.example.com"))
        worker = pipeline.run_worker(until_idle=True)
        calls = Provider(project).calls()
        assert [c.outcome for c in calls] == ["unavailable"] * 3 + ["ok"]
        assert [c.attempt for c in calls] == [1, 2, 3, 4]
        assert {c.job_id for c in calls} == {job_id}
        gaps = [b.started - a.at for a, b in itertools.pairwise(calls)]
        assert gaps[0] >= 0.15 and gaps[0] < gaps[1] < gaps[2], gaps
        assert worker.stats.retried == 3 and worker.stats.processed == 1
        assert pipeline.store.dlq_list(DlqFilter(queues=["mail"])) == []


def test_poison_job_reaches_the_dlq_after_max_attempts_with_reasons(
    project: Path, db_url: str
) -> None:
    with load(project, db_url, max_attempts=3, base="50ms") as pipeline:
        job_id = pipeline.enqueue("email.send", email(3, "x@down.example.com"))
        pipeline.run_worker(until_idle=True)
        assert len(Provider(project).calls()) == 3
        (dead,) = pipeline.store.dlq_list(DlqFilter(queues=["mail"]))
        assert dead.id == job_id and dead.attempts == 3
        assert dead.owner == "mail-team@example.com"
        assert [e.type for e in dead.errors] == ["ProviderUnavailable"] * 3
        assert [e.attempt for e in dead.errors] == [1, 2, 3]
        assert "provider unavailable" in (dead.last_error or "")
        assert "Traceback" in dead.errors[0].traceback
        assert pipeline.status()["mail"].dead == 1


def test_non_retryable_error_goes_to_the_dlq_at_once(project: Path, db_url: str) -> None:
    with load(project, db_url, max_attempts=5) as pipeline:
        pipeline.enqueue("email.send", email(4, "x@reject.example.com"))
        worker = pipeline.run_worker(until_idle=True)
        assert len(Provider(project).calls()) == 1
        (dead,) = pipeline.store.dlq_list(DlqFilter(queues=["mail"]))
        assert dead.attempts == 1
        assert [e.type for e in dead.errors] == ["InvalidAddress"]
        assert worker.stats.dead_lettered == 1 and worker.stats.retried == 0


def test_a_handler_past_its_timeout_fails_its_attempt_and_holds_its_slot_until_it_returns(
    project: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread cannot be stopped: the attempt fails with JobTimeout when the timeout
    strikes, but the queue's only slot stays taken until the handler really returns, so
    the next job never runs beside it (a stalled provider gets no more calls than the
    queue's concurrency)."""
    overrides = {"concurrency": 1, "timeout": "1s", "visibility_timeout": "4s"}
    with load(project, db_url, max_attempts=1, **overrides) as pipeline:
        slow = pipeline.enqueue("email.send", email(1, simulate_work_s=2.5))
        quick = pipeline.enqueue("email.send", email(2))
        worker = pipeline.run_worker(until_idle=True)
        calls = {c.job_id: c for c in Provider(project).calls()}
        assert calls[slow].at - calls[slow].started >= 2.4  # it ran on to its end
        assert calls[quick].started >= calls[slow].at  # and nothing ran beside it
        (dead,) = pipeline.store.dlq_list(DlqFilter(queues=["mail"]))
        assert dead.id == slow and [e.type for e in dead.errors] == ["JobTimeout"]
        assert "longer than the 1s timeout" in (dead.last_error or "")
        assert worker.stats.dead_lettered == 1 and worker.stats.processed == 1
        stats = pipeline.status()["mail"]
        assert (stats.done, stats.dead, stats.in_flight) == (1, 1, 0)
    overran = [
        event
        for record in caplog.records
        if (event := getattr(record, "runner_event", {})).get("action") == "handler_overran"
    ]
    assert [(e["job_id"], e["queue"], e["stuck_threads"]) for e in overran] == [(slow, "mail", 1)]


def test_dlq_replay_runs_the_job_again(project: Path, db_url: str) -> None:
    with load(project, db_url, max_attempts=1) as pipeline:
        job_id = pipeline.enqueue("email.send", email(5, "x@flaky1.example.com"))
        pipeline.run_worker(until_idle=True)
        assert pipeline.status()["mail"].dead == 1
        replay = pipeline.store.dlq_replay(pipeline.dlq_filter(ids=[job_id]), operator="test")
        assert replay.replayed == [job_id]
        pipeline.run_worker(until_idle=True)
        stats = pipeline.status()["mail"]
        assert (stats.dead, stats.done) == (0, 1)
        assert [c.outcome for c in Provider(project).calls()] == ["unavailable", "ok"]


def test_backpressure_refuses_at_max_depth(project: Path, db_url: str) -> None:
    with load(project, db_url, max_depth=3) as pipeline:
        ids = pipeline.enqueue_many("email.send", [email(i) for i in range(1, 4)])
        assert len(ids) == 3
        with pytest.raises(runner.QueueFull) as info:
            pipeline.enqueue("email.send", email(99))
        assert isinstance(info.value, runner.RunnerError)
        assert "max_depth 3" in str(info.value)
        assert pipeline.status()["mail"].ready == 3


def test_enqueue_many_takes_any_iterable_and_nothing_is_nothing(project: Path, db_url: str) -> None:
    with load(project, db_url) as pipeline:
        assert pipeline.enqueue_many("email.send", []) == []
        ids = pipeline.enqueue_many("email.send", (email(i) for i in range(1, 4)))
        again = pipeline.enqueue_many("email.send", [email(2), email(4)])  # 2 is pending
        assert len(set(ids)) == 3 and again[0] == ids[1] and again[1] not in ids
        assert pipeline.status()["mail"].ready == 4


def test_invalid_payload_lists_each_field_and_stores_nothing(project: Path, db_url: str) -> None:
    with load(project, db_url) as pipeline:
        with pytest.raises(runner.InvalidPayload) as info:
            pipeline.enqueue_many(
                "email.send", [email(1), {"userId": "x", "templateId": "welcome"}]
            )
        paths = [p for p, _ in info.value.problems]
        assert any("userId" in p for p in paths) and any("to" in m for _, m in info.value.problems)
        with pytest.raises(runner.InvalidPayload) as secret:
            pipeline.enqueue("email.send", {**email(1), "variables": {"api_key": "CANARY-123"}})
        assert "CANARY-123" not in str(secret.value)
        stats = pipeline.status()["mail"]
        assert stats.ready == 0


def test_unknown_job_type_is_not_found(project: Path, db_url: str) -> None:
    with load(project, db_url) as pipeline, pytest.raises(runner.NotFound):
        pipeline.enqueue("email.nope", email(1))


def test_a_slot_renewal_in_flight_at_stop_leaves_no_slots_behind(
    project: Path, db_url: str
) -> None:
    """The worker waits for a renewal still running when it stops before it gives its
    slots back: a renewal committed after the release would leave a row that holds the
    next worker's slots until it expires (seconds of nothing)."""
    import time

    import sqlalchemy as sa

    with load(project, db_url) as pipeline:
        pipeline.enqueue("email.send", email(1))
        store = pipeline.store
        real = store.acquire_slots
        calls: list[float] = []

        def slow_renewal(*args: object, **kwargs: object) -> object:
            calls.append(time.monotonic())
            if len(calls) > 1:
                time.sleep(0.5)  # still running when the worker goes idle and stops
            return real(*args, **kwargs)  # type: ignore[arg-type]

        store.acquire_slots = slow_renewal  # type: ignore[method-assign]
        worker = pipeline.run_worker(until_idle=True)
        assert worker.stats.processed == 1 and len(calls) >= 2
        with store.engine.connect() as conn:
            left = conn.execute(sa.text("SELECT worker, held FROM runner_slots")).all()
        assert left == []

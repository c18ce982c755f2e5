"""Claiming ahead and waking up early, with real worker processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers import Provider, cli_env, email, max_overlap, start_cli, write_pipeline
from tests.integration.test_faults import enqueue_jsonl, status, wait_for

pytestmark = pytest.mark.slow


def test_jobs_claimed_ahead_are_given_back_at_once_on_sigterm(project: Path, db_url: str) -> None:
    """Short jobs are claimed ahead of the slots; a stopping worker runs none of those and
    leaves none leased: each job is done once or ready again with its attempt refunded."""
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, concurrency=2))
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=0.05) for i in range(1, 301)])
    worker = start_cli("up", pipeline, env=env)
    wait_for(lambda: status(pipeline, env)["done"] >= 20)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "action=release queue=mail" in stderr and "claimed ahead, not started" in stderr
    final = status(pipeline, env)
    assert final["in_flight"] == 0
    assert final["done"] + final["ready"] == 300
    provider = Provider(project)
    assert len(provider.calls()) == final["done"]
    assert max_overlap(provider.calls()) <= 2  # claimed ahead, but never run beyond the slots


def test_idle_worker_wakes_on_enqueue_without_waiting_for_its_poll(
    project: Path, db_url: str
) -> None:
    """Polling every 60 s: a job done within seconds was woken by the backend's wake-up
    (LISTEN/NOTIFY on PostgreSQL, the file's data version on SQLite)."""
    env = cli_env(db_url, RUNNER_POLL_INTERVAL_S="60")
    pipeline = str(write_pipeline(project))
    worker = start_cli("up", pipeline, env=env)
    try:
        time.sleep(2.0)  # started, claimed nothing, now waiting in its 60 s poll
        enqueue_jsonl(pipeline, env, [email(1)])
        wait_for(lambda: status(pipeline, env)["done"] == 1, timeout=20)
        enqueue_jsonl(pipeline, env, [email(2)])
        wait_for(lambda: status(pipeline, env)["done"] == 2, timeout=20)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert Provider(project).effects() == 2

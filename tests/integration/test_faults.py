"""Faults with real processes and real signals, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.engine.store import SqlStore
from tests.helpers import Provider, cli_env, email, max_overlap, run_cli, start_cli, write_pipeline

pytestmark = pytest.mark.slow


def status(pipeline: str, env: dict[str, str]) -> dict[str, float]:
    """Queue counts read straight from the database (fast enough to poll)."""
    store = SqlStore(env["RUNNER_DATABASE_URL"])
    try:
        return dataclasses.asdict(store.stats(["mail"], 300)["mail"])
    finally:
        store.dispose()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def enqueue_jsonl(pipeline: str, env: dict[str, str], payloads: list[dict[str, object]]) -> None:
    text = "\n".join(json.dumps(p) for p in payloads)
    result = run_cli("enqueue", pipeline, "email.send", "--jsonl", "-", env=env, input=text)
    assert result.returncode == 0, result.stderr


def test_worker_killed_mid_job_jobs_are_redelivered_and_done_once(
    project: Path, db_url: str
) -> None:
    env = cli_env(db_url)
    pipeline = str(
        write_pipeline(project, visibility_timeout="3s", timeout="2500ms", concurrency=4)
    )
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=1.5) for i in range(1, 9)])
    worker = start_cli("up", pipeline, env=env)
    try:
        wait_for(lambda: status(pipeline, env)["in_flight"] == 4)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert status(pipeline, env)["in_flight"] == 4  # leases still held by the dead worker
    rescuer = run_cli("up", pipeline, "--until-idle", env=env)
    assert rescuer.returncode == 0, rescuer.stderr
    final = status(pipeline, env)
    assert (final["done"], final["in_flight"], final["ready"], final["dead"]) == (8, 0, 0, 0)
    effects = Provider(project).effects_by_key()
    assert effects == {f"email:welcome:{i}": 1 for i in range(1, 9)}
    assert "action=reap" in rescuer.stderr


def test_sigterm_lets_in_flight_jobs_finish_and_exits_0(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, concurrency=2))
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=1.0) for i in range(1, 7)])
    worker = start_cli("up", pipeline, "--grace", "10s", env=env)
    wait_for(lambda: status(pipeline, env)["in_flight"] == 2)
    time.sleep(0.5)  # leased is not yet running: let the handlers start (they run for seconds)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "Traceback" not in stderr
    final = status(pipeline, env)
    assert final["done"] == 2  # the two in flight finished; no new claims after SIGTERM
    assert final["in_flight"] == 0 and final["ready"] == 4
    assert len(Provider(project).calls()) == 2


def test_grace_period_over_releases_leases_at_once(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, concurrency=2, visibility_timeout="30s", timeout="20s"))
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=6.0) for i in range(1, 3)])
    worker = start_cli("up", pipeline, "--grace", "300ms", env=env)
    wait_for(lambda: status(pipeline, env)["in_flight"] == 2)
    time.sleep(0.5)  # leased is not yet running: let the handlers start (they run for seconds)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert stderr.count("action=release ") == 2
    after = status(pipeline, env)
    assert after["in_flight"] == 0 and after["ready"] == 2  # not left for lease expiry


def test_concurrency_limit_holds_across_two_worker_processes(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, concurrency=3))
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=0.15) for i in range(1, 31)])
    up = run_cli("up", pipeline, "--until-idle", "--processes", "2", env=env, timeout=180)
    assert up.returncode == 0, up.stderr
    calls = Provider(project).calls()
    assert len(calls) == 30
    assert max_overlap(calls) <= 3
    assert max_overlap(calls) >= 2  # both processes really worked in parallel
    assert status(pipeline, env)["done"] == 30


def test_four_processes_share_one_sqlite_file_without_lock_errors(
    project: Path, tmp_path: Path
) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'shared.db'}")
    pipeline = str(write_pipeline(project, concurrency=8))
    enqueue_jsonl(pipeline, env, [email(i) for i in range(1, 1001)])
    up = run_cli("up", pipeline, "--until-idle", "--processes", "4", env=env, timeout=300)
    assert up.returncode == 0, up.stderr
    assert "database is locked" not in up.stderr and "Traceback" not in up.stderr
    assert "db_unavailable" not in up.stderr
    final = status(pipeline, env)
    assert (final["done"], final["dead"], final["ready"]) == (1000, 0, 0)
    assert Provider(project).effects() == 1000


def test_sigint_on_the_supervisor_drains_every_process(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, concurrency=2))
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=1.0) for i in range(1, 9)])
    supervisor = start_cli("up", pipeline, "--processes", "2", "--grace", "10s", env=env)
    wait_for(lambda: status(pipeline, env)["in_flight"] == 2)
    time.sleep(0.5)  # leased is not yet running: let the handlers start (they run for seconds)
    supervisor.send_signal(signal.SIGINT)
    _, stderr = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, stderr
    assert stderr.count("worker done:") == 2  # both children drained and reported
    final = status(pipeline, env)
    assert final["in_flight"] == 0
    # jobs running at the signal finished; jobs only claimed ahead were given back
    assert final["done"] + final["ready"] == 8 and final["done"] >= 1, stderr
    assert len(Provider(project).calls()) == final["done"]


def test_heartbeat_keeps_a_long_job_leased_and_a_dead_workers_job_is_rescued(
    project: Path, db_url: str
) -> None:
    env = cli_env(db_url)
    path = write_pipeline(
        project, concurrency=1, visibility_timeout="1s", timeout="20s", max_attempts=3
    )
    path.write_text(
        path.read_text().replace("    timeout: 20s\n", "    timeout: 20s\n    heartbeat: true\n")
    )
    pipeline = str(path)
    enqueue_jsonl(pipeline, env, [email(1, simulate_work_s=3.0)])
    alive = run_cli("up", pipeline, "--until-idle", env=env, timeout=60)
    assert alive.returncode == 0, alive.stderr
    calls = Provider(project).calls()
    assert [(c.attempt, c.outcome) for c in calls] == [(1, "ok")]  # 3s job, 1s lease: no redelivery
    assert "action=reap" not in alive.stderr

    enqueue_jsonl(pipeline, env, [email(2, simulate_work_s=3.0)])
    doomed = start_cli("up", pipeline, env=env)
    wait_for(lambda: status(pipeline, env)["in_flight"] == 1)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    rescuer = run_cli("up", pipeline, "--until-idle", env=env, timeout=60)
    assert rescuer.returncode == 0, rescuer.stderr
    assert "action=reap" in rescuer.stderr
    final = status(pipeline, env)
    assert (final["done"], final["in_flight"], final["dead"]) == (2, 0, 0)


def test_stale_worker_cannot_ack_after_its_lease_was_taken(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(
        write_pipeline(project, concurrency=1, visibility_timeout="2s", timeout="1500ms")
    )
    enqueue_jsonl(pipeline, env, [email(1, simulate_work_s=1.0)])
    stale = start_cli("up", pipeline, env=env)
    try:
        wait_for(lambda: status(pipeline, env)["in_flight"] == 1)
        time.sleep(0.3)  # leased is not yet running: let its handler start (it runs 1 s)
        stale.send_signal(signal.SIGSTOP)  # the worker stalls past its lease
        time.sleep(2.5)
        fresh = run_cli("up", pipeline, "--until-idle", env=env)
        assert fresh.returncode == 0, fresh.stderr
        assert status(pipeline, env)["done"] == 1
        stale.send_signal(signal.SIGCONT)
        time.sleep(2.0)  # its handler finishes and tries to record an outcome
        stale.send_signal(signal.SIGTERM)
        _, stderr = stale.communicate(timeout=30)
    finally:
        if stale.poll() is None:
            stale.kill()
    assert "action=lease_lost" in stderr and "outcome=rejected" in stderr
    final = status(pipeline, env)
    assert (final["done"], final["ready"], final["in_flight"], final["dead"]) == (1, 0, 0, 0)
    assert Provider(project).effects_by_key() == {"email:welcome:1": 1}


def terminate_runner_backends(admin: Any) -> int:
    """Terminate every runner connection to this database; how many there were."""
    import sqlalchemy as sa

    with admin.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'runner' AND datname = current_database()"
                )
            ).scalar()
            or 0
        )


def test_postgres_connection_loss_workers_reconnect_and_lose_nothing(
    project: Path, pg_url: str
) -> None:
    import sqlalchemy as sa

    env = cli_env(pg_url)
    pipeline = str(write_pipeline(project, concurrency=4))
    enqueue_jsonl(pipeline, env, [email(i, simulate_work_s=0.01) for i in range(1, 401)])
    worker = start_cli("up", pipeline, "--until-idle", env=env)
    admin = sa.create_engine(pg_url, poolclass=sa.NullPool)
    killed = 0
    try:
        for _ in range(6):
            time.sleep(0.4)
            killed += terminate_runner_backends(admin)
        _, stderr = worker.communicate(timeout=120)
    finally:
        admin.dispose()
        if worker.poll() is None:
            worker.kill()
    assert killed > 0
    assert worker.returncode == 0, stderr
    assert "action=db_unavailable" in stderr  # it really lost connections and went on
    assert "Traceback" not in stderr
    final = status(pipeline, env)
    assert (final["done"], final["ready"], final["in_flight"], final["dead"]) == (400, 0, 0, 0)
    assert Provider(project).effects() == 400


def test_status_after_a_drain_survives_connections_the_server_closed(
    project: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`up --until-idle` ends with a status table; pooled connections the server closed
    meanwhile are dropped and replaced, so the table still prints and the drain's exit
    code stands (this once surfaced as a traceback and exit 1 in the test above)."""
    import sqlalchemy as sa

    import runner
    from runner import cli
    from runner.config.settings import Settings

    pipeline = runner.load(write_pipeline(project), settings=Settings(database_url=pg_url))
    with pipeline:
        pipeline.enqueue("email.send", email(1))
        pipeline.status()  # the pool now holds open connections
        admin = sa.create_engine(pg_url, poolclass=sa.NullPool)
        killed = terminate_runner_backends(admin)
        admin.dispose()
        assert killed
        cli._print_final_status(pipeline)
    out, err = capsys.readouterr()
    assert "mail" in out and "unavailable" not in err


def test_listen_connection_lost_worker_reconnects_and_catches_up(
    project: Path, pg_url: str
) -> None:
    """Polling every 60s: a job picked up within seconds was woken by LISTEN/NOTIFY, also
    after the listening connection was terminated."""
    import sqlalchemy as sa

    env = cli_env(pg_url, RUNNER_POLL_INTERVAL_S="60")
    pipeline = str(write_pipeline(project))
    worker = start_cli("up", pipeline, env=env)
    admin = sa.create_engine(pg_url, poolclass=sa.NullPool)

    def listening() -> bool:
        with admin.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runner' "
                        "AND datname = current_database() "
                        "AND query IN ('LISTEN runner_jobs', 'SELECT 1')"
                    )
                ).scalar()
            )

    try:
        wait_for(listening)
        time.sleep(0.5)  # the worker is idle in its 60s poll wait
        enqueue_jsonl(pipeline, env, [email(1)])
        wait_for(lambda: status(pipeline, env)["done"] == 1, timeout=20)
        killed = terminate_runner_backends(admin)
        assert killed
        time.sleep(3)  # the listener notices (heartbeat), reconnects, catches up
        enqueue_jsonl(pipeline, env, [email(2)])
        wait_for(lambda: status(pipeline, env)["done"] == 2, timeout=20)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        admin.dispose()
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    assert "action=listen_lost" in stderr
    assert "Traceback" not in stderr

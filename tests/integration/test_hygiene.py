"""Clock, process hygiene, secrets and load: issue #3 faults 8, 9, 11 and the canary."""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.engine import tables
from runner.engine.base import NewJob
from runner.engine.store import SqlStore
from tests.helpers import cli_env, email, run_cli, start_cli, write_pipeline

pytestmark = pytest.mark.slow

SKEW = """
import time
_real = time.time
time.time = lambda: _real() + ({skew})
"""


def counts(env: dict[str, str]) -> dict[str, float]:
    store = SqlStore(env["RUNNER_DATABASE_URL"])
    try:
        return dataclasses.asdict(store.stats(["mail"], 300)["mail"])
    finally:
        store.dispose()


def test_leases_use_the_database_clock_not_the_workers(
    project: Path, db_url: str, tmp_path: Path
) -> None:
    """A worker whose clock is 2 hours slow holds a 3s lease while a normal worker reaps:
    if leases used the worker's clock, the job would be reaped and run twice."""
    skewed = tmp_path / "skew"
    skewed.mkdir()
    (skewed / "sitecustomize.py").write_text(SKEW.format(skew=-7200))
    env = cli_env(db_url)
    slow_env = {**env, "PYTHONPATH": str(skewed)}
    pipeline = str(
        write_pipeline(
            project,
            concurrency=1,
            visibility_timeout="3s",
            timeout="2500ms",
            base="300ms",
            jitter=0,
        )
    )
    assert (
        run_cli(
            "enqueue",
            pipeline,
            "email.send",
            "--payload",
            json.dumps(email(1, "a@flaky1.example.com", simulate_work_s=1.5)),
            env=env,
        ).returncode
        == 0
    )
    slow = start_cli("up", pipeline, "--until-idle", env=slow_env)
    time.sleep(0.5)
    normal = run_cli("up", pipeline, "--until-idle", env=env, timeout=60)
    _, slow_err = slow.communicate(timeout=60)
    assert slow.returncode == 0 and normal.returncode == 0, slow_err + normal.stderr
    assert "action=reap" not in slow_err + normal.stderr
    final = counts(env)
    assert (final["done"], final["dead"], final["in_flight"]) == (1, 0, 0)
    store = SqlStore(env["RUNNER_DATABASE_URL"])
    try:
        job = store.get_job(1)
        assert job is not None and job.attempts == 2  # one failure, retried after 300ms
        assert len(job.errors) == 1
    finally:
        store.dispose()


def test_postgres_connections_stay_within_pool_and_never_idle_in_transaction(
    project: Path, pg_url: str
) -> None:
    env = cli_env(pg_url, RUNNER_POOL_SIZE="3")
    pipeline = str(write_pipeline(project, concurrency=16))
    lines = "\n".join(json.dumps(email(i, simulate_work_s=0.01)) for i in range(1, 3001))
    assert (
        run_cli("enqueue", pipeline, "email.send", "--jsonl", "-", env=env, input=lines).returncode
        == 0
    )
    up = start_cli("up", pipeline, "--until-idle", "--processes", "2", env=env)
    admin = sa.create_engine(pg_url, poolclass=sa.NullPool)
    peak = 0
    idle_too_long = 0
    samples = 0
    try:
        with admin.connect() as conn:
            while up.poll() is None:
                row = conn.execute(
                    sa.text(
                        "SELECT count(*), count(*) FILTER (WHERE state = 'idle in transaction' "
                        "AND clock_timestamp() - state_change > interval '1 second') "
                        "FROM pg_stat_activity WHERE application_name = 'runner' "
                        "AND datname = current_database()"
                    )
                ).one()
                conn.rollback()
                peak = max(peak, int(row[0]))
                idle_too_long += int(row[1])
                samples += 1
                time.sleep(0.05)
        _, stderr = up.communicate(timeout=120)
    finally:
        admin.dispose()
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, stderr
    assert samples > 5 and peak > 0
    assert idle_too_long == 0
    assert peak <= 3 * 3  # pool size x (2 workers + the supervisor)
    assert counts(env)["done"] == 3000


def test_a_refused_secret_appears_nowhere(project: Path, db_url: str) -> None:
    canary = "CANARY-7f3a9c-do-not-leak"
    env = cli_env(db_url, RUNNER_LOG_LEVEL="DEBUG")
    pipeline = str(write_pipeline(project, max_attempts=1))
    outputs: list[str] = []

    def cli(*args: str, input: str | None = None) -> int:
        result = run_cli(*args, env=env, input=input)
        outputs.append(result.stdout + result.stderr)
        return result.returncode

    secret_payloads = [
        {**email(1), "password": canary},
        {**email(2), "variables": {"nested": [{"apiKey": canary}]}},
        {**email(3), "variables": {"Authorization": f"Bearer {canary}"}},
    ]
    for payload in secret_payloads:
        assert cli("enqueue", pipeline, "email.send", "--payload", json.dumps(payload)) == 65
    assert (
        cli(
            "enqueue",
            pipeline,
            "email.send",
            "--jsonl",
            "-",
            input="\n".join(json.dumps(p) for p in secret_payloads),
        )
        == 65
    )
    assert (
        cli(
            "enqueue",
            pipeline,
            "email.send",
            "--payload",
            json.dumps(email(4, "x@reject.example.com")),
        )
        == 0
    )
    assert cli("up", pipeline, "--until-idle") == 0
    assert cli("status", pipeline, "--json") == 0
    assert cli("dlq", "list", pipeline, "--json") == 0
    assert cli("dlq", "show", pipeline, "1") == 0
    assert all(canary not in text for text in outputs)
    store = SqlStore(db_url)
    try:
        with store.engine.connect() as conn:
            for table in tables.metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    assert canary not in json.dumps([str(v) for v in row])
    finally:
        store.dispose()
    for path in (project / "var").glob("*"):
        assert canary.encode() not in path.read_bytes()


def test_a_hundred_thousand_jobs_drain_with_bounded_memory_and_table(
    project: Path, db_url: str
) -> None:
    total = 100_000
    noop = project / "plugins" / "noop.py"
    noop.write_text(
        "import runner\n\n\ndef noop(job):\n    return None\n\n\n"
        "@runner.hookimpl\ndef runner_handlers():\n    return {'noop': noop}\n"
    )
    path = write_pipeline(project, concurrency=64)
    text = path.read_text().replace("plugins.email", "plugins.noop")
    path.write_text(text.replace("handler: email.send", "handler: noop"))
    store = SqlStore(db_url)
    try:
        store.migrate()
        store.ensure_queues(["mail"])
        for _ in range(total // 10_000):
            store.enqueue(
                [NewJob("mail", "email.send", "{}", 0, 3, 1) for _ in range(10_000)],
                max_depth=None,
                dedupe=True,
            )
        env = cli_env(
            db_url,
            RUNNER_DONE_RETENTION_S="0",
            RUNNER_PRUNE_INTERVAL_S="1",
            RUNNER_CLAIM_BATCH="64",
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        up = run_cli("up", str(path), "--until-idle", "--no-progress", env=env, timeout=900)
        assert up.returncode == 0, up.stderr
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        stats = store.stats(["mail"], 300)["mail"]
        assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)
        with store.engine.connect() as conn:
            left = conn.scalar(sa.select(sa.func.count()).select_from(tables.jobs))
        assert "processed 100000" in up.stderr
    finally:
        store.dispose()
    print(
        f"\npeak worker RSS {peak_kb / 1024:.0f} MiB (before {before / 1024:.0f}); rows left {left}"
    )
    assert peak_kb < 200 * 1024  # bounded: well under 200 MiB for 100k jobs
    assert left is not None and left < 30_000  # done jobs pruned while draining

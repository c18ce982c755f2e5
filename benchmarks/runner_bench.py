"""runner under the shared workload: a generated project (one queue `bench` with
concurrency 4, a no-op handler that appends its effect line), enqueued through the
Python API, drained by `runner up --until-idle --processes N`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import workload

PIPELINE = """\
plugins: [plugins.bench]
queues:
  bench:
    concurrency: 4
    visibility_timeout: 60s
    dlq: {owner: bench}
jobs:
  noop:
    queue: bench
    handler: noop
    schema: {type: object, required: [n], properties: {n: {type: integer}, t: {type: number}}}
    timeout: 30s
"""

PLUGIN = """
import os, time
from pathlib import Path
import runner

LOG = Path(__file__).resolve().parent.parent / "effects"


def noop(job):
    with open(LOG / f"{os.getpid()}.log", "a") as fh:
        fh.write(f"{job.payload['n']} {time.time()!r} {job.payload.get('t', 0)!r}\\n")


@runner.hookimpl
def runner_handlers():
    return {"noop": noop}
"""

BATCH = workload.BATCH


class Project:
    """A runner project in `root` on the database at `url`."""

    def __init__(self, root: Path, url: str, backend: str) -> None:
        self.root = root
        self.url = url
        self.backend = backend
        (root / "pipelines").mkdir(parents=True, exist_ok=True)
        (root / "plugins").mkdir(exist_ok=True)
        (root / "schemas").mkdir(exist_ok=True)
        (root / "plugins" / "__init__.py").write_text("")
        (root / "plugins" / "bench.py").write_text(PLUGIN)
        self.path = root / "pipelines" / "bench.yaml"
        self.path.write_text(PIPELINE)
        self.effects = workload.Effects(root / "effects")

    def load(self) -> Any:
        import runner
        from runner.config.settings import Settings

        return runner.load(self.path, settings=Settings(database_url=self.url))

    def migrate(self) -> None:
        self.load().store  # noqa: B018 (the first use creates and migrates the schema)

    def reset(self) -> None:
        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            tables = ("runner_job_errors", "runner_idempotency_keys", "runner_jobs", "runner_slots")
            for table in tables:
                conn.exec_driver_sql(f"DELETE FROM {table}")  # fixed names, not input
        engine.dispose()

    def env(self) -> dict[str, str]:
        return workload.clean_env(
            RUNNER_DATABASE_URL=self.url,
            RUNNER_LOG_LEVEL="WARNING",
            RUNNER_POLL_INTERVAL_S="0.05",
        )

    def enqueue_bulk(self, jobs: int) -> None:
        with self.load() as pipeline:
            for first in range(0, jobs, BATCH):
                last = min(jobs, first + BATCH)
                pipeline.enqueue_many("noop", [{"n": n} for n in range(first, last)])

    def workers(self, *args: str) -> workload.Workers:
        command = [sys.executable, "-m", "runner", "up", str(self.path), "--no-progress", *args]
        return workload.Workers([command], self.env(), self.root, self.root / "logs")

    def drain_once(self, jobs: int, processes: int) -> dict[str, Any]:
        """Enqueue `jobs` on an empty queue and drain them (the caller resets)."""
        self.enqueue_bulk(jobs)
        workers = self.workers("--until-idle", "--processes", str(processes))
        return workload.run_drain(workers, self.effects, jobs)

    # What the harness measures (workload.System).
    @property
    def common(self) -> dict[str, Any]:
        return {"system": "runner", "backend": self.backend}

    def bench_enqueue(self, args: Any) -> dict[str, Any]:
        counts = (args.single, args.jobs, args.repeat)
        with (
            workload.yardstick(self.backend, self.root / "yardstick", args) as raw,
            self.load() as pipeline,
        ):
            system = workload.Enqueuer(
                lambda n: pipeline.enqueue("noop", {"n": n}),
                lambda numbers: pipeline.enqueue_many("noop", [{"n": n} for n in numbers]),
                self.reset,
            )
            return workload.enqueue_rates(system, counts, raw)

    def drain(self, jobs: int, processes: int) -> dict[str, Any]:
        self.reset()
        return self.drain_once(jobs, processes)

    def drain_settings(self, processes: int) -> str:
        return f"`runner up --processes {processes}`, queue concurrency 4 (total)"

    def bench_pickup(self, samples: int) -> dict[str, Any]:
        self.reset()
        with self.load() as pipeline:

            def enqueue(n: int, t: float) -> None:
                pipeline.enqueue("noop", {"n": n, "t": t})

            return workload.pickup_run(self.workers(), enqueue, self.effects, samples)

    def settle(self) -> None:
        if self.backend == "postgres":
            workload.vacuum(self.url)


@contextlib.contextmanager
def opened(backend: str, root: Path, args: Any) -> Iterator[Project]:
    """runner's bench project in `root`, on a new SQLite file there or a new PostgreSQL
    database (dropped on the way out), its schema migrated."""
    drop = None
    if backend == "sqlite":
        root.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{root / 'bench.db'}"
    else:
        url, drop = workload.postgres_database(args.pg_url)
    try:
        project = Project(root, url, backend)
        project.migrate()
        yield project
    finally:
        if drop is not None:
            drop()

"""runner under the shared workload: a generated project (one queue `bench` with
concurrency 4, a no-op handler that appends its effect line), enqueued through the
Python API, drained by `runner up --until-idle --processes N`."""

from __future__ import annotations

import sys
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

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
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


def bench_enqueue(
    project: Project, counts: tuple[int, int, int], yardstick: workload.Enqueues | None
) -> dict[str, Any]:
    with project.load() as pipeline:
        system = workload.Enqueuer(
            lambda n: pipeline.enqueue("noop", {"n": n}),
            lambda numbers: pipeline.enqueue_many("noop", [{"n": n} for n in numbers]),
            project.reset,
        )
        return workload.enqueue_rates(system, counts, yardstick)


def bench_drain(project: Project, jobs: int, processes: int, repeat: int) -> dict[str, Any]:
    def once() -> dict[str, Any]:
        project.reset()
        return project.drain_once(jobs, processes)

    return {
        "processes": processes,
        "settings": f"`runner up --processes {processes}`, queue concurrency 4 (total)",
        **workload.repeated(once, repeat),
    }


def bench_pickup(project: Project, samples: int) -> dict[str, Any]:
    project.reset()
    project.effects.clear()
    workers = project.workers()
    workers.start()
    try:
        with project.load() as pipeline:

            def enqueue(n: int, t: float) -> None:
                pipeline.enqueue("noop", {"n": n, "t": t})

            workload.pace(samples, enqueue, project.effects)
            workload.wait_for_effects(project.effects, samples + 1)
    finally:
        workers.stop()
    project.effects.refresh()
    return workload.pickup_figures(project.effects) | {"peak_rss_mib": workers.peak_rss_mib}


def run(backend: str, url: str, root: Path, args: Any) -> list[dict[str, Any]]:
    """Every measure of runner on one backend, as result rows."""
    project = Project(root, url)
    project.migrate()
    common = {"system": "runner", "backend": backend}
    with workload.yardstick(backend, root / "yardstick", args) as raw:
        enqueue = bench_enqueue(project, (args.single, args.jobs, args.repeat), raw)
    rows = [{**common, "measure": "enqueue", **enqueue}]
    args.progress(rows[-1])
    for processes in (1, 2):
        drain = bench_drain(project, args.jobs, processes, args.repeat)
        rows.append({**common, "measure": "drain", **drain})
        args.progress(rows[-1])
    rows.append({**common, "measure": "pickup", **bench_pickup(project, args.samples)})
    args.progress(rows[-1])
    return rows

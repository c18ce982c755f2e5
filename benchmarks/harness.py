"""Measure runner on SQLite and PostgreSQL: enqueue (single, bulk), drain of N no-op jobs
with total concurrency 4 (1 and 2 processes), pickup latency of an idle worker, peak RSS,
and lost/duplicated effects (must be 0). Prints a table and appends JSON lines.

    python -m benchmarks                 # both backends, 20,000 jobs
    python -m benchmarks --smoke         # a few hundred jobs: proves the harness works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

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


def make_project(root: Path) -> Path:
    (root / "pipelines").mkdir(parents=True)
    (root / "plugins").mkdir()
    (root / "schemas").mkdir()
    (root / "effects").mkdir()
    (root / "plugins" / "__init__.py").write_text("")
    (root / "plugins" / "bench.py").write_text(PLUGIN)
    path = root / "pipelines" / "bench.yaml"
    path.write_text(PIPELINE)
    return path


def effects(root: Path) -> list[tuple[int, float, float]]:
    rows = []
    for log in (root / "effects").glob("*.log"):
        for line in log.read_text().splitlines():
            n, started, enqueued = line.split()
            rows.append((int(n), float(started), float(enqueued)))
    return rows


def reset(root: Path, url: str) -> None:
    for log in (root / "effects").glob("*.log"):
        log.unlink()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        for table in ("runner_job_errors", "runner_idempotency_keys", "runner_jobs"):
            conn.exec_driver_sql(f"DELETE FROM {table}")  # fixed names, not input
    engine.dispose()


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(RUNNER_DATABASE_URL=url, RUNNER_LOG_LEVEL="WARNING", RUNNER_POLL_INTERVAL_S="0.05")
    return env


def load(path: Path, url: str) -> Any:
    import runner
    from runner.config.settings import Settings

    return runner.load(path, settings=Settings(database_url=url))


def bench_enqueue(path: Path, url: str, single: int, bulk: int) -> dict[str, float]:
    pipeline = load(path, url)
    with pipeline:
        started = time.perf_counter()
        for n in range(single):
            pipeline.enqueue("noop", {"n": n})
        single_rate = single / (time.perf_counter() - started)
        started = time.perf_counter()
        for first in range(0, bulk, 1000):
            pipeline.enqueue_many("noop", [{"n": n} for n in range(first, min(bulk, first + 1000))])
        bulk_rate = bulk / (time.perf_counter() - started)
    return {"enqueue_single_jobs_s": single_rate, "enqueue_bulk_jobs_s": bulk_rate}


def bench_drain(root: Path, path: Path, url: str, jobs: int, processes: int) -> dict[str, Any]:
    reset(root, url)
    pipeline = load(path, url)
    with pipeline:
        for first in range(0, jobs, 1000):
            pipeline.enqueue_many("noop", [{"n": n} for n in range(first, min(jobs, first + 1000))])
    started = time.time()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "up",
            str(path),
            "--until-idle",
            "--no-progress",
            "--processes",
            str(processes),
        ],
        env=env_for(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"drain failed: {result.stderr[-2000:]}")
    done = effects(root)
    last = max((s for _, s, _ in done), default=started)
    unique = {n for n, _, _ in done}
    return {
        "jobs": jobs,
        "processes": processes,
        "drain_jobs_s": jobs / (last - started),
        "lost": jobs - len(unique),
        "duplicated": len(done) - len(unique),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def bench_latency(root: Path, path: Path, url: str, samples: int) -> dict[str, float]:
    reset(root, url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "runner", "up", str(path), "--no-progress"],
        env=env_for(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pipeline = load(path, url)
    try:
        with pipeline:
            pipeline.enqueue("noop", {"n": -1, "t": time.time()})  # warm up
            time.sleep(2.0)
            for n in range(samples):
                pipeline.enqueue("noop", {"n": n, "t": time.time()})
                time.sleep(0.02)
            deadline = time.time() + 30
            while len(effects(root)) < samples + 1 and time.time() < deadline:
                time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    waits = sorted((s - t) * 1000 for n, s, t in effects(root) if n >= 0)
    if not waits:
        return {}
    q = statistics.quantiles(waits, n=100) if len(waits) > 1 else [waits[0]] * 99
    return {"pickup_p50_ms": q[49], "pickup_p95_ms": q[94], "pickup_p99_ms": q[98]}


def postgres_database(admin_url: str) -> tuple[str, Any]:
    name = f"runner_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # generated name

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def run_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        root = Path(tmp)
        path = make_project(root)
        drop = None
        if backend == "sqlite":
            url = f"sqlite:///{root / 'bench.db'}"
        else:
            url, drop = postgres_database(args.pg_url)
        try:
            load(path, url).store  # noqa: B018 (migrate once)
            common = {"system": "runner", "backend": backend}
            single = 200 if args.smoke else 2000
            results.append(
                {**common, "measure": "enqueue", **bench_enqueue(path, url, single, args.jobs)}
            )
            for processes in (1, 2):
                results.append(
                    {
                        **common,
                        "measure": "drain",
                        **bench_drain(root, path, url, args.jobs, processes),
                    }
                )
            results.append(
                {
                    **common,
                    "measure": "pickup",
                    **bench_latency(root, path, url, 20 if args.smoke else 200),
                }
            )
        finally:
            if drop is not None:
                drop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="tiny run: proves it works")
    parser.add_argument("--out", default="benchmarks/results.jsonl")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if args.smoke:
        args.jobs = min(args.jobs, 300)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    with open(args.out, "a") as out:
        for backend in backends:
            for result in run_backend(backend, args):
                result.update(machine=machine, smoke=args.smoke)
                out.write(json.dumps(result) + "\n")
                shown = {
                    k: (round(v, 1) if isinstance(v, float) else v)
                    for k, v in result.items()
                    if k not in ("machine",)
                }
                print(json.dumps(shown))  # noqa: T201 (the harness's output)


if __name__ == "__main__":
    main()

"""Cost growth: does runner's drain slow down when the jobs table is big?

For each size R (10,000 and --growth-rows), a fresh database gets R finished jobs
inserted by one SQL statement (about 3 % 'dead', the rest 'succeeded', finished_at =
now), then N queued jobs are enqueued and drained by one worker process. Pruning keeps
done jobs for RUNNER_DONE_RETENTION_S (7 days by default), so the preloaded rows stay
in the table during the drain: the table really holds R rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import workload
from benchmarks.runner_bench import Project

SMALL_ROWS = 10_000
DEAD_EVERY = 33  # one row in 33 (about 3 %) is dead-lettered

# The SELECT that makes row i of the preload; `i` comes from generate_series on
# PostgreSQL and from a recursive CTE on SQLite. Every column of runner_jobs
# (runner/engine/tables.py) is set as the engine sets it for a finished job.
COLUMNS = (
    "queue, type, state, priority, payload, schema_version, attempt, max_attempts, "
    "idempotency_key, enqueued_at, run_at, started_at, finished_at, lease_token, "
    "lease_expires_at, worker, last_error, dead_owner, duplicate"
)
ROW = f"""
SELECT 'bench', 'noop',
       CASE WHEN i % {DEAD_EVERY} = 0 THEN 'dead' ELSE 'succeeded' END,
       0, '{{"n": -2}}', 1,
       CASE WHEN i % {DEAD_EVERY} = 0 THEN 3 ELSE 1 END, 3,
       NULL, :now - 60, :now - 60, :now - 1, :now, NULL,
       NULL, 'bench-preload',
       CASE WHEN i % {DEAD_EVERY} = 0 THEN 'RuntimeError: preloaded' END,
       CASE WHEN i % {DEAD_EVERY} = 0 THEN 'bench' END,
       false
"""

PRELOAD = {
    "postgres": f"INSERT INTO runner_jobs ({COLUMNS}) {ROW} FROM generate_series(1, :rows) AS i",
    "sqlite": (
        f"INSERT INTO runner_jobs ({COLUMNS}) "
        "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows) "
        f"{ROW} FROM seq"
    ),
}


def preload(url: str, backend: str, rows: int) -> tuple[int, float]:
    """Insert `rows` finished jobs; return the highest id and the seconds it took."""
    started = time.perf_counter()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(PRELOAD[backend]), {"now": time.time(), "rows": rows})
        max_id = conn.execute(sa.text("SELECT max(id) FROM runner_jobs")).scalar_one()
    if backend == "postgres":
        # Autovacuum would ANALYZE the table on its own after this insert, but only
        # at its next round (autovacuum_naptime, 1 min by default, then the analyze
        # threshold); running it now makes the planner's row counts right for the
        # drain instead of depending on when autovacuum happens to come by.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE runner_jobs")
    # SQLite: nothing runs ANALYZE on a deployed runner file, so none is run here.
    engine.dispose()
    return int(max_id), time.perf_counter() - started


def drain_on_table(
    root: Path, backend: str, url: str, rows: int, jobs: int, repeat: int
) -> dict[str, Any]:
    project = Project(root, url)
    project.migrate()
    max_id, seconds = preload(url, backend, rows)

    def once() -> dict[str, Any]:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.begin() as conn:  # the previous repeat's jobs, never the preload
            conn.execute(sa.text("DELETE FROM runner_jobs WHERE id > :id"), {"id": max_id})
            conn.exec_driver_sql("DELETE FROM runner_job_errors")
        engine.dispose()
        return project.drain_once(jobs, processes=1)

    return {"preload_s": seconds, **workload.repeated(once, repeat)}


def bench_growth(backend: str, root: Path, args: Any) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    sizes = {"small": SMALL_ROWS, "large": args.growth_rows}
    result: dict[str, Any] = {"system": "runner", "backend": backend, "measure": "growth"}
    result["rows"] = sizes
    for label, rows in sizes.items():
        drop = None
        if backend == "sqlite":
            url = f"sqlite:///{root / f'growth-{label}.db'}"
        else:
            url, drop = workload.postgres_database(args.pg_url)
        try:
            figures = drain_on_table(root / label, backend, url, rows, args.jobs, args.repeat)
        finally:
            if drop is not None:
                drop()
        result[f"rows_{label}"] = rows
        result[f"preload_s_{label}"] = figures["preload_s"]
        result[f"drain_jobs_s_{label}"] = figures["drain_jobs_s"]
        result[f"drain_jobs_s_{label}_runs"] = figures["drain_jobs_s_runs"]
        result["lost"] = result.get("lost", 0) + figures["lost"]
        result["duplicated"] = result.get("duplicated", 0) + figures["duplicated"]
        result["peak_rss_mib"] = max(result.get("peak_rss_mib", 0.0), figures["peak_rss_mib"])
    result.update(jobs=args.jobs, processes=1, repeat=args.repeat)
    small, large = result["drain_jobs_s_small"], result["drain_jobs_s_large"]
    result["ratio_large_small"] = large / small if small else None
    return result

"""Cost growth: does runner's drain slow down when the jobs table is big?

For each size R (10,000 and --growth-rows), a fresh database gets R finished jobs
inserted by one SQL statement (about 3 % 'dead', the rest 'succeeded', finished_at =
now). Then, in alternating rounds on the two tables, N queued jobs are enqueued and
drained by one worker process. Pruning keeps done jobs for RUNNER_DONE_RETENTION_S (7
days by default), so the preloaded rows stay in the table during the drain: the table
really holds R rows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
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


def table_drain(
    stack: contextlib.ExitStack, root: Path, backend: str, args: Any, rows: int
) -> tuple[Callable[[], dict[str, Any]], float]:
    """A database preloaded with `rows` finished jobs (dropped when `stack` closes), and a
    drain of `args.jobs` queued jobs on it that leaves the preload in place; with the
    seconds the preload took."""
    if backend == "sqlite":
        root.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{root / 'growth.db'}"
    else:
        url, drop = workload.postgres_database(args.pg_url)
        stack.callback(drop)
    project = Project(root, url, backend)
    project.migrate()
    max_id, seconds = preload(url, backend, rows)

    def once() -> dict[str, Any]:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.begin() as conn:  # the previous repeat's jobs, never the preload
            conn.execute(sa.text("DELETE FROM runner_jobs WHERE id > :id"), {"id": max_id})
            conn.exec_driver_sql("DELETE FROM runner_job_errors")
        engine.dispose()
        return project.drain_once(args.jobs, processes=1)

    return once, seconds


def bench_growth(backend: str, root: Path, args: Any) -> dict[str, Any]:
    """Both tables are loaded first, then drained in alternating rounds (small, large;
    large, small; ...): `ratio_large_small` is the median of the per-round ratios, so the
    machine's drift between the two does not count as growth."""
    sizes = {"small": SMALL_ROWS, "large": args.growth_rows}
    result: dict[str, Any] = {"system": "runner", "backend": backend, "measure": "growth"}
    result["rows"] = sizes
    with contextlib.ExitStack() as stack:
        drains = {}
        for label, rows in sizes.items():
            drains[label], result[f"preload_s_{label}"] = table_drain(
                stack, root / label, backend, args, rows
            )
            result[f"rows_{label}"] = rows
        figures = workload.paired_runs(drains, args.repeat)
    for label, drain in figures.items():
        result[f"drain_jobs_s_{label}"] = drain["drain_jobs_s"]
        result[f"drain_jobs_s_{label}_runs"] = drain["drain_jobs_s_runs"]
    runs = list(figures.values())
    result.update(
        jobs=args.jobs,
        processes=1,
        repeat=args.repeat,
        lost=sum(r["lost"] for r in runs),
        duplicated=sum(r["duplicated"] for r in runs),
        peak_rss_mib=max(r["peak_rss_mib"] for r in runs),
        ratio_large_small=workload.paired_ratio(
            figures["large"]["drain_jobs_s_runs"], figures["small"]["drain_jobs_s_runs"]
        ),
    )
    return result

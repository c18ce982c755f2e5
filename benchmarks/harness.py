"""Measure runner on SQLite and PostgreSQL, and optionally peer libraries under the same
workload in the same run: enqueue one at a time and in bulk (jobs/s), the drain of N
queued no-op jobs with total concurrency 4 in 1 and in 2 worker processes (from starting
the worker command to the last handler run), pickup latency p50/p95/p99 of an idle
worker (jobs enqueued 20 ms apart, enqueue to handler start), the worker's peak RSS
(largest single process), and lost/duplicated effects (every handler run appends a
line; both must be 0). Each measure is appended as a JSON line to --out; the terminal
gets a line per measure and, at the end, tables of the figures and ratios.

options:
  --backend {sqlite,postgres,all}
        which backends to measure (default all); peers run on theirs only
  --jobs N
        jobs per drain and per bulk enqueue (default 20,000; at most 300 with --smoke)
  --repeat K
        measure every drain and every enqueue K times and report the median, with all
        K rates in the JSON (`drain_jobs_s_runs`, `enqueue_single_jobs_s_runs`,
        `enqueue_bulk_jobs_s_runs`); lost/duplicated are summed over the K runs
        (default 3, or 1 with --smoke)
  --peers [NAME ...]
        also run peer libraries, after runner on each backend: pgqueuer and
        procrastinate (PostgreSQL, each on its own new database), huey (SqliteHuey, its
        own file). No names: all of them. Needs the bench extra
        (`.venv/bin/pip install -e '.[dev,bench]'`); without it the harness stops
        with an error before measuring anything
  --growth-rows R
        cost growth (measure `growth`, runner only): drain N jobs with 1 process on a
        jobs table preloaded with 10,000 and then R finished jobs (default 1,000,000;
        0 skips it; must be more than 10,000). Skipped with --smoke
  --smoke
        a tiny run (300 jobs, 20 pickup samples, 1 repeat, no growth, no limit) that proves
        the harness works; the test suite runs it and asserts no speed
  --out PATH
        JSON lines are appended here (default benchmarks/results.jsonl)
  --pg-url URL
        SQLAlchemy URL of a PostgreSQL database used to create and drop the benchmark
        databases (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)

Each backend also gets the raw-SQL limit (measure `limit`, system `raw-sql`,
benchmarks/limit.py): the least SQL a durable queue can do here, one INSERT per
transaction, 1,000 per transaction, and a drain claiming 1 and 100 per transaction.

runner's own modules are compiled to bytecode before anything is measured, as pip
compiles an installed package's (the peers' are, from their wheels): an editable install
under PYTHONDONTWRITEBYTECODE would compile them again at every worker start.

Every system's enqueues get one short unmeasured round first. The enqueues of runner and
of every peer take turns with the raw limit's own enqueues, 100 single enqueues or one
batch at a time (alternating which goes first): the machine drifts over a run, and a
ratio of rates measured minutes apart carries the drift. The reported enqueue ratios
(runner to raw, runner to peer) are ratios of these shares. For the same reason the drains
run in rounds: runner and every peer on the backend each have their own database open at
once, and round k drains with each of them in turn, the order rotated by k. A drain
ratio is the median of the per-round ratios. The cost growth drains its two tables in
alternating rounds, and its ratio is the median of the per-round ratios too. Before the
pickups every PostgreSQL database is vacuumed (VACUUM ANALYZE: no idle worker pays for
the dead rows the drains left, or shares the machine with autovacuum cleaning them up),
and each system's samples are taken in 4 rounds of 50, rotated like the drains.

Every result row has `system` (runner, raw-sql or the peer's name), `backend`, `measure`
(enqueue, drain, pickup, growth, limit) and: enqueue_single_jobs_s, enqueue_bulk_jobs_s
and their `_runs`, raw_enqueue_single_jobs_s_runs and raw_enqueue_bulk_jobs_s_runs (the
paired raw runs), enqueue_single_share and enqueue_bulk_share (the medians of the paired
rate ÷ raw rate; not in a smoke run) (enqueue); drain_jobs_s, drain_jobs_s_runs (in
round order), paired_with (the systems drained in the same rounds), processes, lost,
duplicated, peak_rss_mib (drain); pickup_p50_ms, pickup_p95_ms, pickup_p99_ms (pickup);
rows_small, rows_large, drain_jobs_s_small, drain_jobs_s_large, ratio_large_small (growth);
enqueue_single_jobs_s, enqueue_bulk_jobs_s, drain_one_jobs_s, drain_batch_jobs_s,
handler_1_thread_jobs_s, handler_4_threads_jobs_s (limit: the last two are the
benchmark's handler alone on 1 and 4 threads, the ceiling of a drain); machine,
runner_version, and a peer's `version`. How each peer is set up for concurrency 4 is
in its module docstring (benchmarks/peers/*_peer.py) and in its rows' `settings`.

    python -m benchmarks                          # runner, both backends, 20,000 jobs
    python -m benchmarks --peers                  # and PgQueuer, Procrastinate, Huey
    python -m benchmarks --smoke                  # a few hundred jobs, proves it works
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import gc
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console

from benchmarks import growth, limit, peers, report, runner_bench, workload
from benchmarks.peers import base as peer_base

__all__ = ["main"]

BACKENDS = ("sqlite", "postgres")
PICKUP_ROUNDS = 4  # the pickup samples of each system are taken in this many rounds
USAGE = (
    "python -m benchmarks [--backend {sqlite,postgres,all}] [--jobs N] [--repeat K]\n"
    "       [--peers [NAME ...]] [--growth-rows R] [--smoke] [--out PATH] [--pg-url URL]"
)


def measure_drains(
    systems: list[workload.System], processes: int, args: argparse.Namespace
) -> None:
    """The drains of every system with `processes` workers, in rounds."""
    drains = {
        system.common["system"]: functools.partial(system.drain, args.jobs, processes)
        for system in systems
    }
    figures = workload.paired_runs(drains, args.repeat)
    for system in systems:
        args.progress(
            {
                **system.common,
                "measure": "drain",
                "processes": processes,
                "settings": system.drain_settings(processes),
                **figures[system.common["system"]],
            }
        )


def measure_pickups(systems: list[workload.System], args: argparse.Namespace) -> None:
    """Each database vacuumed first (no system's idle worker pays for the dead rows the
    drains left, or shares the machine with autovacuum cleaning them up), then the
    pickups in rounds like the drains, the samples of a system's rounds taken together."""
    for system in systems:
        system.settle()
    rounds = PICKUP_ROUNDS if args.samples >= 10 * PICKUP_ROUNDS else 1
    per_round = args.samples // rounds
    pickups = workload.in_rounds(
        {
            system.common["system"]: functools.partial(system.bench_pickup, per_round)
            for system in systems
        },
        rounds,
    )
    for system in systems:
        runs = pickups[system.common["system"]]
        settings = {"settings": runs[0]["settings"]} if "settings" in runs[0] else {}
        figures = workload.pickup_figures(runs)
        args.progress({**system.common, "measure": "pickup", **figures, **settings})


def run_backend(backend: str, args: argparse.Namespace) -> None:
    """Every measure on one backend: runner and the peers that run on it, each on its
    own database or file, all open at once so that their drains can run in rounds
    (`workload.paired_runs`); then the raw limit and runner's cost growth."""
    with (
        tempfile.TemporaryDirectory(prefix=f"runner-bench-{backend}-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        root = Path(tmp)
        systems: list[workload.System] = [
            stack.enter_context(runner_bench.opened(backend, root / "runner", args))
        ]
        for name in args.peer_names:
            if peers.PEERS[name][0] == backend:
                peer = peer_base.opened(peers.load(name), root / name, args)
                systems.append(stack.enter_context(peer))
        # What the harness holds (its imports, the peers' modules) is frozen out of the
        # collector's way, as `runner up` freezes its own (runner/entry.py): otherwise a
        # full collection walking all of it (about 30 ms here) lands inside whichever
        # system's measure happens to allocate the object that triggers it.
        gc.collect()
        gc.freeze()
        for system in systems:
            args.progress({**system.common, "measure": "enqueue", **system.bench_enqueue(args)})
        for processes in (1, 2):
            measure_drains(systems, processes, args)
        measure_pickups(systems, args)
        stack.close()  # drop the databases before the limit and growth make their own
        if not args.smoke:
            args.progress(limit.bench_limit(backend, root / "limit", args))
        if args.growth_rows:
            args.progress(growth.bench_growth(backend, root / "growth", args))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        usage=USAGE,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quiet = argparse.SUPPRESS  # every option is described in the docstring above
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all", help=quiet)
    parser.add_argument("--jobs", type=int, default=20_000, help=quiet)
    parser.add_argument("--repeat", type=int, default=None, help=quiet)
    peer_names = sorted(peers.PEERS)
    parser.add_argument("--peers", nargs="*", choices=peer_names, default=None, help=quiet)
    parser.add_argument("--growth-rows", type=int, default=1_000_000, help=quiet)
    parser.add_argument("--smoke", action="store_true", help=quiet)
    parser.add_argument("--out", default="benchmarks/results.jsonl", help=quiet)
    pg_url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    parser.add_argument("--pg-url", default=pg_url, help=quiet)
    args = parser.parse_args(argv)
    if args.smoke:
        args.jobs = min(args.jobs, 300)
        args.growth_rows = 0
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 3
    args.single = 200 if args.smoke else 2000  # jobs enqueued one at a time
    args.samples = 20 if args.smoke else 200  # pickup latency samples
    if args.jobs < 1 or args.repeat < 1:
        parser.error("--jobs and --repeat must be at least 1")
    if args.growth_rows and args.growth_rows <= growth.SMALL_ROWS:
        parser.error(f"--growth-rows must be 0 or more than {growth.SMALL_ROWS:,}")
    args.backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    args.peer_names = []
    if args.peers is not None:
        names = args.peers or list(peers.PEERS)
        args.peer_names = [n for n in names if peers.PEERS[n][0] in args.backends]
        if not args.peer_names:
            parser.error(f"no peer runs on --backend {args.backend}: {', '.join(names)}")
        if absent := peers.missing(args.peer_names):
            parser.error(
                f"--peers needs the bench extra (missing: {', '.join(absent)}); "
                "install it with: .venv/bin/pip install -e '.[dev,bench]'"
            )
    return args


def machine(args: argparse.Namespace) -> dict[str, Any]:
    postgres = None
    if "postgres" in args.backends:
        engine = sa.create_engine(args.pg_url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            postgres = conn.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def compile_runner() -> None:
    """runner's modules compiled to bytecode before anything is measured, as pip compiles
    an installed package's. An editable install (this checkout) under
    PYTHONDONTWRITEBYTECODE, which this machine sets, compiled them again on every worker
    start: about 80 ms of a 0.43 s start, which the peers, installed from wheels with
    their bytecode, never pay."""
    import runner

    compileall.compile_dir(Path(runner.__file__).parent, quiet=1)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    compile_runner()
    console = Console() if sys.stdout.isatty() else Console(width=160)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    context = {"machine": machine(args), "smoke": args.smoke, "runner_version": version("runner")}
    with open(args.out, "a") as out:
        last = [time.monotonic()]

        def progress(row: dict[str, Any]) -> None:
            now = time.monotonic()
            row.update(context, measure_s=now - last[0])  # wall time of this measure
            last[0] = now
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            console.print(report.progress_line(row), highlight=False)

        args.progress = progress
        for backend in args.backends:
            run_backend(backend, args)
    report.render(rows, console)
    console.print(
        f"\n{len(rows)} results appended to {args.out} in {time.monotonic() - started:,.0f} s"
    )


if __name__ == "__main__":
    main()

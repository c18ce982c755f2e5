"""Procrastinate on PostgreSQL, with its defaults.

Worker: `python -m procrastinate --app procrastinate_worker.app --log-level warning
worker --concurrency C` on a `PsycopgConnector` (its psycopg 3 pool, default sizes),
with every other worker default (LISTEN/NOTIFY on, 5 s polling fallback, jobs kept in
the table when done). `--log-level warning` only keeps its default INFO lines per job
out of the figures, as for the other systems. Procrastinate's concurrency is per
worker process, so total concurrency 4 is one process with `--concurrency 4`, or two
with `--concurrency 2`.

Enqueue: `defer_async(**kwargs)` for one job; `batch_defer_async(*kwargs)` (its batch
API, one statement) for 1,000 jobs at a time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.peers.base import CONCURRENCY, Peer

if TYPE_CHECKING:
    from procrastinate.types import JSONValue

WORKER = '''"""Procrastinate app for the benchmark: procrastinate --app procrastinate_worker.app"""
import json
import os
import time
from pathlib import Path

from procrastinate import App, PsycopgConnector

CONFIG = json.loads(Path(__file__).with_name("bench_config.json").read_text())
EFFECTS = Path(CONFIG["effects"])

app = App(connector=PsycopgConnector(conninfo=CONFIG["database"]))


@app.task(name="noop")
async def noop(n: int, t: float = 0.0) -> None:
    with open(EFFECTS / f"{os.getpid()}.log", "a") as fh:
        fh.write(f"{n} {time.time()!r} {t!r}\\n")
'''


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


TABLES = "procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs"


class ProcrastinatePeer(Peer):
    name = "procrastinate"
    package = "procrastinate"
    backend = "postgres"
    worker_source = WORKER

    def setup(self) -> None:
        from procrastinate import App, PsycopgConnector

        self.loop = asyncio.Runner()
        self.app = App(connector=PsycopgConnector(conninfo=self.database))
        self.loop.run(_awaited(self.app.open_async()))  # an awaitable, not a coroutine
        self.loop.run(self.app.schema_manager.apply_schema_async())
        self.task = self.app.configure_task("noop")  # by name, as the worker registers it

    def close(self) -> None:
        self.loop.run(self.app.close_async())
        self.loop.close()

    def reset(self) -> None:
        query = f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"  # fixed names
        self.loop.run(self.app.connector.execute_query_async(query))

    def enqueue_one(self, n: int, t: float = 0.0) -> None:
        self.loop.run(self.task.defer_async(n=n, t=t))

    def enqueue_batch(self, numbers: Sequence[int]) -> None:
        kwargs: list[dict[str, JSONValue]] = [{"n": n} for n in numbers]
        self.loop.run(self.task.batch_defer_async(*kwargs))

    def commands(self, processes: int) -> list[list[str]]:
        command = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "procrastinate_worker.app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(CONCURRENCY // processes),
        ]
        return [command] * processes

    @classmethod
    def settings(cls, processes: int) -> str:
        return f"{processes} x `procrastinate worker --concurrency {CONCURRENCY // processes}`"

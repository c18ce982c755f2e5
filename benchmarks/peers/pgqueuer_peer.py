"""PgQueuer on PostgreSQL, in its default configuration except what concurrency 4 needs.

Worker: `python pgqueuer_worker.py ...`, a script that does what `pgq run
pgqueuer_worker:create` does (pgqueuer.run(factory) on uvloop, PgQueuer's INFO logging,
which logs nothing per job) on one asyncpg connection as in PgQueuer's quick start, with
the `run` defaults (dequeue timeout 30 s, heartbeat 30 s, LISTEN/NOTIFY wake-ups, log
aggregation every 30 s). Not the `pgq run` CLI itself: with pgqueuer 1.6.0 and typer
0.29 it fails at start-up, whatever the options (its --log-level value reaches
setup_fancy_logger as a str: "AttributeError: 'str' object has no attribute 'name'").

Concurrency 4: `max_concurrent_tasks`, PgQueuer's per-worker cap on picked jobs
(enforced by its dequeue query), is 4 with 1 process and 2 each with 2 processes.
PgQueuer requires max_concurrent_tasks >= 2 x batch_size, so the batch size is 2 and 1
instead of its default 10; every other setting is the default.

Not chosen: `concurrency_limit=4` on the entrypoint (a limit enforced across all
workers, which would keep batch size 10). With it, a drain ran at about 40 jobs/s
instead of about 1,000 (2,000 jobs, this machine). As read in its source: completions
are logged (and their rows deleted) from a buffer flushed at batch_size (10) entries or
every 0.1 s, so with 4 jobs in flight each slot stays "picked" until the periodic flush,
and the worker's next dequeue waits its 0.1 s minimum poll interval. That is a
property of that configuration, not PgQueuer's throughput, so the per-worker cap is
the one compared.

Enqueue: `Queries.enqueue(entrypoint, payload)` for one job; the same call with lists
(its batch form, one INSERT ... SELECT unnest) for 1,000 jobs at a time.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from benchmarks.peers.base import CONCURRENCY, Peer

WORKER = '''"""PgQueuer worker for the benchmark: what `pgq run pgqueuer_worker:create` does.

python pgqueuer_worker.py CONCURRENCY_LIMIT BATCH_SIZE [MAX_CONCURRENT_TASKS]
"""
import json
import os
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.adapters.cli.cli import asyncio_run
from pgqueuer.core import logconfig
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

CONFIG = json.loads(Path(__file__).with_name("bench_config.json").read_text())
EFFECTS = Path(CONFIG["effects"])
LIMIT, BATCH, *CAP = (int(a) for a in sys.argv[1:])


@asynccontextmanager
async def create():
    connection = await asyncpg.connect(CONFIG["database"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop", concurrency_limit=LIMIT)
    async def noop(job: Job) -> None:
        body = json.loads(job.payload)
        with open(EFFECTS / f"{os.getpid()}.log", "a") as fh:
            fh.write(f"{body['n']} {time.time()!r} {body.get('t', 0)!r}\\n")

    try:
        yield pgq
    finally:
        await connection.close()


if __name__ == "__main__":
    logconfig.setup_fancy_logger(logconfig.LogLevel.INFO)  # as pgq run's default
    run = pgqueuer.run(create, batch_size=BATCH, max_concurrent_tasks=CAP[0] if CAP else None)
    asyncio_run(run)  # uvloop when installed, as pgq run
'''


class PgQueuerPeer(Peer):
    name = "pgqueuer"
    package = "pgqueuer"
    backend = "postgres"
    worker_source = WORKER

    def setup(self) -> None:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.loop = asyncio.Runner()
        self.connection = self.loop.run(asyncpg.connect(self.database))
        self.queries = Queries(AsyncpgDriver(self.connection))
        self.loop.run(self.queries.install())

    def close(self) -> None:
        self.loop.run(self.connection.close())
        self.loop.close()

    def reset(self) -> None:
        self.loop.run(self.queries.clear_queue())
        self.loop.run(self.queries.clear_queue_log())

    def enqueue_one(self, n: int, t: float = 0.0) -> None:
        payload = json.dumps({"n": n, "t": t}).encode()
        self.loop.run(self.queries.enqueue("noop", payload))

    def enqueue_batch(self, numbers: Sequence[int]) -> None:
        payloads: list[bytes | None] = [json.dumps({"n": n}).encode() for n in numbers]
        entrypoints = ["noop"] * len(payloads)
        self.loop.run(self.queries.enqueue(entrypoints, payloads, [0] * len(payloads)))

    def commands(self, processes: int) -> list[list[str]]:
        script = str(self.root / "pgqueuer_worker.py")
        cap = CONCURRENCY // processes
        # entrypoint limit 0 (none), batch size, per-worker cap
        return [[sys.executable, script, "0", str(cap // 2), str(cap)]] * processes

    @classmethod
    def settings(cls, processes: int) -> str:
        cap = CONCURRENCY // processes
        return (
            f"{processes} x pgqueuer.run (as `pgq run`, asyncpg) with "
            f"max_concurrent_tasks={cap}, batch_size={cap // 2}"
        )


class PgQueuerDefaultsPeer(PgQueuerPeer):
    """PgQueuer exactly as `pgq run` starts it: batch size 10 and no per-worker cap on
    jobs in progress (so not held to concurrency 4: a no-op drain runs up to 10 at once
    per process). Reported beside the capped configuration because it is PgQueuer's
    default, the one its published figures use."""

    name = "pgqueuer_defaults"

    def commands(self, processes: int) -> list[list[str]]:
        script = str(self.root / f"{self.name}_worker.py")
        return [[sys.executable, script, "0", "10"]] * processes

    @classmethod
    def settings(cls, processes: int) -> str:
        return (
            f"{processes} x pgqueuer.run (as `pgq run`, asyncpg) with its defaults: "
            "batch_size=10, no max_concurrent_tasks (not capped at 4)"
        )

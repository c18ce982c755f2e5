"""The shared driver for peer libraries: the same measures, the same workload and the same
JSON keys as runner's (benchmarks/runner_bench.py), each peer supplying only how to
install its schema, enqueue, clear, and start its own worker.

A peer's worker runs a module written into a temporary folder (`<peer>_worker.py`, read
by the peer's own CLI); the module reads `bench_config.json` beside it and appends the
same effect lines as runner's handler.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

from benchmarks import workload

BATCH = workload.BATCH
CONCURRENCY = 4  # total, whatever the number of processes


class Peer:
    """One peer library on one fresh database (or SQLite file) in `root`."""

    name: ClassVar[str]
    package: ClassVar[str]
    backend: ClassVar[str]  # "postgres" or "sqlite"
    worker_source: ClassVar[str]
    stop_signal: ClassVar[int] = signal.SIGTERM
    url: str | None = None  # PostgreSQL: the database's SQLAlchemy URL (set by `opened`)

    def __init__(self, root: Path, database: str) -> None:
        self.root = root
        self.database = database  # a libpq DSN, or a SQLite file path
        self.effects = workload.Effects(root / "effects")
        (root / "bench_config.json").write_text(
            json.dumps({"database": database, "effects": str(self.effects.folder)})
        )
        (root / f"{self.name}_worker.py").write_text(self.worker_source)

    # What each peer implements.
    def setup(self) -> None:
        """Install the schema and open the client used for enqueueing."""

    def close(self) -> None:
        """Close the client."""

    def reset(self) -> None:
        raise NotImplementedError

    def enqueue_one(self, n: int, t: float = 0.0) -> None:
        raise NotImplementedError

    def enqueue_batch(self, numbers: Sequence[int]) -> None:
        raise NotImplementedError

    def commands(self, processes: int) -> list[list[str]]:
        """The worker command lines for `processes` processes, total concurrency 4."""
        raise NotImplementedError

    @classmethod
    def settings(cls, processes: int) -> str:
        """How concurrency 4 is configured, for the JSON and the report."""
        raise NotImplementedError

    # Shared.
    def workers(self, processes: int) -> workload.Workers:
        env = workload.clean_env(PYTHONPATH=str(self.root))
        return workload.Workers(
            self.commands(processes), env, self.root, self.root / "logs", self.stop_signal
        )

    def enqueue_many(self, jobs: int) -> None:
        for first in range(0, jobs, BATCH):
            self.enqueue_batch(range(first, min(jobs, first + BATCH)))

    # What the harness measures (workload.System).
    @property
    def common(self) -> dict[str, Any]:
        return {"system": self.name, "backend": self.backend, "version": version(self.package)}

    def bench_enqueue(self, args: Any) -> dict[str, Any]:
        system = workload.Enqueuer(self.enqueue_one, self.enqueue_batch, self.reset)
        with workload.yardstick(self.backend, self.root / "yardstick", args) as raw:
            return workload.enqueue_rates(system, (args.single, args.jobs, args.repeat), raw)

    def drain(self, jobs: int, processes: int) -> dict[str, Any]:
        self.reset()
        self.enqueue_many(jobs)
        return workload.run_drain(self.workers(processes), self.effects, jobs)

    def drain_settings(self, processes: int) -> str:
        return self.settings(processes)

    def bench_pickup(self, samples: int) -> dict[str, Any]:
        self.reset()
        run = workload.pickup_run(self.workers(1), self.enqueue_one, self.effects, samples)
        return run | {"settings": self.settings(1)}

    def settle(self) -> None:
        if self.url is not None:
            workload.vacuum(self.url)


@contextlib.contextmanager
def opened(peer_class: type[Peer], root: Path, args: Any) -> Iterator[Peer]:
    """A peer in `root`, on a new SQLite file there or a new PostgreSQL database (dropped
    on the way out), its schema installed and its client open."""
    root.mkdir(parents=True, exist_ok=True)
    drop = None
    if peer_class.backend == "sqlite":
        database = str(root / f"{peer_class.name}.db")
    else:
        url, drop = workload.postgres_database(args.pg_url)
        database = workload.libpq_dsn(url)
    try:
        peer = peer_class(root, database)
        if drop is not None:
            peer.url = url
        peer.setup()
        try:
            yield peer
        finally:
            peer.close()
    finally:
        if drop is not None:
            drop()

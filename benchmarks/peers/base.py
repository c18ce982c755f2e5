"""The shared driver for peer libraries: the same measures, the same workload and the same
JSON keys as runner's (benchmarks/runner_bench.py), each peer supplying only how to
install its schema, enqueue, clear, and start its own worker.

A peer's worker runs a module written into a temporary folder (`<peer>_worker.py`, read
by the peer's own CLI); the module reads `bench_config.json` beside it and appends the
same effect lines as runner's handler.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Sequence
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


def bench_enqueue(peer: Peer, args: Any) -> dict[str, Any]:
    system = workload.Enqueuer(peer.enqueue_one, peer.enqueue_batch, peer.reset)
    with workload.yardstick(peer.backend, peer.root / "yardstick", args) as raw:
        return workload.enqueue_rates(system, (args.single, args.jobs, args.repeat), raw)


def bench_drain(peer: Peer, jobs: int, processes: int, repeat: int) -> dict[str, Any]:
    def once() -> dict[str, Any]:
        peer.reset()
        peer.enqueue_many(jobs)
        return workload.run_drain(peer.workers(processes), peer.effects, jobs)

    return {
        "processes": processes,
        "settings": peer.settings(processes),
        **workload.repeated(once, repeat),
    }


def bench_pickup(peer: Peer, samples: int) -> dict[str, Any]:
    peer.reset()
    peer.effects.clear()
    workers = peer.workers(1)
    workers.start()
    try:
        workload.pace(samples, peer.enqueue_one, peer.effects)
        workload.wait_for_effects(peer.effects, samples + 1)
    finally:
        workers.stop()
    peer.effects.refresh()
    return workload.pickup_figures(peer.effects) | {
        "settings": peer.settings(1),
        "peak_rss_mib": workers.peak_rss_mib,
    }


def run(peer_class: type[Peer], root: Path, database: str, args: Any) -> list[dict[str, Any]]:
    """Every measure of one peer, as result rows with runner's keys."""
    peer = peer_class(root, database)
    common = {
        "system": peer.name,
        "backend": peer.backend,
        "version": version(peer.package),
    }
    rows = []
    peer.setup()
    try:
        measures: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("enqueue", lambda: bench_enqueue(peer, args)),
            ("drain", lambda: bench_drain(peer, args.jobs, 1, args.repeat)),
            ("drain", lambda: bench_drain(peer, args.jobs, 2, args.repeat)),
            ("pickup", lambda: bench_pickup(peer, args.samples)),
        ]
        for measure, bench in measures:
            rows.append({**common, "measure": measure, **bench()})
            args.progress(rows[-1])
    finally:
        peer.close()
    return rows

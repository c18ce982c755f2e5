"""Huey on SQLite: `SqliteHuey` on its own file, with Huey's defaults.

Worker: `python -m huey.bin.huey_consumer huey_worker.huey -k thread -w W -q` (the
`huey_consumer` CLI): thread workers, every other consumer default (polling from
0.1 s backing off x1.15 up to 10 s when the queue is empty, the scheduler every second,
WAL with SQLite's default synchronous FULL, results stored unless None). `-q` only
lowers its logging to WARNING: its default logs two INFO lines per task, and per-job
log lines are kept out of every system's figures (runner and Procrastinate run at
WARNING; PgQueuer's default INFO logs nothing per job).
Concurrency is per consumer process: 1 process with `-w 4`, or 2 processes with
`-w 2`, both on the same SQLite file. The consumer is stopped with SIGINT, its graceful
signal.

Enqueue: calling the task for one job; `task.map(iterable)` for 1,000 at a time.
Huey has no batch insert: map enqueues one task per transaction, so its "bulk"
figure is its single enqueue in a loop.

Semantics to keep in mind: SqliteStorage.dequeue deletes the task row before the
handler runs (at most once), where runner and the PostgreSQL peers lease or lock.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from benchmarks.peers.base import CONCURRENCY, Peer

WORKER = '''"""Huey instance for the benchmark: huey_consumer huey_worker.huey"""
import json
import os
import time
from pathlib import Path

from huey import SqliteHuey

CONFIG = json.loads(Path(__file__).with_name("bench_config.json").read_text())
EFFECTS = Path(CONFIG["effects"])

huey = SqliteHuey("bench", filename=CONFIG["database"])


@huey.task()
def noop(n, t=0.0):
    with open(EFFECTS / f"{os.getpid()}.log", "a") as fh:
        fh.write(f"{n} {time.time()!r} {t!r}\\n")
'''


class HueyPeer(Peer):
    name = "huey"
    package = "huey"
    backend = "sqlite"
    worker_source = WORKER
    stop_signal = signal.SIGINT

    def setup(self) -> None:
        # The same module the consumer imports, under the same name, so the task's
        # registered name ("huey_worker.noop") matches on both sides.
        spec = importlib.util.spec_from_file_location("huey_worker", self.root / "huey_worker.py")
        assert spec is not None and spec.loader is not None
        self.module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)

    def close(self) -> None:
        self.module.huey.storage.close()

    def reset(self) -> None:
        self.module.huey.flush()

    def enqueue_one(self, n: int, t: float = 0.0) -> None:
        self.module.noop(n, t)

    def enqueue_batch(self, numbers: Sequence[int]) -> None:
        self.module.noop.map(numbers)

    def commands(self, processes: int) -> list[list[str]]:
        command = [
            sys.executable,
            "-m",
            "huey.bin.huey_consumer",
            "huey_worker.huey",
            "-k",
            "thread",
            "-w",
            str(CONCURRENCY // processes),
            "-q",
        ]
        return [command] * processes

    @classmethod
    def settings(cls, processes: int) -> str:
        return f"{processes} x `huey_consumer -k thread -w {CONCURRENCY // processes}`"

"""What every system under test shares: the effect files its handlers append to, worker
processes started and stopped the same way, and the figures computed from the effects.

A handler run appends one line `n started_time enqueued_time` to `effects/<pid>.log`; a
drain is timed from starting the worker command(s) to the last `started_time`, and the
counts of lost and duplicated jobs come from the same lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

POLL_S = 0.05  # how often effects and worker exits are checked
STARTUP_S = 60.0  # a worker may take this long to run its first job
STALL_S = 30.0  # then give up when no new effect appears for this long
STOP_GRACE_S = 30.0  # after the stop signal, wait this long before SIGKILL

BATCH = 1000  # jobs per batch-enqueue call, for every system
WARM_UP_SINGLE = 200  # the unmeasured round before enqueue rates are measured
WARM_UP_BULK = 2 * BATCH
SINGLE_CHUNK = 100  # single enqueues a system makes before the yardstick takes its turn


class Effects:
    """Reads the effect files incrementally (only complete new lines), so polling a
    20,000-line drain costs the harness next to nothing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._offsets: dict[Path, int] = {}
        self.rows: list[tuple[int, float, float]] = []
        self.unique: set[int] = set()

    def clear(self) -> None:
        for log in self.folder.glob("*.log"):
            log.unlink()
        self._offsets.clear()
        self.rows.clear()
        self.unique.clear()

    def refresh(self) -> int:
        for log in self.folder.glob("*.log"):
            offset = self._offsets.get(log, 0)
            with open(log, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1  # a line being written is read next time
            for line in chunk[:end].decode().splitlines():
                n, started, enqueued = line.split()
                self.rows.append((int(n), float(started), float(enqueued)))
                self.unique.add(int(n))
            self._offsets[log] = offset + end
        return len(self.rows)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/<pid>/task/<tid>/children (Linux)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as fh:
                    pids.extend(int(child) for child in fh.read().split())
        except (OSError, ValueError):
            pass  # gone meanwhile
        i += 1
    return pids


def peak_rss_kib(pid: int) -> int:
    """The process's own high-water RSS (VmHWM), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Workers:
    """Worker processes started from commands, with output to files (never pipes).

    Peak RSS is the largest VmHWM of any worker process or descendant, sampled every
    POLL_S by a thread. Not getrusage/wait4: a child's ru_maxrss starts from the RSS
    of the process that spawned it (the kernel keeps the pre-exec high-water mark), so
    it would report the harness's own size for any worker smaller than the harness.
    """

    commands: Sequence[Sequence[str]]
    env: dict[str, str]
    cwd: Path
    logs: Path
    stop_signal: int = signal.SIGTERM
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    maxrss_kib: int = 0
    stopping: bool = False
    _sampler: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for i, command in enumerate(self.commands):
            with open(self.logs / f"worker-{i}.log", "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        list(command),
                        env=self.env,
                        cwd=self.cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._done.wait(POLL_S):
            for proc in self.procs:
                for pid in process_tree(proc.pid):
                    self.maxrss_kib = max(self.maxrss_kib, peak_rss_kib(pid))

    def poll(self) -> bool:
        """True when every process has exited."""
        return all(proc.poll() is not None for proc in self.procs)

    def failed_early(self) -> str | None:
        """The log tail of a process that exited non-zero before being asked to stop."""
        if self.stopping:
            return None
        for i, proc in enumerate(self.procs):
            if proc.poll():
                text = (self.logs / f"worker-{i}.log").read_text(errors="replace")
                command = " ".join(self.commands[i])
                return f"{command} exited {proc.returncode}: {text[-2000:]}"
        return None

    def stop(self) -> None:
        self.stopping = True
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(self.stop_signal)
        for proc in self.procs:
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()

    @property
    def peak_rss_mib(self) -> float:
        return self.maxrss_kib / 1024  # VmHWM is in KiB


def run_drain(workers: Workers, effects: Effects, jobs: int) -> dict[str, Any]:
    """Start the workers, wait until every job ran once (or the workers exit by
    themselves, or nothing happens for STALL_S), stop them, and count."""
    effects.clear()
    started = time.time()
    workers.start()
    progress_at = time.monotonic() + STARTUP_S - STALL_S
    seen = 0
    try:
        while True:
            done = workers.poll()
            if failure := workers.failed_early():
                raise SystemExit(f"drain failed: {failure}")
            count = effects.refresh()
            if count != seen:
                seen, progress_at = count, time.monotonic()
            if done or len(effects.unique) >= jobs or time.monotonic() - progress_at > STALL_S:
                break
            time.sleep(POLL_S)
    finally:
        workers.stop()
    effects.refresh()  # late duplicates count too
    return drain_figures(effects, jobs, started) | {"peak_rss_mib": workers.peak_rss_mib}


def drain_figures(effects: Effects, jobs: int, started: float) -> dict[str, Any]:
    ours = [(n, s) for n, s, _ in effects.rows if 0 <= n < jobs]
    unique = {n for n, _ in ours}
    last = max((s for _, s in ours), default=started)
    return {
        "jobs": jobs,
        "drain_jobs_s": len(unique) / (last - started) if last > started else 0.0,
        "drain_s": last - started,
        "lost": jobs - len(unique),
        "duplicated": len(ours) - len(unique),
    }


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several drains of one system: the median rate, every raw rate in the order they
    ran, and the worst of the rest (lost and duplicated summed over the runs, the largest
    peak RSS)."""
    rates = [r["drain_jobs_s"] for r in runs]
    return {
        "jobs": runs[0]["jobs"],
        "repeat": len(runs),
        "drain_jobs_s": statistics.median(rates),
        "drain_jobs_s_runs": rates,
        "lost": sum(r["lost"] for r in runs),
        "duplicated": sum(r["duplicated"] for r in runs),
        "peak_rss_mib": max(r.get("peak_rss_mib", 0.0) for r in runs),
    }


T = TypeVar("T")


def in_rounds(measures: Mapping[str, Callable[[], T]], times: int) -> dict[str, list[T]]:
    """Run every measure `times` times, round by round: each round runs every measure
    once, in an order rotated by one each round (A B C, B C A, C A B), so that each
    system's k-th run sits minutes, not a quarter of an hour, from every other system's
    k-th run, and no system always goes first (after the others' drains, say)."""
    names = list(measures)
    runs: dict[str, list[T]] = {name: [] for name in names}
    for k in range(times):
        shift = k % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(measures[name]())
    return runs


def paired_runs(
    measures: Mapping[str, Callable[[], dict[str, Any]]], times: int
) -> dict[str, dict[str, Any]]:
    """Drains in rounds (`in_rounds`), summed up per system (`summary`). Each summary gets
    `paired_with`, the names in the same rounds: the ratio of two systems is then the
    median of their per-round ratios (`paired_ratio`), from which the machine's drift
    over a run cancels out, as it does for the enqueues."""
    runs = in_rounds(measures, times)
    names = list(measures)
    return {name: summary(runs[name]) | {"paired_with": names} for name in names}


def paired_ratio(mine: Sequence[float], theirs: Sequence[float]) -> float | None:
    """The median of run-by-run ratios of two systems measured in the same rounds."""
    if not mine or len(mine) != len(theirs) or not all(theirs):
        return None
    return statistics.median(a / b for a, b in zip(mine, theirs, strict=True))


class System(Protocol):
    """A system under the shared workload, opened on its own database or file
    (``runner_bench.opened``, ``peers.base.opened``): what the harness measures."""

    @property
    def common(self) -> dict[str, Any]:
        """The keys of every result row: `system`, `backend` (and a peer's `version`)."""
        ...

    def bench_enqueue(self, args: Any) -> dict[str, Any]: ...
    def drain(self, jobs: int, processes: int) -> dict[str, Any]:
        """Empty the queue, enqueue `jobs` and drain them with `processes` workers."""
        ...

    def drain_settings(self, processes: int) -> str: ...
    def settle(self) -> None:
        """Before the pickups: on PostgreSQL, VACUUM ANALYZE the system's database."""
        ...

    def bench_pickup(self, samples: int) -> dict[str, Any]:
        """An idle worker started, `samples` jobs 20 ms apart (`pace`), stopped: the waits
        (`waits_ms`), the worker's peak RSS, and (a peer) its `settings`."""
        ...


class Enqueues(Protocol):
    """What enqueue_rates measures: one job at a time, a batch, and emptying the queue."""

    def one(self, n: int) -> None: ...
    def batch(self, numbers: range) -> None: ...
    def reset(self) -> None: ...


@dataclass
class Enqueuer:
    one: Callable[[int], None]
    batch: Callable[[range], None]
    reset: Callable[[], None]


def _chunks(total: int, size: int) -> list[range]:
    return [range(first, min(total, first + size)) for first in range(0, total, size)]


def _timed(systems: Sequence[Enqueues], chunks: list[range], bulk: bool, k: int) -> list[float]:
    """Run every chunk on each system in turn (the first to go alternating from chunk to
    chunk, and from repeat to repeat with `k`); each system's rate over its chunks."""
    spent = [0.0] * len(systems)
    for c, numbers in enumerate(chunks):
        order = range(len(systems)) if (c + k) % 2 == 0 else reversed(range(len(systems)))
        for i in order:
            system = systems[i]
            started = time.perf_counter()
            if bulk:
                system.batch(numbers)
            else:
                for n in numbers:
                    system.one(n)
            spent[i] += time.perf_counter() - started
    total = sum(len(c) for c in chunks)
    return [total / s for s in spent]


def enqueue_rates(
    system: Enqueues, counts: tuple[int, int, int], yardstick: Enqueues | None = None
) -> dict[str, Any]:
    """Enqueue `n_single` jobs one at a time, then `n_bulk` in batches of `BATCH`, `times`
    times on an emptied queue: the median rates and every raw rate. One run of 2,000
    single enqueues varies by about 10 % here; the median of three holds still.

    With a ``yardstick`` (the raw limit's enqueues, ``limit.raw_enqueues``) the two take
    turns within each run, a chunk of SINGLE_CHUNK single enqueues or one batch at a time,
    the first to go alternating, and each one's rate is over its own chunks. The row gets
    the yardstick's rates and the median over the runs of the system's rate ÷ the
    yardstick's (``enqueue_single_share``, ``enqueue_bulk_share``): the machine's drift,
    down to a fraction of a second, cancels out of them (a single enqueue on SQLite is
    mostly an fsync, whose time wanders by a fifth from one second to the next here),
    and the report's ratios between systems are ratios of their shares."""
    n_single, n_bulk, times = counts
    measured = [system] if yardstick is None else [system, yardstick]
    # One short unmeasured round first, for every system alike: the first enqueues of a
    # process pay for first uses (statements compiled and prepared, files and the WAL
    # grown to size); runner's first bulk run was the slowest of three every time.
    for each in measured:
        each.reset()
    _timed(measured, _chunks(min(n_single, WARM_UP_SINGLE), SINGLE_CHUNK), False, 0)
    _timed(measured, _chunks(min(n_bulk, WARM_UP_BULK), BATCH), True, 0)
    runs: list[list[float]] = []  # per run: single, bulk, and the yardstick's single, bulk
    for k in range(times):
        for each in measured:
            each.reset()
        singles = _timed(measured, _chunks(n_single, SINGLE_CHUNK), False, k)
        bulks = _timed(measured, _chunks(n_bulk, BATCH), True, k)
        runs.append([singles[0], bulks[0], *singles[1:], *bulks[1:]])
    row: dict[str, Any] = {
        "repeat": times,
        "enqueue_single_jobs_s": statistics.median(r[0] for r in runs),
        "enqueue_single_jobs_s_runs": [r[0] for r in runs],
        "enqueue_bulk_jobs_s": statistics.median(r[1] for r in runs),
        "enqueue_bulk_jobs_s_runs": [r[1] for r in runs],
    }
    if yardstick is not None:
        row["raw_enqueue_single_jobs_s_runs"] = [r[2] for r in runs]
        row["raw_enqueue_bulk_jobs_s_runs"] = [r[3] for r in runs]
        row["enqueue_single_share"] = statistics.median(r[0] / r[2] for r in runs)
        row["enqueue_bulk_share"] = statistics.median(r[1] / r[3] for r in runs)
    return row


@contextlib.contextmanager
def yardstick(backend: str, root: Path, args: Any) -> Iterator[Enqueues | None]:
    """The raw limit's enqueues on their own file or database, beside a system's (none in
    a smoke run, which measures no limit)."""
    if args.smoke:
        yield None
        return
    from benchmarks.limit import raw_enqueues  # limit imports this module

    with raw_enqueues(backend, root, args.pg_url) as raw:
        yield raw


def wait_for_effects(effects: Effects, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while effects.refresh() < count and time.monotonic() < deadline:
        time.sleep(POLL_S)


def pickup_waits(effects: Effects) -> list[float]:
    """Enqueue-to-start waits in ms of the samples (n >= 0; the warm-up job is n = -1)."""
    return [(s - t) * 1000 for n, s, t in effects.rows if n >= 0]


def pickup_run(
    workers: Workers, enqueue: Callable[[int, float], None], effects: Effects, samples: int
) -> dict[str, Any]:
    """One pickup measure: the workers started idle, `samples` jobs paced (`pace`), the
    workers stopped; the waits (`waits_ms`) and the workers' peak RSS."""
    effects.clear()
    workers.start()
    try:
        pace(samples, enqueue, effects)
        wait_for_effects(effects, samples + 1)
    finally:
        workers.stop()
    effects.refresh()
    return {"waits_ms": pickup_waits(effects), "peak_rss_mib": workers.peak_rss_mib}


def pickup_figures(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The percentiles of the waits of every pickup run together (``waits_ms`` of each),
    and the largest peak RSS."""
    waits = sorted(w for run in runs for w in run["waits_ms"])
    rss = max((run.get("peak_rss_mib", 0.0) for run in runs), default=0.0)
    if not waits:
        return {"samples": 0, "peak_rss_mib": rss}
    q = statistics.quantiles(waits, n=100) if len(waits) > 1 else [waits[0]] * 99
    return {
        "samples": len(waits),
        "rounds": len(runs),
        "pickup_p50_ms": q[49],
        "pickup_p95_ms": q[94],
        "pickup_p99_ms": q[98],
        "pickup_max_ms": waits[-1],
        "peak_rss_mib": rss,
    }


def vacuum(url: str) -> None:
    """VACUUM ANALYZE every table of a PostgreSQL database (SQLAlchemy URL)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def pace(samples: int, enqueue: Callable[[int, float], None], effects: Effects) -> None:
    """The pickup workload: a warm-up job (n = -1) run to completion so the worker is up,
    2 s of idle, then `samples` jobs 20 ms apart, each carrying its enqueue time."""
    enqueue(-1, time.time())
    wait_for_effects(effects, 1, timeout=STARTUP_S)
    time.sleep(2.0)
    for n in range(samples):
        enqueue(n, time.time())
        time.sleep(0.02)


def postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """A new database on the admin URL's server, and a function that drops it."""
    name = f"runner_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # generated name

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def libpq_dsn(sqlalchemy_url: str) -> str:
    """postgresql+psycopg://... -> postgresql://... (what asyncpg and psycopg accept)."""
    url = sa.make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "BENCH_"))}
    env.update(extra)
    return env

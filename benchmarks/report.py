"""The terminal report: one line per result as it arrives, then tables of the main
figures, runner's cost growth, and runner-versus-peer ratios."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.workload import paired_ratio

BACKENDS = ("sqlite", "postgres")


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(row: dict[str, Any] | None) -> str:
    if not row or "pickup_p50_ms" not in row:
        return "-"
    return " / ".join(_num(row[k], 1) for k in ("pickup_p50_ms", "pickup_p95_ms", "pickup_p99_ms"))


def progress_line(row: dict[str, Any]) -> str:
    head = f"{row['system']} {row['backend']} {row['measure']}"
    measure = row["measure"]
    if measure == "enqueue":
        return (
            f"{head}: single {_num(row['enqueue_single_jobs_s'])} jobs/s, "
            f"bulk {_num(row['enqueue_bulk_jobs_s'])} jobs/s"
        )
    if measure == "drain":
        runs = ", ".join(_num(r) for r in row["drain_jobs_s_runs"])
        return (
            f"{head} ({row['processes']} process{'es' if row['processes'] > 1 else ''}): "
            f"{_num(row['drain_jobs_s'])} jobs/s (runs: {runs}), lost {row['lost']}, "
            f"duplicated {row['duplicated']}, peak RSS {_num(row['peak_rss_mib'])} MiB"
        )
    if measure == "pickup":
        return f"{head}: p50/p95/p99 {_ms(row)} ms ({row.get('samples', 0)} samples)"
    if measure == "limit":
        return (
            f"{head}: single {_num(row['enqueue_single_jobs_s'])}, bulk "
            f"{_num(row['enqueue_bulk_jobs_s'])}, drain 1/txn {_num(row['drain_one_jobs_s'])}, "
            f"100/txn {_num(row['drain_batch_jobs_s'])} jobs/s; the handler alone on 1 / 4 "
            f"threads {_num(row.get('handler_1_thread_jobs_s', 0))} / "
            f"{_num(row.get('handler_4_threads_jobs_s', 0))} jobs/s"
        )
    if measure == "growth":
        return (
            f"{head}: {_num(row['drain_jobs_s_small'])} jobs/s on {_num(row['rows_small'])} rows, "
            f"{_num(row['drain_jobs_s_large'])} jobs/s on {_num(row['rows_large'])} rows "
            f"(ratio {_num(row['ratio_large_small'], 2)})"
        )
    return head


class _Index:
    """Results by (system, backend, measure[, processes])."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.by: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            key = (row["system"], row["backend"], row["measure"], row.get("processes"))
            self.by[key] = row

    def get(
        self, system: str, backend: str, measure: str, processes: int | None = None
    ) -> dict[str, Any] | None:
        return self.by.get((system, backend, measure, processes))

    def value(self, system: str, backend: str, key: str) -> float | None:
        measure, processes = {
            "drain1": ("drain", 1),
            "drain2": ("drain", 2),
            "single": ("enqueue", None),
            "bulk": ("enqueue", None),
            "p95": ("pickup", None),
        }[key]
        field = {
            "drain1": "drain_jobs_s",
            "drain2": "drain_jobs_s",
            "single": "enqueue_single_jobs_s",
            "bulk": "enqueue_bulk_jobs_s",
            "p95": "pickup_p95_ms",
        }[key]
        row = self.get(system, backend, measure, processes)
        return row.get(field) if row else None

    def share(self, system: str, backend: str, key: str) -> float | None:
        """The system's enqueue rate as a share of the raw limit's, measured in turns
        (``workload.enqueue_rates``), when it was measured so."""
        row = self.get(system, backend, "enqueue")
        return row.get(f"enqueue_{key}_share") if row else None

    def paired(self, system: str, peer: str, backend: str, processes: int) -> float | None:
        """system ÷ peer for drains run in the same rounds (``workload.paired_runs``): the
        median of the per-round ratios."""
        mine = self.get(system, backend, "drain", processes)
        theirs = self.get(peer, backend, "drain", processes)
        if not mine or not theirs or peer not in mine.get("paired_with", ()):
            return None
        return paired_ratio(mine["drain_jobs_s_runs"], theirs["drain_jobs_s_runs"])

    def ratio(self, system: str, peer: str, backend: str, key: str) -> str:
        """system ÷ peer; for enqueues, the ratio of their paired shares of the raw limit
        when both have one, and for drains the median of their per-round ratios when
        they ran in the same rounds (either way, the drift between runs cancels out)."""
        if key in ("single", "bulk"):
            mine, theirs = self.share(system, backend, key), self.share(peer, backend, key)
            if mine and theirs:
                return _ratio(mine, theirs)
        if key in ("drain1", "drain2"):
            paired = self.paired(system, peer, backend, int(key[-1]))
            if paired is not None:
                return f"{paired:.2f}"
        return _ratio(self.value(system, backend, key), self.value(peer, backend, key))

    def systems(self, backend: str) -> list[str]:
        seen: list[str] = []
        for row in self.rows:
            if row["measure"] == "limit":
                continue  # the raw-SQL limit has its own table
            if row["backend"] == backend and row["system"] not in seen:
                seen.append(row["system"])
        return seen


def _results_table(index: _Index) -> Table:
    table = Table(
        title="Results (median of the drain repeats; jobs/s unless noted)",
        caption=(
            "drain: N queued no-op jobs, total concurrency 4, from starting the worker(s) "
            "to the last handler run; peak RSS: largest single worker process; "
            "lost / dup: summed over every drain"
        ),
    )
    for name, justify in (
        ("system", "left"),
        ("backend", "left"),
        ("enqueue single", "right"),
        ("enqueue bulk", "right"),
        ("drain 1 proc", "right"),
        ("drain 2 procs", "right"),
        ("pickup p50/p95/p99 ms", "right"),
        ("peak RSS MiB", "right"),
        ("lost / dup", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for backend in BACKENDS:
        for system in index.systems(backend):
            drains = [index.get(system, backend, "drain", p) for p in (1, 2)]
            pickup = index.get(system, backend, "pickup")
            measured = [r for r in (*drains, pickup) if r]
            rss = max((r.get("peak_rss_mib", 0.0) for r in measured), default=None)
            lost = sum(r.get("lost", 0) for r in drains if r)
            dup = sum(r.get("duplicated", 0) for r in drains if r)
            table.add_row(
                system,
                backend,
                _num(index.value(system, backend, "single")),
                _num(index.value(system, backend, "bulk")),
                _num(index.value(system, backend, "drain1")),
                _num(index.value(system, backend, "drain2")),
                _ms(pickup),
                _num(rss),
                f"{lost} / {dup}",
            )
    return table


def _growth_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Cost growth: runner drain, 1 process, on a table of finished jobs")
    for name in ("backend", "jobs", "rows small", "drain small", "rows large", "drain large"):
        table.add_column(name, justify="left" if name == "backend" else "right")
    table.add_column("large / small", justify="right")
    for row in rows:
        table.add_row(
            row["backend"],
            _num(row["jobs"]),
            _num(row["rows_small"]),
            _num(row["drain_jobs_s_small"]),
            _num(row["rows_large"]),
            _num(row["drain_jobs_s_large"]),
            _num(row["ratio_large_small"], 2),
        )
    return table


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}"


def _ratios_table(index: _Index) -> Table:
    table = Table(
        title="runner versus each peer: > 1 means runner is better",
        caption=(
            "throughput columns: runner / peer (drains: the median of the per-round ratios, "
            "the systems' drains run in rounds; enqueues: runner's share of the raw limit / "
            "the peer's, each measured in turns with the limit); pickup p95 column: peer / "
            "runner (latency, so > 1 still means runner is better)"
        ),
    )
    for name in ("backend", "peer"):
        table.add_column(name)
    for name in (
        "drain 1 proc",
        "drain 2 procs",
        "enqueue single",
        "enqueue bulk",
        "pickup p95 (peer/runner)",
    ):
        table.add_column(name, justify="right")
    for backend in BACKENDS:
        for peer in index.systems(backend):
            if peer == "runner" or not index.get("runner", backend, "enqueue"):
                continue
            cells = [
                index.ratio("runner", peer, backend, k)
                for k in ("drain1", "drain2", "single", "bulk")
            ]
            cells.append(
                _ratio(index.value(peer, backend, "p95"), index.value("runner", backend, "p95"))
            )
            table.add_row(backend, peer, *cells)
    return table


def _share(index: _Index, backend: str, key: str, raw_rate: float) -> str:
    """runner ÷ raw: the paired share when runner's enqueues were measured beside the raw
    limit's, else against the limit's own figure (minutes away)."""
    share = index.share("runner", backend, key)
    if share:
        return f"{share:.2f}"
    return _ratio(index.value("runner", backend, key), raw_rate)


def _limits_table(index: _Index, rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title="The least SQL on this machine (benchmarks/limit.py), and runner against it",
        caption=(
            "raw: one thread on the plain driver, no validation or leases; "
            "runner / raw: the share of the limit runner reaches (enqueues: the median of "
            "runner's runs each over the raw rate measured in turns with it)"
        ),
    )
    table.add_column("backend")
    for name in (
        "raw single",
        "raw bulk",
        "raw drain 1/txn",
        "raw drain 100/txn",
        "runner/raw single",
        "runner/raw bulk",
        "runner drain 1 proc / raw 100/txn",
    ):
        table.add_column(name, justify="right")
    for row in rows:
        backend = row["backend"]
        table.add_row(
            backend,
            _num(row["enqueue_single_jobs_s"]),
            _num(row["enqueue_bulk_jobs_s"]),
            _num(row["drain_one_jobs_s"]),
            _num(row["drain_batch_jobs_s"]),
            _share(index, backend, "single", row["enqueue_single_jobs_s"]),
            _share(index, backend, "bulk", row["enqueue_bulk_jobs_s"]),
            _ratio(index.value("runner", backend, "drain1"), row["drain_batch_jobs_s"]),
        )
    return table


def render(rows: list[dict[str, Any]], console: Console) -> None:
    index = _Index(rows)
    console.print()
    console.print(_results_table(index))
    limits = [r for r in rows if r["measure"] == "limit"]
    if limits:
        console.print()
        console.print(_limits_table(index, limits))
    growth = [r for r in rows if r["measure"] == "growth"]
    if growth:
        console.print()
        console.print(_growth_table(growth))
    if any(r["system"] not in ("runner", "raw-sql") for r in rows):
        console.print()
        console.print(_ratios_table(index))
        console.print()
        console.print("Concurrency 4, as each system is configured:")
        settings = {
            (r["system"], r["processes"]): r["settings"]
            for r in rows
            if "settings" in r and r["measure"] == "drain"
        }
        for (system, _), text in settings.items():  # in the order they ran
            console.print(f"  {system}: {text}")

"""The benchmark harness runs the drains of every system in rounds and compares them round
by round (benchmarks/workload.py, benchmarks/report.py): pure functions, no database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks import workload
from benchmarks.report import _Index


def _drain(rate: float) -> dict[str, Any]:
    return {"jobs": 10, "drain_jobs_s": rate, "lost": 0, "duplicated": 1, "peak_rss_mib": rate}


def test_each_round_runs_every_system_once_in_a_rotated_order() -> None:
    order: list[str] = []
    rates = {
        "a": iter([10.0, 20.0, 30.0, 40.0]),
        "b": iter([1.0, 2.0, 3.0, 4.0]),
        "c": iter([5.0] * 4),
    }

    def measure(name: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            order.append(name)
            return _drain(next(rates[name]))

        return run

    figures = workload.paired_runs({name: measure(name) for name in "abc"}, 4)

    assert order == list("abcbcacababc")
    assert figures["a"]["drain_jobs_s_runs"] == [10.0, 20.0, 30.0, 40.0]
    assert figures["a"]["drain_jobs_s"] == 25.0
    assert figures["b"]["repeat"] == 4 and figures["b"]["duplicated"] == 4
    assert figures["b"]["peak_rss_mib"] == 4.0
    assert all(f["paired_with"] == ["a", "b", "c"] for f in figures.values())


def test_the_paired_ratio_is_the_median_of_the_per_round_ratios() -> None:
    assert workload.paired_ratio([100.0, 50.0, 80.0], [50.0, 25.0, 40.0]) == 2.0
    # runner twice the peer in rounds 1 and 3; in round 2 the machine was slow for runner
    # and fast for the peer: the ratio of the medians says 1.6, the rounds say 2.
    assert workload.paired_ratio([100.0, 50.0, 80.0], [50.0, 100.0, 40.0]) == 2.0
    assert workload.paired_ratio([1.0, 2.0], [1.0]) is None
    assert workload.paired_ratio([1.0], [0.0]) is None
    assert workload.paired_ratio([], []) is None


def _row(system: str, runs: list[float], paired_with: list[str] | None) -> dict[str, Any]:
    row = {
        "system": system,
        "backend": "postgres",
        "measure": "drain",
        "processes": 1,
        "drain_jobs_s": sorted(runs)[len(runs) // 2],
        "drain_jobs_s_runs": runs,
    }
    if paired_with is not None:
        row["paired_with"] = paired_with
    return row


def test_the_report_compares_paired_drains_round_by_round_and_others_by_median() -> None:
    both = ["runner", "peer"]
    paired = _Index(
        [_row("runner", [100.0, 50.0, 80.0], both), _row("peer", [50.0, 100.0, 40.0], both)]
    )
    assert paired.ratio("runner", "peer", "postgres", "drain1") == "2.00"

    apart = _Index(
        [_row("runner", [100.0, 50.0, 80.0], None), _row("peer", [50.0, 100.0, 40.0], None)]
    )
    assert apart.ratio("runner", "peer", "postgres", "drain1") == "1.60"

    other = _Index(
        [
            _row("runner", [100.0, 50.0, 80.0], ["runner", "x"]),
            _row("peer", [50.0, 100.0, 40.0], both),
        ]
    )
    assert other.ratio("runner", "peer", "postgres", "drain1") == "1.60"


def test_enqueues_take_turns_with_the_yardstick_chunk_by_chunk() -> None:
    calls: list[tuple[str, str, int]] = []

    def enqueuer(name: str) -> workload.Enqueuer:
        return workload.Enqueuer(
            lambda n: calls.append((name, "one", n)),
            lambda numbers: calls.append((name, "batch", len(numbers))),
            lambda: calls.append((name, "reset", 0)),
        )

    row = workload.enqueue_rates(enqueuer("sys"), (250, 2500, 2), enqueuer("raw"))

    measured = calls[calls.index(("sys", "reset", 0), 1) :]  # after the warm-up round
    singles = [(who, n) for who, kind, n in measured if kind == "one"]
    assert len(singles) == 2 * 2 * 250
    first_run = singles[:500]
    # chunks of SINGLE_CHUNK: sys 0-99, raw 0-99, raw 100-199, sys 100-199, sys 200-249, ...
    assert [first_run[i][0] for i in (0, 100, 200, 300, 400, 450)] == [
        "sys",
        "raw",
        "raw",
        "sys",
        "sys",
        "raw",
    ]
    batches = [(who, n) for who, kind, n in measured if kind == "batch"]
    assert batches[:6] == [
        ("sys", 1000),
        ("raw", 1000),
        ("raw", 1000),
        ("sys", 1000),
        ("sys", 500),
        ("raw", 500),
    ]
    # the second run starts with the yardstick
    second = measured[measured.index(("raw", "reset", 0), 2) + 1 :]
    assert second[0] == ("raw", "one", 0)
    assert len(row["enqueue_single_jobs_s_runs"]) == len(row["raw_enqueue_bulk_jobs_s_runs"]) == 2
    assert row["enqueue_single_share"] > 0 and row["enqueue_bulk_share"] > 0

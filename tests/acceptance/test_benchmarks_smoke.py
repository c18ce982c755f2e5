"""The benchmark harness in smoke mode: it runs on both backends and counts every effect.
It asserts no speed (speed is measured by the harness, never by tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_smoke_runs_and_loses_nothing(tmp_path: Path, pg_database: str) -> None:
    out = tmp_path / "results.jsonl"
    admin = pg_database.rsplit("/", 1)[0] + "/postgres"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), "--pg-url", admin],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["backend"], r["measure"]) for r in rows} == {
        (b, m) for b in ("sqlite", "postgres") for m in ("enqueue", "drain", "pickup")
    }
    drains = [r for r in rows if r["measure"] == "drain"]
    assert len(drains) == 4 and all(r["lost"] == 0 and r["duplicated"] == 0 for r in drains)
    assert all(r["drain_jobs_s"] > 0 and r["peak_rss_mib"] > 0 for r in drains)
    assert all(
        r["pickup_p95_ms"] >= r["pickup_p50_ms"] > 0 for r in rows if r["measure"] == "pickup"
    )

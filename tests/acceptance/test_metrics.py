"""Prometheus metrics scraped over HTTP from a real multi-process drain."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

from tests.helpers import cli_env, email, run_cli, start_cli, write_pipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


def test_metrics_during_a_real_drain_match_known_counts(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, max_attempts=2, base="50ms"))
    payloads = [email(i) for i in range(1, 31)]
    payloads += [
        email(101, "a@reject.example.com"),
        email(102, "b@reject.example.com"),
        email(103, "c@flaky1.example.com"),
    ]
    result = run_cli(
        "enqueue",
        pipeline,
        "email.send",
        "--jsonl",
        "-",
        env=env,
        input="\n".join(json.dumps(p) for p in payloads),
    )
    assert result.returncode == 0, result.stderr
    port = free_port()
    worker = start_cli("up", pipeline, "--processes", "2", "--metrics-port", str(port), env=env)
    try:
        deadline = time.monotonic() + 60
        samples: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                samples = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            if (
                value(samples, "runner_jobs_processed_total") >= 31
                and value(samples, "runner_jobs_dead_lettered_total") >= 2
            ):
                break
            time.sleep(0.2)
        labels = '{queue="mail",type="email.send"}'
        assert samples[f"runner_jobs_processed_total{labels}"] == 31
        assert samples[f"runner_jobs_dead_lettered_total{labels}"] == 2
        assert samples[f"runner_jobs_retried_total{labels}"] == 1
        assert samples[f"runner_jobs_failed_total{labels}"] == 3
        assert samples[f"runner_job_processing_seconds_count{labels}"] == 31
        assert samples[f"runner_job_queue_wait_seconds_count{labels}"] == 34  # every attempt
        assert samples['runner_queue_ready_jobs{queue="mail"}'] == 0
        assert samples['runner_queue_in_flight_jobs{queue="mail"}'] == 0
        assert samples['runner_queue_dead_jobs{queue="mail"}'] == 2
        assert samples['runner_queue_paused{queue="mail"}'] == 0
        assert any(re.match(r"runner_job_processing_seconds_bucket", k) for k in samples)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr


def test_metrics_bind_loopback_and_count_producer_refusals(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, max_depth=1))
    assert (
        run_cli(
            "enqueue", pipeline, "email.send", "--payload", json.dumps(email(1)), env=env
        ).returncode
        == 0
    )
    assert (
        run_cli(
            "enqueue", pipeline, "email.send", "--payload", json.dumps(email(2)), env=env
        ).returncode
        == 75
    )
    batch = "\n".join(json.dumps(email(i)) for i in range(3, 6))
    assert (
        run_cli("enqueue", pipeline, "email.send", "--jsonl", "-", env=env, input=batch).returncode
        == 75
    )
    port = free_port()
    worker = start_cli("up", pipeline, "--metrics-port", str(port), env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                scrape(port)
                break
            except OSError:
                time.sleep(0.2)
        samples = scrape(port)
        refused = 'runner_jobs_backpressure_refused_total{queue="mail",type="email.send"}'
        assert samples[refused] == 4  # counted in the database, seen from the worker host
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", port))  # only 127.0.0.1 is taken
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)

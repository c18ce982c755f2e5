"""Alerts fire and resolve on threshold crossings, through the hook, the log, a webhook on
loopback, and the database record."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.helpers import cli_env, email, run_cli, start_cli, write_pipeline

ALERTS = """    alerts:
      depth_above: 2
      dlq_above: 0
"""


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def wait_for_event(received: list[dict[str, object]], **match: object) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(all(e.get(k) == v for k, v in match.items()) for e in list(received)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no webhook event {match}; got {received}")


def test_alerts_fire_and_resolve(
    project: Path, db_url: str, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = webhook
    env = cli_env(db_url, RUNNER_ALERT_INTERVAL_S="0.2", RUNNER_ALERT_WEBHOOK_URL=url)
    path = write_pipeline(project, concurrency=1)
    path.write_text(
        path.read_text().replace('      alert: "#mail"\n', '      alert: "#mail"\n' + ALERTS)
    )
    pipeline = str(path)
    payloads = [email(i, simulate_work_s=0.4) for i in range(1, 6)]
    payloads.append(email(99, "x@reject.example.com"))
    assert (
        run_cli(
            "enqueue",
            pipeline,
            "email.send",
            "--jsonl",
            "-",
            env=env,
            input="\n".join(json.dumps(p) for p in payloads),
        ).returncode
        == 0
    )
    workers = [start_cli("up", pipeline, env=env) for _ in range(2)]  # one evaluator wins
    try:
        wait_for_event(received, event="alert_fired", rule="depth_above")
        wait_for_event(received, event="alert_resolved", rule="depth_above")
        wait_for_event(received, event="job_dead_lettered", job_id=6, owner="mail-team@example.com")
        wait_for_event(received, event="alert_fired", rule="dlq_above")
        assert run_cli("dlq", "purge", pipeline, "--all", "--yes", env=env).returncode == 0
        wait_for_event(received, event="alert_resolved", rule="dlq_above")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=30) for w in workers]
    stderr = "".join(err for _, err in outputs)
    assert "action=alert_fired" in stderr and "action=alert_resolved" in stderr
    fired = [e for e in received if e["event"] == "alert_fired"]
    assert sorted(str(e["rule"]) for e in fired) == ["depth_above", "dlq_above"]  # once each
    assert all(e["owner"] == "mail-team@example.com" and e["target"] == "#mail" for e in fired)
    assert not any("simulate_work_s" in json.dumps(e) for e in received)  # no payload values

    recorded = json.loads(run_cli("alerts", pipeline, "--json", env=env).stdout)
    assert sorted((r["rule"], r["state"]) for r in recorded) == [
        ("depth_above", "firing"),
        ("depth_above", "resolved"),
        ("dlq_above", "firing"),
        ("dlq_above", "resolved"),
    ]

"""Structured logs: one JSON event per lifecycle transition, never a payload value."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import cli_env, email, run_cli, write_pipeline


def json_events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_json_log_events_cover_the_lifecycle_without_payload_values(
    project: Path, db_url: str
) -> None:
    canary = "CANARY-in-a-payload-value"
    env = cli_env(db_url, RUNNER_LOG_FORMAT="json", RUNNER_LOG_LEVEL="DEBUG")
    pipeline = str(write_pipeline(project, max_attempts=2, base="50ms", max_depth=4))
    stderr = ""
    for user, to in ((1, "ok@example.com"), (2, "x@down.example.com"), (3, "x@reject.example.com")):
        result = run_cli(
            "enqueue",
            pipeline,
            "email.send",
            "--payload",
            json.dumps(email(user, to, variables={"note": canary})),
            env=env,
        )
        assert result.returncode == 0, result.stderr
        stderr += result.stderr
    up = run_cli("up", pipeline, "--until-idle", "--log-format", "json", env=env)
    assert up.returncode == 0, up.stderr
    stderr += up.stderr
    again = run_cli("enqueue", pipeline, "email.send", "--payload", json.dumps(email(1)), env=env)
    stderr += again.stderr
    assert run_cli("up", pipeline, "--until-idle", env=env).returncode == 0
    fill = "\n".join(json.dumps(email(i)) for i in range(10, 16))
    full = run_cli("enqueue", pipeline, "email.send", "--jsonl", "-", env=env, input=fill)
    assert full.returncode == 75
    stderr += full.stderr

    events = json_events(stderr)
    assert canary not in stderr
    assert all("action" in e for e in events), [e for e in events if "action" not in e]
    actions = {str(e["action"]) for e in events}
    assert {"enqueue", "claim", "ack", "retry", "dead_letter", "backpressure_refused"} <= actions
    for event in events:
        assert {"ts", "level", "logger", "action"} <= set(event)
    (retry,) = [e for e in events if e["action"] == "retry"]
    assert (
        retry["job_id"] == 2 and retry["attempt"] == 1 and retry["error"] == ("ProviderUnavailable")
    )
    assert isinstance(retry["delay_s"], float)
    dead = {e["job_id"]: e for e in events if e["action"] == "dead_letter"}
    assert dead[3]["error"] == "InvalidAddress" and dead[2]["attempt"] == 2
    acks = [e for e in events if e["action"] == "ack"]
    assert any(e["job_id"] == 1 and isinstance(e["duration_s"], float) for e in acks)


def test_console_logs_are_key_value_lines(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project))
    run_cli("enqueue", pipeline, "email.send", "--payload", json.dumps(email(1)), env=env)
    up = run_cli("up", pipeline, "--until-idle", env=env)
    assert up.returncode == 0
    assert "action=ack job_id=1 type=email.send queue=mail attempt=1" in up.stderr
    assert not json_events(up.stderr)

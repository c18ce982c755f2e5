"""DLQ replay rules per job type, and the audit of every replay and purge."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import cli_env, email, run_cli, write_pipeline


def dead_jobs(pipeline: str, env: dict[str, str], n: int) -> list[int]:
    for user in range(1, n + 1):
        payload = json.dumps(email(user, f"u{user}@reject.example.com"))
        assert (
            run_cli("enqueue", pipeline, "email.send", "--payload", payload, env=env).returncode
            == 0
        )
    assert run_cli("up", pipeline, "--until-idle", env=env).returncode == 0
    listed = json.loads(run_cli("dlq", "list", pipeline, "--json", env=env).stdout)
    assert len(listed) == n
    return [d["id"] for d in listed]


def test_manual_rule_replays_by_id_only(project: Path, db_url: str) -> None:
    env = cli_env(db_url, RUNNER_OPERATOR="ada@example.com")
    pipeline = str(write_pipeline(project, replay="manual"))
    ids = dead_jobs(pipeline, env, 3)
    bulk = run_cli("dlq", "replay", pipeline, "--all", "--json", env=env)
    assert bulk.returncode == 0
    assert json.loads(bulk.stdout)["replayed"] == []
    assert "held back 3" in bulk.stderr
    one = run_cli("dlq", "replay", pipeline, str(ids[0]), "--json", env=env)
    assert one.returncode == 0 and json.loads(one.stdout)["replayed"] == [ids[0]]
    purge = run_cli("dlq", "purge", pipeline, str(ids[1]), "--yes", env=env)
    assert purge.returncode == 0 and "purged 1" in purge.stdout

    audit = json.loads(run_cli("dlq", "audit", pipeline, "--json", env=env).stdout)
    assert [(a["action"], a["count"], a["job_ids"], a["operator"]) for a in audit] == [
        ("dlq_purge", 1, [ids[1]], "ada@example.com"),
        ("dlq_replay", 1, [ids[0]], "ada@example.com"),
    ]  # the bulk replay held everything back and changed nothing
    assert json.loads(audit[0]["selection"])["ids"] == [ids[1]]


def test_never_rule_refuses_replay_with_exit_77(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, replay="never"))
    ids = dead_jobs(pipeline, env, 1)
    refused = run_cli("dlq", "replay", pipeline, str(ids[0]), env=env)
    assert refused.returncode == 77
    assert "replay never" in refused.stderr
    dry = run_cli("dlq", "replay", pipeline, "--all", "--dry-run", env=env)
    assert dry.returncode == 0 and "would replay 0" in dry.stdout
    assert json.loads(run_cli("dlq", "list", pipeline, "--json", env=env).stdout)[0]["id"] == ids[0]

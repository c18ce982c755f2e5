"""Every CLI command and exit code, run as a real process against both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Provider, cli_env, email, run_cli, write_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "pipelines").glob("*.yaml")))
def test_check_accepts_every_example_pipeline(project: Path, name: str) -> None:
    result = run_cli("check", str(project / "pipelines" / name), env=cli_env("sqlite://"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_check_reports_every_error_with_location_and_exits_78(project: Path) -> None:
    bad = project / "pipelines" / "bad.yaml"
    bad.write_text(
        "plugins: [plugins.email]\n"
        "queues:\n"
        "  mail:\n"
        "    visibility_timeout: 5s\n"
        "    dlq: {}\n"
        "jobs:\n"
        "  email.send:\n"
        "    queue: mail\n"
        "    handler: email.nope\n"
        "    schema: email_send.json\n"
        "    retry: {max_attempts: 0}\n"
    )
    result = run_cli("check", str(bad), env=cli_env("sqlite://"))
    assert result.returncode == 78
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(bad))]
    assert any(":5:" in line and "owner" in line for line in lines), result.stderr
    assert any(":11:" in line and "max_attempts" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


def test_check_missing_file_exits_66(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "nope.yaml"), env=cli_env("sqlite://"))
    assert result.returncode == 66
    assert "nope.yaml" in result.stderr


def test_broken_plugin_is_a_check_error_not_a_traceback(project: Path) -> None:
    (project / "plugins" / "email.py").write_text("import does_not_exist\n")
    result = run_cli("check", str(project / "pipelines" / "email.yaml"), env=cli_env("sqlite://"))
    assert result.returncode == 78
    assert "plugins.email" in result.stderr and "does_not_exist" in result.stderr
    assert "email.yaml:" in result.stderr
    assert "Traceback" not in result.stderr


def test_enqueue_prints_the_id_and_up_drains(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project))
    first = run_cli("enqueue", pipeline, "email.send", "--payload", json.dumps(email(1)), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().isdigit()
    payload_file = project / "job.json"
    payload_file.write_text(json.dumps(email(2)))
    second = run_cli(
        "enqueue", pipeline, "email.send", "--payload", f"@{payload_file}", "--json", env=env
    )
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["id"] == int(first.stdout) + 1

    up = run_cli("up", pipeline, "--until-idle", env=env)
    assert up.returncode == 0, up.stderr
    assert len(Provider(project).calls()) == 2

    status = run_cli("status", pipeline, "--json", env=env)
    assert status.returncode == 0, status.stderr
    mail = json.loads(status.stdout)["queues"]["mail"]
    assert {k: mail[k] for k in ("ready", "scheduled", "in_flight", "done", "dead")} == {
        "ready": 0,
        "scheduled": 0,
        "in_flight": 0,
        "done": 2,
        "dead": 0,
    }
    assert mail["oldest_ready_age_s"] is None
    assert mail["failure_rate"] == 0
    assert isinstance(mail["p95_s"], float)
    table = run_cli("status", pipeline, env=env)
    assert table.returncode == 0 and "mail" in table.stdout


def test_enqueue_exit_codes(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, max_depth=1))
    bad = run_cli("enqueue", pipeline, "email.send", "--payload", '{"userId": "x"}', env=env)
    assert bad.returncode == 65 and "userId" in bad.stderr
    not_json = run_cli("enqueue", pipeline, "email.send", "--payload", "{nope", env=env)
    assert not_json.returncode == 65
    secret = run_cli(
        "enqueue",
        pipeline,
        "email.send",
        "--payload",
        json.dumps({**email(1), "variables": {"password": "CANARY-secret-42"}}),
        env=env,
    )
    assert secret.returncode == 65
    assert "CANARY-secret-42" not in secret.stdout + secret.stderr
    unknown = run_cli("enqueue", pipeline, "email.nope", "--payload", "{}", env=env)
    assert unknown.returncode == 66
    missing = run_cli("enqueue", pipeline, "email.send", "--payload", "@/no/such.json", env=env)
    assert missing.returncode == 66
    usage = run_cli("enqueue", pipeline, "email.send", env=env)
    assert usage.returncode == 2
    ok = run_cli("enqueue", pipeline, "email.send", "--payload", json.dumps(email(1)), env=env)
    assert ok.returncode == 0, ok.stderr
    full = run_cli("enqueue", pipeline, "email.send", "--payload", json.dumps(email(2)), env=env)
    assert full.returncode == 75 and "max_depth" in full.stderr
    status = json.loads(run_cli("status", pipeline, "--json", env=env).stdout)
    assert status["queues"]["mail"]["ready"] == 1  # nothing refused was stored


def test_enqueue_jsonl_is_all_or_nothing(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project))
    good = "\n".join(json.dumps(email(i)) for i in range(1, 251)) + "\n"
    bad = good + '{"userId": 0, "templateId": "welcome", "to": "a@example.com"}\n{broken\n'
    (project / "bad.jsonl").write_text(bad)
    refused = run_cli(
        "enqueue", pipeline, "email.send", "--jsonl", str(project / "bad.jsonl"), env=env
    )
    assert refused.returncode == 65
    assert "line 251" in refused.stderr and "line 252" in refused.stderr
    status = json.loads(run_cli("status", pipeline, "--json", env=env).stdout)
    assert status["queues"]["mail"]["ready"] == 0
    accepted = run_cli("enqueue", pipeline, "email.send", "--jsonl", "-", env=env, input=good)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "250"
    status = json.loads(run_cli("status", pipeline, "--json", env=env).stdout)
    assert status["queues"]["mail"]["ready"] == 250


def test_dlq_list_show_replay_purge(project: Path, db_url: str) -> None:
    env = cli_env(db_url)
    pipeline = str(write_pipeline(project, max_attempts=1))
    for user, to in (
        (1, "a@reject.example.com"),
        (2, "b@flaky1.example.com"),
        (3, "c@reject.example.com"),
    ):
        assert (
            run_cli(
                "enqueue",
                pipeline,
                "email.send",
                "--payload",
                json.dumps(email(user, to, variables={"note": "CANARY-payload"})),
                env=env,
            ).returncode
            == 0
        )
    assert run_cli("up", pipeline, "--until-idle", env=env).returncode == 0

    listed = run_cli("dlq", "list", pipeline, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    dead = json.loads(listed.stdout)
    assert len(dead) == 3
    assert {"id", "type", "queue", "attempts", "last_error"} <= set(dead[0])
    assert "CANARY-payload" not in listed.stdout
    table = run_cli("dlq", "list", pipeline, env=env)
    assert table.returncode == 0 and "CANARY-payload" not in table.stdout
    by_error = json.loads(
        run_cli("dlq", "list", pipeline, "--error", "InvalidAddress", "--json", env=env).stdout
    )
    assert len(by_error) == 2

    flaky_id = next(d["id"] for d in dead if d["last_error"].startswith("ProviderUnavailable"))
    shown = run_cli("dlq", "show", pipeline, str(flaky_id), "--json", env=env)
    assert shown.returncode == 0
    detail = json.loads(shown.stdout)
    assert detail["errors"][0]["type"] == "ProviderUnavailable" and "payload" not in detail
    assert "CANARY-payload" not in shown.stdout
    with_payload = run_cli("dlq", "show", pipeline, str(flaky_id), "--payload", "--json", env=env)
    assert json.loads(with_payload.stdout)["payload"]["variables"]["note"] == "CANARY-payload"
    assert run_cli("dlq", "show", pipeline, "999999", env=env).returncode == 66

    dry = run_cli("dlq", "replay", pipeline, str(flaky_id), "--dry-run", env=env)
    assert dry.returncode == 0 and "would replay 1" in dry.stdout
    replay = run_cli("dlq", "replay", pipeline, str(flaky_id), env=env)
    assert replay.returncode == 0 and "replayed 1" in replay.stdout
    assert run_cli("dlq", "replay", pipeline, env=env).returncode == 2
    assert run_cli("up", pipeline, "--until-idle", env=env).returncode == 0

    refused = run_cli("dlq", "purge", pipeline, "--all", env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purged = run_cli("dlq", "purge", pipeline, "--all", "--yes", env=env)
    assert purged.returncode == 0 and "purged 2" in purged.stdout
    status = json.loads(run_cli("status", pipeline, "--json", env=env).stdout)
    assert status["queues"]["mail"]["dead"] == 0 and status["queues"]["mail"]["done"] == 1


def test_database_url_setting_overrides_the_file(project: Path, tmp_path: Path) -> None:
    pipeline = project / "pipelines" / "report.yaml"  # its file says sqlite:///var/reports.db
    env = cli_env(f"sqlite:///{tmp_path / 'override.db'}")
    payload = json.dumps({"reportId": "r1", "accountId": 1, "kind": "usage"})
    assert (
        run_cli("enqueue", str(pipeline), "report.build", "--payload", payload, env=env).returncode
        == 0
    )
    assert (tmp_path / "override.db").exists()
    assert not (project / "var" / "reports.db").exists()
    del env["RUNNER_DATABASE_URL"]
    assert (
        run_cli(
            "enqueue", str(pipeline), "report.build", "--payload", payload, env=env, cwd=tmp_path
        ).returncode
        == 0
    )
    assert (project / "var" / "reports.db").exists()  # relative to the project root, not cwd

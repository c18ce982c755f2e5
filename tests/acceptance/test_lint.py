"""`runner lint`: every lint triggered by a file under tests, and absent from clean ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli

REPO = Path(__file__).resolve().parents[2]

MESSY = """\
plugins: [plugins.email]
queues:
  mail:
    concurrency: 50
    visibility_timeout: 15s
    dlq:
      owner: TODO
jobs:
  email.send:
    queue: mail
    handler: email.send
    schema: messy.json
    timeout: 10s
    retry:
      max_attempts: 50
      jitter: 0
"""

MESSY_SCHEMA = {
    "type": "object",
    "required": ["to"],
    "properties": {
        "to": {"type": "string"},
        "auth": {"type": "object", "properties": {"apiKey": {"type": "string"}}},
    },
}

EXPECTED = {
    "R001": (7, 14),  # dlq owner placeholder, at the owner value
    "R002": (15, 21),  # max_attempts 50
    "R003": (16, 15),  # jitter 0
    "R004": (5, 25),  # visibility_timeout below 2x timeout
    "R005": (4, 18),  # concurrency 50 above the pool
    "R006": (12, 13),  # no business id (and, at the job, no schema_version)
    "R007": (12, 13),  # secret-looking property in the schema
    "R008": (4, 5),  # no alerts (at the queue)
    "R009": (10, 5),  # replay allowed without an idempotency key (at the job)
}


@pytest.fixture
def messy(project: Path) -> Path:
    (project / "schemas" / "messy.json").write_text(json.dumps(MESSY_SCHEMA))
    path = project / "pipelines" / "messy.yaml"
    path.write_text(MESSY)
    return path


def test_each_lint_fires_at_its_place(messy: Path) -> None:
    result = run_cli("lint", str(messy), "--json", env=cli_env("sqlite://"))
    assert result.returncode == 1  # R007 is an error
    findings = json.loads(result.stdout)
    places = {(f["id"], f["line"], f["col"]) for f in findings}
    for rule, (line, col) in EXPECTED.items():
        assert (rule, line, col) in places, (rule, sorted(places))
    assert {f["id"] for f in findings} == set(EXPECTED)
    for f in findings:
        assert f["why"] and f["fix"] and f["file"] == str(messy)
    secrets = [f for f in findings if f["id"] == "R007"]
    assert any("$.auth.apiKey" in f["message"] for f in secrets)
    assert all(f["severity"] == "error" for f in secrets)


def test_text_output_and_strict(messy: Path, project: Path) -> None:
    text = run_cli("lint", str(messy), env=cli_env("sqlite://"))
    assert f"{messy}:7:14: R001 dlq-owner:" in text.stdout
    assert "fix: " in text.stdout
    clean = str(project / "pipelines" / "email.yaml")
    path = project / "pipelines" / "warn.yaml"
    path.write_text(
        (project / "pipelines" / "email.yaml").read_text().replace("jitter: 0.5", "jitter: 0")
    )
    assert run_cli("lint", str(path), env=cli_env("sqlite://")).returncode == 0
    assert run_cli("lint", str(path), "--strict", env=cli_env("sqlite://")).returncode == 1
    assert run_cli("lint", clean, "--strict", env=cli_env("sqlite://")).returncode == 0


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "pipelines").glob("*.yaml")))
def test_examples_are_lint_clean(project: Path, name: str) -> None:
    result = run_cli(
        "lint", str(project / "pipelines" / name), "--strict", "--json", env=cli_env("sqlite://")
    )
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout) == []


def test_visibility_timeout_below_measured_p95(project: Path, tmp_path: Path) -> None:
    """History in the database: jobs took ~1.2s, the lease is 1s (heartbeat keeps them)."""
    path = project / "pipelines" / "slow.yaml"
    path.write_text(
        (project / "pipelines" / "email.yaml")
        .read_text()
        .replace("visibility_timeout: 30s", "visibility_timeout: 1s")
        .replace("    timeout: 10s\n", "    timeout: 10s\n    heartbeat: true\n")
    )
    env = cli_env(f"sqlite:///{tmp_path / 'h.db'}")
    payload = json.dumps(
        {"userId": 1, "templateId": "t", "to": "a@example.com", "simulate_work_s": 1.2}
    )
    assert (
        run_cli("enqueue", str(path), "email.send", "--payload", payload, env=env).returncode == 0
    )
    assert run_cli("up", str(path), "--until-idle", env=env).returncode == 0
    findings = json.loads(run_cli("lint", str(path), "--json", env=env).stdout)
    assert any(f["id"] == "R004" and "measured" in f["message"] for f in findings), findings
    without = json.loads(run_cli("lint", str(path), "--json", "--no-history", env=env).stdout)
    assert not any(f["id"] == "R004" for f in without)

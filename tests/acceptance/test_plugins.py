"""Plugins from installed packages (entry points), lifecycle hooks, and database errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import cli_env, email, run_cli, write_pipeline

HOOK_RECORDER = """
import json
from pathlib import Path

import runner

LOG = Path(__file__).resolve().parent.parent / "var" / "hooks.jsonl"


def _write(event, **fields):
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as fh:
        fh.write(json.dumps({"event": event, **fields}) + "\\n")


@runner.hookimpl
def runner_job_enqueued(job_ids, job_type, queue):
    _write("enqueued", ids=job_ids, type=job_type, queue=queue)


@runner.hookimpl
def runner_job_claimed(job):
    _write("claimed", id=job.id, attempt=job.attempt)


@runner.hookimpl
def runner_job_acked(job, duplicate):
    _write("acked", id=job.id, duplicate=duplicate)


@runner.hookimpl
def runner_job_retried(job, error, delay_s):
    _write("retried", id=job.id, error=error.type, delay_s=delay_s)


@runner.hookimpl
def runner_job_dead_lettered(job, error, owner, alert):
    _write("dead_lettered", id=job.id, error=error.type, owner=owner, alert=alert)
"""


def test_lifecycle_hooks_fire_with_owner_and_alert(project: Path, db_url: str) -> None:
    (project / "plugins" / "recorder.py").write_text(HOOK_RECORDER)
    path = write_pipeline(project, max_attempts=2, base="50ms")
    path.write_text(
        path.read_text().replace("  - plugins.email\n", "  - plugins.email\n  - plugins.recorder\n")
    )
    env = cli_env(db_url)
    for user, to in ((1, "ok@example.com"), (2, "x@down.example.com")):
        result = run_cli(
            "enqueue", str(path), "email.send", "--payload", json.dumps(email(user, to)), env=env
        )
        assert result.returncode == 0, result.stderr
    assert run_cli("up", str(path), "--until-idle", env=env).returncode == 0
    events = [
        json.loads(line) for line in (project / "var" / "hooks.jsonl").read_text().splitlines()
    ]
    kinds = [e["event"] for e in events]
    assert kinds.count("enqueued") == 2
    assert kinds.count("claimed") == 3  # ok once, down twice
    assert kinds.count("acked") == 1 and kinds.count("retried") == 1
    (dead,) = [e for e in events if e["event"] == "dead_lettered"]
    assert dead == {
        "event": "dead_lettered",
        "id": 2,
        "error": "ProviderUnavailable",
        "owner": "mail-team@example.com",
        "alert": "#mail",
    }


def test_handlers_from_an_installed_package_entry_point(project: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "acme_handlers-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-handlers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[runner]\nacme = acme_handlers\n")
    (site / "acme_handlers.py").write_text(
        "import runner\n\n"
        "def ping(job):\n    return None\n\n"
        "@runner.hookimpl\n"
        "def runner_handlers():\n    return {'acme.ping': ping}\n"
    )
    path = write_pipeline(project)
    path.write_text(path.read_text().replace("handler: email.send", "handler: acme.ping"))
    env = cli_env("sqlite://")
    without = run_cli("check", str(path), env=env)
    assert without.returncode == 78 and "acme.ping" in without.stderr
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    with_package = run_cli("check", str(path), env=env)
    assert with_package.returncode == 0, with_package.stderr


def test_unreachable_database_exits_69_without_traceback(project: Path) -> None:
    path = str(write_pipeline(project))
    env = cli_env("postgresql://postgres@127.0.0.1:1/nope")
    result = run_cli("enqueue", path, "email.send", "--payload", json.dumps(email(1)), env=env)
    assert result.returncode == 69, result.stderr
    assert "Traceback" not in result.stderr and "cannot open database" in result.stderr
    status = run_cli("status", path, env=env)
    assert status.returncode == 69

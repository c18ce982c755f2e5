"""Helpers for tests: run the real CLI in a subprocess, read the fake provider's records."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TEST_PIPELINE = """\
plugins:
  - plugins.email
queues:
  mail:
    concurrency: {concurrency}
    visibility_timeout: {visibility_timeout}
    max_depth: {max_depth}
    dlq:
      owner: mail-team@example.com
      alert: "#mail"
jobs:
  email.send:
    queue: mail
    handler: email.send
    schema: email_send.json
    idempotency_key: "email:{{templateId}}:{{userId}}"
    timeout: {timeout}
    retry:
      max_attempts: {max_attempts}
      backoff: exponential
      base: {base}
      max: 10s
      jitter: {jitter}
      non_retryable: [InvalidAddress]
    replay: {replay}
"""


def write_pipeline(project: Path, name: str = "test.yaml", **overrides: object) -> Path:
    values: dict[str, object] = {
        "concurrency": 4,
        "visibility_timeout": "5s",
        "max_depth": 100000,
        "timeout": "4s",
        "max_attempts": 3,
        "base": "100ms",
        "jitter": 0.2,
        "replay": "allowed",
    }
    values.update(overrides)
    path = project / "pipelines" / name
    path.write_text(TEST_PIPELINE.format(**values))
    return path


def cli_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(
        RUNNER_DATABASE_URL=db_url,
        RUNNER_POLL_INTERVAL_S="0.05",
        RUNNER_REAP_INTERVAL_S="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        env=env,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Proc:
    """A running ``runner`` process whose output goes to files, so a chatty worker never
    blocks on a full pipe while the test polls something else."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None) -> None:
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by communicate)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by communicate)
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._out, stderr=self._err)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def send_signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        self.popen.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the process, then return its stdout and stderr."""
        self.popen.wait(timeout)
        texts = []
        for handle in (self._out, self._err):
            handle.seek(0)
            texts.append(handle.read().decode(errors="replace"))
            handle.close()
        return texts[0], texts[1]


def start_cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> Proc:
    return Proc([sys.executable, "-m", "runner", *args], env, cwd)


@dataclass(frozen=True)
class Call:
    kind: str
    target: str
    key: str | None
    job_id: int
    attempt: int
    at: float
    started: float
    outcome: str


class Provider:
    """Reads what the fake provider of a project copy recorded."""

    def __init__(self, project: Path) -> None:
        self.path = project / "var" / "provider.sqlite"

    def _query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def calls(self, target: str | None = None) -> list[Call]:
        rows = self._query(
            "SELECT kind, target, key, job_id, attempt, at, started, outcome FROM calls ORDER BY id"
        )
        calls = [Call(*row) for row in rows]  # type: ignore[arg-type]
        return [c for c in calls if target is None or c.target == target]

    def effects(self) -> int:
        return int(self._query("SELECT count(*) FROM effects")[0][0])  # type: ignore[arg-type]

    def effects_by_key(self) -> dict[str, int]:
        rows = self._query("SELECT key, count(*) FROM effects GROUP BY key")
        return {str(k): int(n) for k, n in rows}  # type: ignore[call-overload]


def email(
    user: int, to: str | None = None, template: str = "welcome", **extra: object
) -> dict[str, object]:
    payload: dict[str, object] = {
        "userId": user,
        "templateId": template,
        "to": to or f"user{user}@example.com",
    }
    payload.update(extra)
    return payload


def max_overlap(calls: list[Call]) -> int:
    """The most provider calls in progress at one instant (from start/end times)."""
    events: list[tuple[float, int]] = []
    for c in calls:
        events.append((c.started, 1))
        events.append((c.at, -1))
    events.sort(key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak

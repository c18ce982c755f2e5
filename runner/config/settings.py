"""Settings from ``RUNNER_*`` environment variables (pydantic-settings, no implicit .env)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Precedence: ``RUNNER_*`` environment variable > pipeline file > default."""

    model_config = SettingsConfigDict(env_prefix="RUNNER_", extra="ignore", frozen=True)

    database_url: str | None = None
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    poll_interval_s: float = Field(default=0.5, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    claim_batch: int = Field(default=2000, ge=1, le=5000)
    """The most jobs one claim leases ahead of a worker's free slots (fewer for slow jobs)."""
    reap_interval_s: float = Field(default=1.0, gt=0)
    ack_flush_s: float = Field(default=0.002, ge=0)
    done_retention_s: float = Field(default=7 * 86400.0, ge=0)
    prune_interval_s: float = Field(default=60.0, gt=0)
    idempotency_retention_s: float = Field(default=30 * 86400.0, ge=0)
    status_window_s: float = Field(default=300.0, gt=0)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """SQLite sync for enqueues and operator actions: FULL survives a power loss."""
    sqlite_worker_synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
    """SQLite sync for claims and acks: NORMAL may redeliver the last jobs after a power loss."""
    pg_worker_synchronous_commit: Literal["on", "off"] = "off"
    """PostgreSQL claims and acks: off commits without waiting for the WAL flush (a server
    crash may undo the last ones, which redelivers those jobs)."""
    pool_size: int = Field(default=10, ge=1)
    log_format: Literal["console", "json"] = "console"
    alert_interval_s: float = Field(default=15.0, gt=0)
    """How often the (single, elected) evaluator checks the queues' alert thresholds."""
    alert_webhook_url: str | None = None
    """POST alerts and dead-lettered jobs as JSON here (built-in webhook sink)."""
    operator: str | None = None
    """Who runs DLQ replays and purges, for the audit table (default: the OS user)."""
    log_level: str = "INFO"

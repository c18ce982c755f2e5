"""Pydantic models of a pipeline file. YAML keys equal field names; unknown keys are errors."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_validator,
)

from runner.config.durations import parse_duration

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""Queue and job-type names: letters, digits, ``.``, ``_``, ``-``; at most 64 characters."""


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DeadLetter(_Model):
    owner: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    """Who reviews this queue's dead jobs (a team, an email, an on-call rota)."""
    alert: str | None = None
    """Optional alert target handed to the ``runner_job_dead_lettered`` hook."""


class Alerts(_Model):
    """Thresholds evaluated by the running workers; crossing one fires an alert, falling
    back resolves it (both through the ``runner_alert_*`` hooks, both recorded)."""

    depth_above: Annotated[int, Strict()] | None = Field(default=None, ge=0)
    """Jobs waiting (ready + scheduled)."""
    oldest_age_above: PositiveDuration | None = None
    """Age of the oldest ready job."""
    failure_rate_above: float | None = Field(default=None, ge=0.0, le=1.0)
    """Failed attempts over finished attempts in the status window."""
    dlq_above: Annotated[int, Strict()] | None = Field(default=None, ge=0)
    """Jobs in the dead-letter queue."""


class Queue(_Model):
    concurrency: Annotated[int, Strict()] = Field(default=10, ge=1, le=10_000)
    """Jobs of this queue running at once, across every worker process on the database."""
    visibility_timeout: PositiveDuration = 60.0
    """Lease length: a claimed job not acked within it is delivered again."""
    max_depth: Annotated[int, Strict()] | None = Field(default=None, ge=1)
    """Backpressure gate: enqueue is refused once this many jobs wait in the queue."""
    dlq: DeadLetter
    paused: bool = False
    """A paused queue accepts jobs but no worker claims them."""
    alerts: Alerts | None = None


class Retry(_Model):
    max_attempts: Annotated[int, Strict()] = Field(default=3, ge=1, le=1000)
    backoff: Literal["exponential", "fixed"] = "exponential"
    base: PositiveDuration = 1.0
    max: PositiveDuration = 300.0
    jitter: float = 0.5
    """Fraction of each delay drawn at random (0 = none, 1 = full jitter); true means 0.5."""
    non_retryable: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list
    )
    """Exception class names that dead-letter at once."""

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _finite_attempts(cls, value: Any) -> Any:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError("max_attempts must be a finite whole number of at least 1")
        return value

    @field_validator("jitter", mode="before")
    @classmethod
    def _jitter(cls, value: Any) -> Any:
        if value is True:
            return 0.5
        if value is False:
            return 0.0
        if isinstance(value, int | float) and not 0.0 <= float(value) <= 1.0:
            raise ValueError("jitter must be true, false or a fraction between 0 and 1")
        return value


class JobType(_Model):
    queue: Name
    handler: Annotated[str, StringConstraints(min_length=1)]
    payload_schema: str | dict[str, Any] = Field(alias="schema")
    """A JSON Schema file under ``schemas/`` or an inline JSON Schema object."""
    schema_version: Annotated[int, Strict()] = Field(default=1, ge=1)
    idempotency_key: str | None = None
    """A template over payload fields, e.g. ``email:{templateId}:{userId}``."""
    dedupe: bool = True
    """With an idempotency key: enqueue of a key already pending returns the pending job."""
    timeout: PositiveDuration = 30.0
    heartbeat: bool = False
    """Renew the lease while the handler runs, for jobs that may outlive the visibility
    timeout; a dead worker's jobs are still rescued when its renewals stop."""
    priority: Annotated[int, Strict()] = Field(default=0, ge=-1000, le=1000)
    """Higher runs first within a queue."""
    retry: Retry = Field(default_factory=Retry)
    replay: Literal["allowed", "manual", "never"] = "allowed"
    """DLQ replay rule: ``allowed`` in bulk, ``manual`` one job id at a time, ``never``."""


class Pipeline(_Model):
    database: str | None = None
    """SQLAlchemy URL; ``RUNNER_DATABASE_URL`` overrides it. Relative SQLite paths
    resolve against the project root."""
    plugins: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]] = Field(
        default_factory=list
    )
    queues: dict[Name, Queue] = Field(min_length=1)
    jobs: dict[Name, JobType] = Field(min_length=1)

"""The job as handlers and hooks see it, and the outcome vocabulary (stdlib only)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    QUEUED = "queued"  # ready, or scheduled when run_at is in the future (retries)
    RUNNING = "running"  # claimed, holding a lease
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # in the dead-letter queue


@dataclass(frozen=True)
class Job:
    """What a handler receives. ``attempt`` is 1-based and counted at claim."""

    id: int
    type: str
    queue: str
    attempt: int
    payload: dict[str, Any]
    max_attempts: int = 1
    idempotency_key: str | None = None
    schema_version: int | None = None
    enqueued_at: float = 0.0
    claimed_at: float = 0.0
    """When this attempt was claimed (database clock, epoch seconds)."""
    lease_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class ErrorInfo:
    """A failed attempt as recorded: class name, message, truncated traceback."""

    type: str
    message: str
    traceback: str = ""


class Action(enum.StrEnum):
    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Decision:
    """What to do with a job after an attempt."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""

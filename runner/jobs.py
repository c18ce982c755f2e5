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

    @classmethod
    def _from_store(cls, **fields: Any) -> Job:
        """Build a job from every field, as the worker does per claimed job: the same
        object as ``Job(**fields)`` at a sixth of the cost (a frozen dataclass's
        ``__init__`` sets each field through ``object.__setattr__``)."""
        job = object.__new__(cls)
        job.__dict__.update(fields)
        return job


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

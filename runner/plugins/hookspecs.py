"""Every hook a plugin can implement. Hooks are prefixed ``runner_``.

Registration hooks return values; observers are ``runner_<subject>_<past participle>``
and their return values are ignored. An implementation may accept any subset of a
hook's arguments (pluggy passes them by name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from runner import jobs

PROJECT = "runner"
ENTRY_POINT_GROUP = "runner"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Handler = Callable[[jobs.Job], Any]


@hookspec
def runner_handlers() -> Mapping[str, Handler]:  # type: ignore[empty-body]
    """Return ``{handler_name: callable}``. A handler takes the job; it may be ``async``.

    Raise to fail: ``runner.PermanentError`` (or a class named in the job type's
    ``retry.non_retryable``) dead-letters at once, anything else is retried.
    """


@hookspec
def runner_job_enqueued(job_ids: list[int], job_type: str, queue: str) -> None:
    """Jobs were accepted and are durable."""


@hookspec
def runner_job_claimed(job: jobs.Job) -> None:
    """A worker leased the job; its handler runs as soon as one of the queue's slots is free
    (at once, or after the jobs this worker claimed ahead of it)."""


@hookspec
def runner_job_acked(job: jobs.Job, duration_s: float, duplicate: bool) -> None:
    """The job succeeded (``duplicate``: its idempotency key was done, the handler did not run)."""


@hookspec
def runner_job_retried(job: jobs.Job, error: jobs.ErrorInfo, delay_s: float) -> None:
    """The attempt failed with a retryable error; the job runs again after ``delay_s``."""


@hookspec
def runner_job_dead_lettered(
    job: jobs.Job, error: jobs.ErrorInfo, owner: str, alert: str | None
) -> None:
    """The job reached the DLQ: notify its queue's owner (``alert`` is the queue's target)."""


@hookspec
def runner_alert_fired(
    queue: str, rule: str, value: float, threshold: float, owner: str, target: str | None
) -> None:
    """A queue crossed an ``alerts:`` threshold (e.g. ``depth_above``); recorded already."""


@hookspec
def runner_alert_resolved(
    queue: str, rule: str, value: float, threshold: float, owner: str, target: str | None
) -> None:
    """A firing alert's measure fell back to or below its threshold."""

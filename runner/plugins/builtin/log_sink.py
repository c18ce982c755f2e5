"""Built-in alert sink: every dead-lettered job notifies its owner in the log."""

from __future__ import annotations

import logging

from runner import events, jobs
from runner.plugins.hookspecs import hookimpl

log = logging.getLogger("runner.alerts")


@hookimpl
def runner_job_dead_lettered(
    job: jobs.Job, error: jobs.ErrorInfo, owner: str, alert: str | None
) -> None:
    events.emit(
        log,
        logging.WARNING,
        "dlq_alert",
        job_id=job.id,
        type=job.type,
        queue=job.queue,
        attempt=job.attempt,
        error=error.type,
        owner=owner,
        alert=alert or "-",
    )


@hookimpl
def runner_alert_fired(
    queue: str, rule: str, value: float, threshold: float, owner: str, target: str | None
) -> None:
    events.emit(
        log,
        logging.WARNING,
        "alert_fired",
        queue=queue,
        rule=rule,
        value=value,
        threshold=threshold,
        owner=owner,
        target=target or "-",
    )


@hookimpl
def runner_alert_resolved(
    queue: str, rule: str, value: float, threshold: float, owner: str, target: str | None
) -> None:
    events.emit(
        log,
        logging.INFO,
        "alert_resolved",
        queue=queue,
        rule=rule,
        value=value,
        threshold=threshold,
        owner=owner,
        target=target or "-",
    )

"""Built-in alert sink: every dead-lettered job notifies its owner in the log."""

from __future__ import annotations

import logging

from runner import jobs
from runner.plugins.hookspecs import hookimpl

log = logging.getLogger("runner.alerts")


@hookimpl
def runner_job_dead_lettered(
    job: jobs.Job, error: jobs.ErrorInfo, owner: str, alert: str | None
) -> None:
    log.warning(
        "action=dlq_alert job_id=%s type=%s queue=%s attempt=%s error=%s owner=%s alert=%s",
        job.id,
        job.type,
        job.queue,
        job.attempt,
        error.type,
        owner,
        alert or "-",
    )

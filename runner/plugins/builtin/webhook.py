"""Built-in webhook sink: alerts and dead-lettered jobs POSTed as JSON to a URL from settings.

The URL comes from ``RUNNER_ALERT_WEBHOOK_URL``, never from a payload; the body carries
names, ids and numbers, never payload values. A failing webhook is logged, not retried.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from runner import events, jobs
from runner.plugins.hookspecs import hookimpl

log = logging.getLogger("runner.alerts")


class WebhookSink:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def _post(self, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "runner"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except Exception as exc:
            events.emit(
                log,
                logging.WARNING,
                "webhook_failed",
                event=body["event"],
                reason=f"{type(exc).__name__}: {exc}",
            )

    @hookimpl
    def runner_alert_fired(
        self,
        queue: str,
        rule: str,
        value: float,
        threshold: float,
        owner: str,
        target: str | None,
    ) -> None:
        self._post(
            {
                "event": "alert_fired",
                "queue": queue,
                "rule": rule,
                "value": value,
                "threshold": threshold,
                "owner": owner,
                "target": target,
            }
        )

    @hookimpl
    def runner_alert_resolved(
        self,
        queue: str,
        rule: str,
        value: float,
        threshold: float,
        owner: str,
        target: str | None,
    ) -> None:
        self._post(
            {
                "event": "alert_resolved",
                "queue": queue,
                "rule": rule,
                "value": value,
                "threshold": threshold,
                "owner": owner,
                "target": target,
            }
        )

    @hookimpl
    def runner_job_dead_lettered(
        self, job: jobs.Job, error: jobs.ErrorInfo, owner: str, alert: str | None
    ) -> None:
        self._post(
            {
                "event": "job_dead_lettered",
                "job_id": job.id,
                "type": job.type,
                "queue": job.queue,
                "attempt": job.attempt,
                "error": error.type,
                "owner": owner,
                "target": alert,
            }
        )

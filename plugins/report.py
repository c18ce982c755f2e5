"""Reports: slow CSV exports built in the background and stored for download."""

from __future__ import annotations

import runner
from plugins import provider


def build_report(job: runner.Job) -> None:
    provider.call(
        "report",
        f"{job.payload['accountId']}:{job.payload['kind']}",
        key=job.idempotency_key,
        job_id=job.id,
        attempt=job.attempt,
        work_s=float(job.payload.get("simulate_work_s", 0.0)),
    )


@runner.hookimpl
def runner_handlers() -> dict[str, object]:
    return {"report.build": build_report}

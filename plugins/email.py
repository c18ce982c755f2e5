"""Transactional email: welcome mails and password-reset links, sent through the provider."""

from __future__ import annotations

import runner
from plugins import provider


class InvalidAddress(Exception):
    """The address can never receive mail (hard bounce)."""


def send_email(job: runner.Job) -> None:
    to = job.payload["to"]
    try:
        provider.call(
            "email",
            to,
            key=job.idempotency_key,
            job_id=job.id,
            attempt=job.attempt,
            work_s=float(job.payload.get("simulate_work_s", 0.0)),
        )
    except provider.ProviderRejected as exc:
        raise InvalidAddress("hard bounce: the provider rejected the address") from exc


@runner.hookimpl
def runner_handlers() -> dict[str, object]:
    return {"email.send": send_email}

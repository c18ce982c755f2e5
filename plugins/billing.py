"""Billing: charge retries for failed renewals. The idempotency key is sent to the
gateway, so a redelivered charge can never bill twice."""

from __future__ import annotations

import runner
from plugins import provider


class CardDeclined(Exception):
    """The card was declined for good (stolen, closed): a human must look."""


def retry_charge(job: runner.Job) -> None:
    try:
        provider.call(
            "charge",
            job.payload["customerId"],
            key=job.idempotency_key,
            job_id=job.id,
            attempt=job.attempt,
        )
    except provider.ProviderRejected as exc:
        raise CardDeclined("card declined") from exc


@runner.hookimpl
def runner_handlers() -> dict[str, object]:
    return {"billing.retry_charge": retry_charge}

"""Image processing: thumbnails rendered after an upload (an async handler)."""

from __future__ import annotations

import asyncio

import runner
from plugins import provider


async def make_thumbnail(job: runner.Job) -> None:
    await asyncio.sleep(0)  # real code would await an HTTP fetch of the original
    source = job.payload["source_url"]
    try:
        await asyncio.to_thread(
            provider.call,
            "thumbnail",
            source,
            key=job.idempotency_key,
            job_id=job.id,
            attempt=job.attempt,
        )
    except provider.ProviderRejected as exc:
        raise runner.PermanentError("source image is corrupt") from exc


@runner.hookimpl
def runner_handlers() -> dict[str, object]:
    return {"image.thumbnail": make_thumbnail}

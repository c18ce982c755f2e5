"""Run one handler call with a timeout and turn its result into an outcome (no database)."""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from runner import errors, jobs

TRACEBACK_LINES = 30


@dataclass(slots=True)
class Outcome:
    ok: bool
    duration_s: float
    error: jobs.ErrorInfo | None = None
    permanent: bool = False


class JobTimeout(Exception):
    """The handler ran past the job type's ``timeout``."""


class HandlerFailed(Exception):
    """A handler raised a BaseException that is not an Exception (e.g. SystemExit)."""


def describe(exc: BaseException) -> jobs.ErrorInfo:
    """Class name, message and a truncated traceback (frames only, no locals)."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines)
    tail = "\n".join(text.splitlines()[-TRACEBACK_LINES:])
    return jobs.ErrorInfo(type=type(exc).__name__, message=str(exc)[:2000], traceback=tail)


def is_permanent(exc: BaseException, non_retryable: Collection[str]) -> bool:
    """``PermanentError`` or a class (or base class) named in ``non_retryable``."""
    if isinstance(exc, errors.PermanentError):
        return True
    for cls in type(exc).__mro__:
        if cls.__name__ in non_retryable or f"{cls.__module__}.{cls.__qualname__}" in non_retryable:
            return True
    return False


def failed(exc: BaseException, started: float, non_retryable: Collection[str]) -> Outcome:
    if not isinstance(exc, Exception):  # SystemExit & co. from a handler: a failure, not an exit
        exc = HandlerFailed(f"handler raised {type(exc).__name__}: {exc}")
    return Outcome(
        False, time.perf_counter() - started, describe(exc), is_permanent(exc, non_retryable)
    )


def timed_out(timeout_s: float, duration_s: float) -> Outcome:
    exc = JobTimeout(f"handler ran longer than the {timeout_s:g}s timeout")
    return Outcome(False, duration_s, describe(exc), False)


def call(
    handler: Callable[[jobs.Job], Any],
    job: jobs.Job,
    loop: asyncio.AbstractEventLoop,
    non_retryable: Collection[str],
    timeout_s: float,
) -> Outcome:
    """Call a plain handler on the current (handler) thread. The worker enforces its
    timeout; a coroutine it returns runs on the loop."""
    started = time.perf_counter()
    try:
        result = handler(job)
        if inspect.isawaitable(result):
            asyncio.run_coroutine_threadsafe(_awaited(result), loop).result(timeout_s)
    except BaseException as exc:
        return failed(exc, started, non_retryable)
    return Outcome(True, time.perf_counter() - started)


async def _awaited(result: Any) -> Any:
    return await result


async def run(
    handler: Callable[[jobs.Job], Any],
    job: jobs.Job,
    *,
    timeout_s: float,
    non_retryable: Collection[str],
) -> Outcome:
    """Await a coroutine handler on the loop, within its timeout."""
    started = time.perf_counter()
    try:
        await asyncio.wait_for(handler(job), timeout_s)
    except TimeoutError:
        return timed_out(timeout_s, time.perf_counter() - started)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return failed(exc, started, non_retryable)
    return Outcome(True, time.perf_counter() - started)

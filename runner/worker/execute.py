"""Run one handler call with a timeout and turn its result into an outcome (no database)."""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from runner import errors, jobs

TRACEBACK_LINES = 30


@dataclass(frozen=True)
class Outcome:
    ok: bool
    duration_s: float
    error: jobs.ErrorInfo | None = None
    permanent: bool = False


class JobTimeout(Exception):
    """The handler ran past the job type's ``timeout``."""


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


async def run(
    handler: Callable[[jobs.Job], Any],
    job: jobs.Job,
    *,
    timeout_s: float,
    executor: Executor,
    non_retryable: Collection[str],
) -> Outcome:
    """Call the handler (a coroutine function on the loop, a plain one in the executor)."""
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(handler):
            await asyncio.wait_for(handler(job), timeout_s)
        else:
            loop = asyncio.get_running_loop()
            result = await asyncio.wait_for(
                asyncio.shield(loop.run_in_executor(executor, handler, job)), timeout_s
            )
            if inspect.isawaitable(result):  # a plain function returning a coroutine
                await asyncio.wait_for(result, timeout_s)
    except TimeoutError:
        exc = JobTimeout(f"handler ran longer than the {timeout_s:g}s timeout")
        return Outcome(False, time.perf_counter() - started, describe(exc), False)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return Outcome(
            False, time.perf_counter() - started, describe(exc), is_permanent(exc, non_retryable)
        )
    return Outcome(True, time.perf_counter() - started)

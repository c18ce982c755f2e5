"""Pure retry decisions: what happens to a job after a failed attempt."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass

from runner import jobs


@dataclass(frozen=True)
class Policy:
    max_attempts: int
    backoff: str  # "exponential" | "fixed"
    base_s: float
    max_s: float
    jitter: float  # fraction of each delay drawn at random, 0..1
    non_retryable: Collection[str] = ()


def backoff_delay(policy: Policy, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Delay before attempt ``attempt + 1``: ``base * 2**(attempt-1)`` capped at ``max``,
    then reduced by up to ``jitter`` of itself (so with jitter <= 0.5 delays never shrink)."""
    if policy.backoff == "fixed":
        delay = policy.base_s
    else:
        delay = policy.base_s * (2 ** min(attempt - 1, 62))
    delay = min(delay, policy.max_s)
    return delay * (1.0 - policy.jitter * rand())


def decide(
    error: jobs.ErrorInfo,
    permanent: bool,
    policy: Policy,
    attempt: int,
    rand: Callable[[], float] = random.random,
) -> jobs.Decision:
    """Dead-letter a permanent or non-retryable error, or a job out of attempts; else retry."""
    if permanent or error.type in policy.non_retryable:
        return jobs.Decision(jobs.Action.DEAD_LETTER, reason="non-retryable error")
    if attempt >= policy.max_attempts:
        return jobs.Decision(
            jobs.Action.DEAD_LETTER, reason=f"failed {attempt} of {policy.max_attempts} attempts"
        )
    return jobs.Decision(jobs.Action.RETRY, delay_s=backoff_delay(policy, attempt, rand))

"""runner: a declarative job-queue pipeline runner.

The public Python API: ``runner.load(path)`` returns a pipeline to enqueue with;
``runner.hookimpl`` marks plugin hooks; the errors below are what producers catch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.errors import (
    ConfigInvalid,
    InvalidPayload,
    NotFound,
    PermanentError,
    QueueFull,
    RunnerError,
)
from runner.jobs import Job
from runner.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from runner.api import Pipeline, load


def __getattr__(name: str) -> Any:
    """``load`` and ``Pipeline`` are imported on first use, so plugins import fast."""
    if name in ("load", "Pipeline"):
        from runner import api

        return getattr(api, name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")


__all__ = [
    "ConfigInvalid",
    "InvalidPayload",
    "Job",
    "NotFound",
    "PermanentError",
    "Pipeline",
    "QueueFull",
    "RunnerError",
    "hookimpl",
    "load",
]

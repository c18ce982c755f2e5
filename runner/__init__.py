"""runner: a declarative job-queue pipeline runner.

The public Python API: ``runner.load(path)`` returns a pipeline to enqueue with;
``runner.hookimpl`` marks plugin hooks; the errors below are what producers catch.
"""

from __future__ import annotations

from runner.api import Pipeline, load
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

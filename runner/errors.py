"""The runner's exception tree and the exit codes the CLI maps them to (sysexits)."""

from __future__ import annotations

from dataclasses import dataclass

EX_OK = 0
EX_USAGE = 2
EX_DATAERR = 65  # invalid payload
EX_NOINPUT = 66  # file, job or entry not found
EX_UNAVAILABLE = 69  # database unreachable
EX_SOFTWARE = 70  # internal error (a bug)
EX_TEMPFAIL = 75  # refused by backpressure
EX_NOPERM = 77  # refused by a job type's DLQ replay rule
EX_CONFIG = 78  # invalid pipeline file


class RunnerError(Exception):
    """Base class of every error the runner raises on purpose."""

    exit_code = EX_SOFTWARE


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a pipeline file, printed as ``file:line:col: message``."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigInvalid(RunnerError):
    """A pipeline file is invalid; carries every diagnostic, not just the first."""

    exit_code = EX_CONFIG

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.col, d.message))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class InvalidPayload(RunnerError):
    """A payload was refused at enqueue: schema, secrets, size or encoding.

    ``problems`` lists each failing field as ``(json_path, message)``; messages
    never contain payload values.
    """

    exit_code = EX_DATAERR

    def __init__(self, job_type: str, problems: list[tuple[str, str]], *, line: int | None = None):
        self.job_type = job_type
        self.problems = problems
        self.line = line
        where = f"line {line}: " if line is not None else ""
        detail = "; ".join(f"{path}: {msg}" for path, msg in problems)
        super().__init__(f"{where}invalid payload for {job_type}: {detail}")


class QueueFull(RunnerError):
    """Enqueue refused by backpressure: the queue holds ``max_depth`` jobs already."""

    exit_code = EX_TEMPFAIL

    def __init__(self, queue: str, depth: int, max_depth: int, requested: int = 1) -> None:
        self.queue = queue
        self.depth = depth
        self.max_depth = max_depth
        super().__init__(
            f"queue {queue} is full: depth {depth} + {requested} new would exceed "
            f"max_depth {max_depth}; retry later"
        )


class NotFound(RunnerError):
    """A named thing does not exist: a file, a job type, a job id."""

    exit_code = EX_NOINPUT


class ReplayRefused(RunnerError):
    """A DLQ replay named jobs whose type forbids it (``replay: never``)."""

    exit_code = EX_NOPERM


class DatabaseUnavailable(RunnerError):
    """The database cannot be reached."""

    exit_code = EX_UNAVAILABLE


class PermanentError(Exception):
    """Raised by a handler to dead-letter its job at once, without further retries."""

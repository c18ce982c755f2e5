"""What the worker and the API may ask of a store. No SQLAlchemy here."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from runner import jobs

PRUNE_BATCH = 5_000
"""The most succeeded jobs one ``prune`` call deletes."""


def fair_shares(concurrency: int, wanted: Mapping[str, int]) -> dict[str, int]:
    """Split a queue's concurrency among live workers: one slot at a time, in worker
    order, never more than a worker wants. Every worker computes the same split."""
    shares = dict.fromkeys(wanted, 0)
    left = concurrency
    hungry = sorted(w for w, n in wanted.items() if n > 0)
    while left > 0 and hungry:
        per = max(1, left // len(hungry))
        for worker in list(hungry):
            give = min(per, wanted[worker] - shares[worker], left)
            shares[worker] += give
            left -= give
            if shares[worker] >= wanted[worker]:
                hungry.remove(worker)
            if left == 0:
                break
    return shares


@dataclass(frozen=True)
class Slots:
    """A worker's lease on part of a queue's concurrency."""

    held: int
    """Handlers of this queue the worker may run at once, until the lease expires."""
    share: int
    """Its fair share; ``held`` is lower while other workers still hold the difference."""


class NewJob(NamedTuple):
    """A validated job on its way into the table (immutable; a tuple: built per payload
    of a bulk enqueue, where a frozen dataclass's ``__init__`` cost twice as much)."""

    queue: str
    type: str
    payload_json: str
    priority: int
    max_attempts: int
    schema_version: int
    idempotency_key: str | None = None


class NewBatch(NamedTuple):
    """Validated jobs of one type on their way into the table: what they share, once, and
    each one's payload (and key). ``keys`` is None when no job has one."""

    queue: str
    type: str
    priority: int
    schema_version: int
    max_attempts: int
    payloads: Sequence[str]
    """Canonical JSON texts, in input order (a ``JsonArray`` from the batch path)."""
    keys: list[str | None] | None = None


@dataclass(slots=True)
class Claimed:
    """A leased job as the store returns it (built once per job: slotted, not frozen,
    for speed; nothing mutates it)."""

    id: int
    queue: str
    type: str
    payload_json: str
    attempt: int
    max_attempts: int
    lease_token: str
    idempotency_key: str | None
    schema_version: int
    enqueued_at: float
    claimed_at: float


@dataclass(frozen=True)
class ClaimResult:
    jobs: list[Claimed]
    """Leased jobs for the worker to run."""
    duplicates: list[Claimed]
    """Jobs whose idempotency key was already done: acked without running the handler."""
    saturated: bool = False
    """The queue's concurrency is used up by other workers: try again soon, not at the
    next poll."""


@dataclass(frozen=True)
class Reaped:
    """A running job whose lease expired: queued again, or dead when out of attempts."""

    id: int
    queue: str
    type: str
    attempt: int
    max_attempts: int
    dead: bool


@dataclass(frozen=True)
class QueueStats:
    ready: int
    scheduled: int
    in_flight: int
    done: int
    dead: int
    oldest_ready_age_s: float | None
    failure_rate: float | None
    p95_s: float | None
    p50_s: float | None
    processed_in_window: int
    failed_in_window: int
    window_s: float


@dataclass(frozen=True)
class ErrorRecord:
    attempt: int
    type: str
    message: str
    traceback: str
    at: float


@dataclass(frozen=True)
class DeadJob:
    id: int
    type: str
    queue: str
    attempts: int
    max_attempts: int
    last_error: str | None
    owner: str | None
    enqueued_at: float
    dead_at: float | None
    idempotency_key: str | None
    payload_json: str
    errors: list[ErrorRecord]


@dataclass(frozen=True)
class DlqFilter:
    queues: Sequence[str]
    types: Sequence[str] = ()
    ids: Sequence[int] = ()
    error_type: str | None = None
    older_than_s: float | None = None
    limit: int | None = None


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[int]
    skipped_pending_key: list[int]


@dataclass(frozen=True)
class AuditEntry:
    at: float
    operator: str
    action: str
    selection: str
    count: int
    job_ids: list[int]


@dataclass(frozen=True)
class AlertEvent:
    queue: str
    rule: str
    state: str  # "firing" | "resolved"
    value: float
    threshold: float
    at: float


class Listener(Protocol):
    """Wakes a worker early when jobs are enqueued; a hint only, polling is the truth."""

    def run(
        self,
        queues: set[str],
        wake: Callable[[], None],
        stop: threading.Event,
        idle: threading.Event | None = None,
    ) -> None:
        """Call ``wake`` when jobs may have arrived, until ``stop``. ``idle`` is set while
        the worker waits for jobs (a polling listener pauses while it is clear)."""


class Store(Protocol):
    """Named database verbs; every worker-side change is a compare-and-set on the lease."""

    claim_never_waits: bool
    """Whether ``claim`` (without a concurrency argument) never waits for another
    transaction's lock, only for the database's answer."""

    def migrate(self) -> int: ...
    def ensure_queues(self, names: Sequence[str]) -> None: ...
    def now(self) -> float: ...
    def enqueue(
        self, new: Sequence[NewJob] | NewBatch, *, max_depth: int | None, dedupe: bool
    ) -> list[int]: ...
    def claim(
        self,
        queue: str,
        *,
        limit: int,
        lease_s: float,
        worker: str,
        concurrency: int | None = None,
    ) -> ClaimResult: ...
    def acquire_slots(
        self,
        queue: str,
        worker: str,
        *,
        wanted: int,
        executing: int,
        concurrency: int,
        ttl_s: float,
    ) -> Slots: ...
    def release_slots(self, worker: str, queues: Sequence[str]) -> None: ...
    def release_many(self, leases: Sequence[tuple[int, str]]) -> set[int]: ...
    def extend_leases(self, leases: Sequence[tuple[int, str]], lease_s: float) -> set[int]: ...
    def ack(self, job_id: int, token: str, idempotency_key: str | None) -> bool: ...
    def ack_many(self, acks: Sequence[tuple[int, str, str | None]]) -> set[int]: ...
    def retry(self, job_id: int, token: str, error: jobs.ErrorInfo, delay_s: float) -> bool: ...
    def dead_letter(self, job_id: int, token: str, error: jobs.ErrorInfo, owner: str) -> bool: ...
    def release(self, job_id: int, token: str) -> bool: ...
    def reap(self, owners: Mapping[str, str]) -> list[Reaped]: ...
    def prune(
        self, queues: Sequence[str], *, done_before_s: float, keys_before_s: float
    ) -> int: ...
    def pending(self, queues: Sequence[str]) -> int: ...
    def stats(self, queues: Sequence[str], window_s: float) -> dict[str, QueueStats]: ...
    def dlq_list(self, flt: DlqFilter) -> list[DeadJob]: ...
    def dlq_replay(self, flt: DlqFilter, *, operator: str) -> ReplayResult: ...
    def dlq_purge(self, flt: DlqFilter, *, operator: str) -> int: ...
    def audit_log(self, limit: int) -> list[AuditEntry]: ...
    def try_lead(self, name: str, holder: str, lease_s: float) -> bool: ...
    def count(self, queue: str, job_type: str, name: str, n: int) -> None: ...
    def counters(self, queues: Sequence[str]) -> list[tuple[str, str, str, int]]: ...
    def alert_states(self, queues: Sequence[str]) -> dict[tuple[str, str], str]: ...
    def record_alert(
        self, queue: str, rule: str, state: str, value: float, threshold: float
    ) -> None: ...
    def alert_events(self, queues: Sequence[str], limit: int) -> list[AlertEvent]: ...
    def get_job(self, job_id: int) -> DeadJob | None: ...
    def dispose(self) -> None: ...
    def listener(self) -> Listener | None: ...


class StoreUnavailable(Exception):
    """The database could not be reached or stayed busy; the caller may retry later."""


class QueueFullError(Exception):
    """Raised by ``enqueue`` when a batch would push a queue past ``max_depth``."""

    def __init__(self, queue: str, depth: int, max_depth: int, requested: int) -> None:
        super().__init__(queue)
        self.queue = queue
        self.depth = depth
        self.max_depth = max_depth
        self.requested = requested


@dataclass(frozen=True)
class EngineOptions:
    pool_size: int = 5
    sqlite_synchronous: str = "FULL"
    """Producer and operator commits (an accepted job survives a power loss)."""
    sqlite_worker_synchronous: str = "NORMAL"
    """Claims and acks: a power loss may undo the last ones, which only redelivers jobs."""
    pg_worker_synchronous_commit: str = "off"
    """PostgreSQL claims and acks: ``off`` does not wait for the WAL flush (a server crash
    may undo the last ones, which only redelivers jobs); producers always wait."""
    application_name: str = "runner"

"""The worker loop: claim within slots, execute, decide, record; reap; drain on stop.

All database work goes through the store's named verbs in a thread, so handlers
running on the event loop are never blocked by SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runner import events, jobs, retry
from runner.engine import base
from runner.worker import execute

log = logging.getLogger("runner.worker")

T = TypeVar("T")

SATURATED_RETRY_S = 0.05


@dataclass(frozen=True)
class QueueSpec:
    name: str
    concurrency: int
    lease_s: float
    paused: bool
    owner: str
    alert: str | None = None


@dataclass(frozen=True)
class JobSpec:
    type: str
    handler: Callable[[jobs.Job], Any] | None
    timeout_s: float
    policy: retry.Policy
    heartbeat: bool = False


def _identity(c: base.Claimed) -> dict[str, Any]:
    """The fields every job event carries (never the payload)."""
    return {"job_id": c.id, "type": c.type, "queue": c.queue, "attempt": c.attempt}


@dataclass(frozen=True)
class AlertSpec:
    queue: str
    rule: str  # depth_above | oldest_age_above | failure_rate_above | dlq_above
    threshold: float
    owner: str
    target: str | None


def alert_value(rule: str, stats: base.QueueStats) -> float:
    """The measure an alert rule compares with its threshold."""
    if rule == "depth_above":
        return float(stats.ready + stats.scheduled)
    if rule == "oldest_age_above":
        return stats.oldest_ready_age_s or 0.0
    if rule == "failure_rate_above":
        return stats.failure_rate or 0.0
    if rule == "dlq_above":
        return float(stats.dead)
    raise ValueError(f"unknown alert rule {rule!r}")


@dataclass(frozen=True)
class WorkerOptions:
    until_idle: bool = False
    poll_interval_s: float = 0.5
    claim_batch: int = 32
    shutdown_grace_s: float = 30.0
    reap_interval_s: float = 1.0
    prune_interval_s: float = 60.0
    alert_interval_s: float = 15.0
    status_window_s: float = 300.0
    ack_flush_s: float = 0.002
    done_retention_s: float = 7 * 86400.0
    idempotency_retention_s: float = 30 * 86400.0
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class Hooks:
    """Observer hooks; a failing observer is logged and never stops the worker."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook

    def call(self, name: str, **kwargs: Any) -> None:
        try:
            getattr(self._hook, name)(**kwargs)
        except Exception:
            log.exception("action=hook_failed hook=%s", name)


@dataclass
class _InFlight:
    claimed: base.Claimed
    queue: QueueSpec
    task: asyncio.Task[None] | None = None


@dataclass
class WorkerStats:
    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    stale: int = 0
    released: int = 0


class Worker:
    def __init__(
        self,
        store: base.Store,
        queues: Sequence[QueueSpec],
        job_specs: Mapping[str, JobSpec],
        hooks: Hooks,
        options: WorkerOptions,
        alerts: Sequence[AlertSpec] = (),
    ) -> None:
        self.alerts = list(alerts)
        self.store = store
        self.queues = list(queues)
        self.job_specs = dict(job_specs)
        self.hooks = hooks
        self.options = options
        self.stats = WorkerStats()
        self._in_flight: dict[int, _InFlight] = {}
        self._per_queue: dict[str, int] = {q.name: 0 for q in self.queues}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._force = False
        slots = sum(q.concurrency for q in self.queues if not q.paused)
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, min(slots, 256)), thread_name_prefix="runner-handler"
        )
        self.abandoned_threads = False
        self._acks: list[tuple[base.Claimed, asyncio.Future[bool]]] = []
        self._ack_ready = asyncio.Event()

    # -- database calls ------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store verb in a thread; retry with backoff while the database is unavailable."""
        delay = 0.1
        while True:
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except base.StoreUnavailable as exc:
                if self._force:
                    raise
                events.emit(
                    log,
                    logging.WARNING,
                    "db_unavailable",
                    verb=getattr(fn, "__name__", "?"),
                    retry_in_s=delay,
                    reason=str(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- main loop -------------------------------------------------------------------

    def request_stop(self, force: bool = False) -> None:
        if self._stopping.is_set() and not force:
            force = True
        self._force = self._force or force
        self._stopping.set()
        self._wake.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        events.emit(
            log,
            logging.INFO,
            "stop",
            signal=sig.name,
            in_flight=len(self._in_flight),
            grace_s=self.options.shutdown_grace_s,
        )
        self.request_stop()

    async def run(self) -> int:
        """Work until stopped (or idle with ``until_idle``). Returns an exit code."""
        self._install_signals()
        listening = self._start_listener()
        background = [
            asyncio.create_task(self._reaper()),
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._ack_flusher()),
        ]
        if self.alerts:
            background.append(asyncio.create_task(self._alert_loop()))
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if listening is not None:
                listening[1].set()
                await asyncio.to_thread(listening[0].join, 5)
            self._executor.shutdown(wait=False, cancel_futures=True)
        return 0

    def _start_listener(self) -> tuple[threading.Thread, threading.Event] | None:
        """LISTEN for new jobs in a thread (PostgreSQL): claims start without waiting a poll."""
        listener = self.store.listener()
        if listener is None:
            return None
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        names = {q.name for q in self.queues if not q.paused}
        thread = threading.Thread(
            target=listener.run, args=(names, wake, stop), name="runner-listen", daemon=True
        )
        thread.start()
        return thread, stop

    async def _claim_loop(self) -> None:
        active = [q for q in self.queues if not q.paused]
        active_names = [q.name for q in active]
        while not self._stopping.is_set():
            self._wake.clear()
            got = 0
            saturated = False
            for queue in active:
                free = queue.concurrency - self._per_queue[queue.name]
                if free <= 0 or self._stopping.is_set():
                    continue
                claimed, busy = await self._claim(queue, min(free, self.options.claim_batch))
                got += claimed
                saturated = saturated or busy
            if got:
                continue
            if (
                self.options.until_idle
                and not self._in_flight
                and await self._db(self.store.pending, active_names) == 0
            ):
                events.emit(log, logging.INFO, "idle", processed=self.stats.processed)
                return
            # Other workers hold the queue's slots: they free up within milliseconds.
            wait_s = SATURATED_RETRY_S if saturated else self.options.poll_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _claim(self, queue: QueueSpec, limit: int) -> tuple[int, bool]:
        result = await self._db(
            self.store.claim,
            queue.name,
            limit=limit,
            concurrency=queue.concurrency,
            lease_s=queue.lease_s,
            worker=self.options.worker_id,
        )
        for dup in result.duplicates:
            self.stats.duplicates += 1
            job = self._job(dup)
            events.emit(
                log,
                logging.INFO,
                "ack",
                job_id=dup.id,
                type=dup.type,
                queue=dup.queue,
                attempt=dup.attempt,
                duplicate=True,
            )
            self.hooks.call("runner_job_acked", job=job, duration_s=0.0, duplicate=True)
        for claimed in result.jobs:
            entry = _InFlight(claimed, queue)
            self._in_flight[claimed.id] = entry
            self._per_queue[queue.name] += 1
            entry.task = asyncio.create_task(self._process(entry))
        return len(result.jobs) + len(result.duplicates), result.saturated

    # -- one job -------------------------------------------------------------------------

    def _job(self, c: base.Claimed) -> jobs.Job:
        try:
            payload = json.loads(c.payload_json)
        except ValueError:
            payload = {}
        return jobs.Job(
            id=c.id,
            type=c.type,
            queue=c.queue,
            attempt=c.attempt,
            payload=payload,
            max_attempts=c.max_attempts,
            idempotency_key=c.idempotency_key,
            schema_version=c.schema_version,
            enqueued_at=c.enqueued_at,
            claimed_at=c.claimed_at,
            lease_token=c.lease_token,
        )

    async def _process(self, entry: _InFlight) -> None:
        c = entry.claimed
        try:
            job = self._job(c)
            spec = self.job_specs.get(c.type)
            self.hooks.call("runner_job_claimed", job=job)
            events.emit(
                log,
                logging.DEBUG,
                "claim",
                **_identity(c),
            )
            if spec is None or spec.handler is None:
                error = jobs.ErrorInfo(
                    "UnknownJobType", f"no handler for job type {c.type!r} in this pipeline"
                )
                await self._dead_letter(entry, job, error)
                return
            outcome = await execute.run(
                spec.handler,
                job,
                timeout_s=spec.timeout_s,
                executor=self._executor,
                non_retryable=spec.policy.non_retryable,
            )
            await self._record(entry, job, spec, outcome)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("action=worker_error job_id=%s", c.id)
        finally:
            self._in_flight.pop(c.id, None)
            self._per_queue[entry.queue.name] -= 1
            self._wake.set()

    async def _record(
        self, entry: _InFlight, job: jobs.Job, spec: JobSpec, outcome: execute.Outcome
    ) -> None:
        c = entry.claimed
        if outcome.ok:
            if await self._ack(c):
                self.stats.processed += 1
                events.emit(
                    log,
                    logging.INFO,
                    "ack",
                    **_identity(c),
                    duration_s=outcome.duration_s,
                )
                self.hooks.call(
                    "runner_job_acked", job=job, duration_s=outcome.duration_s, duplicate=False
                )
            else:
                self._stale("ack", c)
            return
        error = outcome.error or jobs.ErrorInfo("Error", "unknown failure")
        self.stats.failed += 1
        decision = retry.decide(error, outcome.permanent, spec.policy, c.attempt)
        if decision.action is jobs.Action.RETRY:
            if await self._db(self.store.retry, c.id, c.lease_token, error, decision.delay_s):
                self.stats.retried += 1
                events.emit(
                    log,
                    logging.INFO,
                    "retry",
                    **_identity(c),
                    max_attempts=c.max_attempts,
                    error=error.type,
                    delay_s=decision.delay_s,
                )
                self.hooks.call(
                    "runner_job_retried", job=job, error=error, delay_s=decision.delay_s
                )
            else:
                self._stale("retry", c)
        else:
            await self._dead_letter(entry, job, error, decision.reason)

    async def _dead_letter(
        self, entry: _InFlight, job: jobs.Job, error: jobs.ErrorInfo, reason: str = ""
    ) -> None:
        c = entry.claimed
        if await self._db(self.store.dead_letter, c.id, c.lease_token, error, entry.queue.owner):
            self.stats.dead_lettered += 1
            events.emit(
                log,
                logging.WARNING,
                "dead_letter",
                **_identity(c),
                error=error.type,
                reason=reason,
                owner=entry.queue.owner,
            )
            self.hooks.call(
                "runner_job_dead_lettered",
                job=job,
                error=error,
                owner=entry.queue.owner,
                alert=entry.queue.alert,
            )
        else:
            self._stale("dead_letter", c)

    async def _ack(self, c: base.Claimed) -> bool:
        """Queue an ack for the next batch; True once committed, False if the lease was lost.

        The job's slot stays taken until then: an ack not yet flushed when the process
        dies means a redelivery, never a lost job.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._acks.append((c, future))
        self._ack_ready.set()
        return await future

    async def _ack_flusher(self) -> None:
        """Commit queued acks together, every ``ack_flush_s`` at most."""
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            if self.options.ack_flush_s:
                await asyncio.sleep(self.options.ack_flush_s)
            batch, self._acks = self._acks, []
            if not batch:
                continue
            items = [(c.id, c.lease_token, c.idempotency_key) for c, _ in batch]
            try:
                acked = await self._db(self.store.ack_many, items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for c, future in batch:
                if not future.done():
                    future.set_result(c.id in acked)

    def _stale(self, verb: str, c: base.Claimed) -> None:
        self.stats.stale += 1
        events.emit(
            log,
            logging.WARNING,
            "lease_lost",
            verb=verb,
            **_identity(c),
            outcome="rejected",
            reason="lease expired and the job was taken again",
        )

    # -- background duties ------------------------------------------------------------

    async def _reaper(self) -> None:
        owners = {q.name: q.owner for q in self.queues}
        by_name = {q.name: q for q in self.queues}
        last_prune = 0.0
        while True:
            try:
                for r in await self._db(self.store.reap, owners):
                    events.emit(
                        log,
                        logging.WARNING,
                        "reap",
                        job_id=r.id,
                        type=r.type,
                        queue=r.queue,
                        attempt=r.attempt,
                        max_attempts=r.max_attempts,
                        outcome="dead_letter" if r.dead else "requeued",
                    )
                    if r.dead:
                        job = jobs.Job(r.id, r.type, r.queue, r.attempt, {}, r.max_attempts)
                        self.hooks.call(
                            "runner_job_dead_lettered",
                            job=job,
                            error=jobs.ErrorInfo("LeaseExpired", "no ack within the lease"),
                            owner=owners[r.queue],
                            alert=by_name[r.queue].alert,
                        )
                if time.monotonic() - last_prune > self.options.prune_interval_s:
                    last_prune = time.monotonic()
                    await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("action=reap_failed")
            await asyncio.sleep(self.options.reap_interval_s)

    async def _alert_loop(self) -> None:
        """Evaluate alert thresholds while this process holds the evaluator lease."""
        lease_s = self.options.alert_interval_s * 3
        while True:
            try:
                if await self._db(self.store.try_lead, "alerts", self.options.worker_id, lease_s):
                    await self._evaluate_alerts()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("action=alerts_failed")
            await asyncio.sleep(self.options.alert_interval_s)

    async def _evaluate_alerts(self) -> None:
        names = sorted({a.queue for a in self.alerts})
        stats = await self._db(self.store.stats, names, self.options.status_window_s)
        states = await self._db(self.store.alert_states, names)
        for spec in self.alerts:
            value = alert_value(spec.rule, stats[spec.queue])
            firing = value > spec.threshold
            if firing == (states.get((spec.queue, spec.rule)) == "firing"):
                continue
            state = "firing" if firing else "resolved"
            await self._db(
                self.store.record_alert, spec.queue, spec.rule, state, value, spec.threshold
            )
            self.hooks.call(
                "runner_alert_fired" if firing else "runner_alert_resolved",
                queue=spec.queue,
                rule=spec.rule,
                value=value,
                threshold=spec.threshold,
                owner=spec.owner,
                target=spec.target,
            )

    async def _prune(self) -> None:
        """Delete succeeded jobs past their retention, a batch at a time, so the table stays
        small however many jobs pass through it."""
        names = [q.name for q in self.queues]
        while True:
            deleted = await self._db(
                self.store.prune,
                names,
                done_before_s=self.options.done_retention_s,
                keys_before_s=self.options.idempotency_retention_s,
            )
            if deleted:
                events.emit(log, logging.DEBUG, "prune", deleted=deleted)
            if deleted < base.PRUNE_BATCH or self._stopping.is_set():
                return

    async def _heartbeat(self) -> None:
        """Renew leases of heartbeat job types always, and of every in-flight job while draining."""
        interval = max(0.05, min((q.lease_s for q in self.queues), default=30.0) / 3)
        while True:
            await asyncio.sleep(interval)
            draining = self._stopping.is_set()
            for queue in self.queues:
                leases = [
                    (e.claimed.id, e.claimed.lease_token)
                    for e in list(self._in_flight.values())
                    if e.queue.name == queue.name
                    and (draining or self._heartbeat_type(e.claimed.type))
                ]
                if not leases:
                    continue
                try:
                    lost = await self._db(self.store.extend_leases, leases, queue.lease_s)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("action=extend_leases_failed queue=%s", queue.name)
                    continue
                for job_id in lost:
                    events.emit(
                        log, logging.WARNING, "lease_lost", verb="extend_leases", job_id=job_id
                    )

    def _heartbeat_type(self, job_type: str) -> bool:
        spec = self.job_specs.get(job_type)
        return bool(spec and spec.heartbeat)

    # -- shutdown -------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let in-flight jobs finish within the grace period, then release the rest at once."""
        tasks = [e.task for e in self._in_flight.values() if e.task is not None]
        if not tasks:
            return
        deadline = time.monotonic() + self.options.shutdown_grace_s
        while self._in_flight and not self._force and time.monotonic() < deadline:
            pending = [e.task for e in self._in_flight.values() if e.task is not None]
            await asyncio.wait(pending, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        leftover = list(self._in_flight.values())
        for entry in leftover:
            if entry.task is not None:
                entry.task.cancel()
        for entry in leftover:
            c = entry.claimed
            try:
                released = await asyncio.to_thread(self.store.release, c.id, c.lease_token)
            except Exception as exc:
                events.emit(log, logging.WARNING, "release_failed", job_id=c.id, reason=str(exc))
                continue
            if released:
                self.stats.released += 1
                events.emit(
                    log,
                    logging.WARNING,
                    "release",
                    job_id=c.id,
                    type=c.type,
                    queue=c.queue,
                    reason="shutdown grace period over",
                )
        if leftover:
            self.abandoned_threads = True
            await asyncio.gather(
                *(e.task for e in leftover if e.task is not None), return_exceptions=True
            )

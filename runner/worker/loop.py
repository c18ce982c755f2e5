"""The worker: claim ahead within slots, run, decide, record; reap; drain on stop.

A worker leases slots of each queue's concurrency (``acquire_slots``) and claims jobs ahead
of them in batches; its lanes (``lane.py``) run them within the slots, plain handlers on
threads that take job after job, coroutine handlers on this loop. Finished jobs come back
in batches and their acks are committed together. All database work goes through the
store's named verbs in a thread, so the loop is never blocked by SQL.
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
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runner import events, jobs, retry
from runner.engine import base
from runner.worker import execute
from runner.worker.lane import Lane, Ready
from runner.worker.lane import QueueSpec as QueueSpec

log = logging.getLogger("runner.worker")

T = TypeVar("T")

SATURATED_RETRY_S = 0.05
"""How soon a worker asks again for slots that another worker is about to give back."""
SLOT_RENEW_S = 0.25
"""The longest a worker goes without renewing its slots (shorter for short leases)."""
WATCHDOG_S = 0.05
"""How often handler threads are checked against their jobs' timeouts."""


@dataclass(frozen=True)
class JobSpec:
    type: str
    handler: Callable[[jobs.Job], Any] | None
    timeout_s: float
    policy: retry.Policy
    heartbeat: bool = False


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The scanner json.loads ends up in (C), set by JSONDecoder.__init__."""


def _payload(text: str) -> Any:
    """A stored payload (canonical JSON, written at enqueue) decoded without json.loads'
    Python-level wrapper, which costs five times the C scanner on a small payload."""
    try:
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return {}


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
    claim_batch: int = 2000
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

    def wanted(self, name: str) -> bool:
        """Whether any plugin implements the hook (per-job hooks are skipped otherwise)."""
        caller = getattr(self._hook, name, None)
        return caller is None or bool(caller.get_hookimpls())


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
        self._lanes: dict[str, Lane] = {}
        self._on_loop: dict[int, asyncio.Task[None]] = {}  # coroutine handlers running
        self._recording = 0  # finished jobs whose ack, retry or dead-letter is not committed
        self._failing: set[asyncio.Task[None]] = set()
        self._renewing: asyncio.Future[base.Slots] | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._force = False
        self.abandoned_threads = False
        self._acks: list[tuple[Ready, float]] = []
        self._ack_ready = asyncio.Event()
        self._idle = threading.Event()  # set while a lane waits for jobs to arrive
        self._idle.set()

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
            in_flight=sum(lane.executing for lane in self._lanes.values()),
            grace_s=self.options.shutdown_grace_s,
        )
        self.request_stop()

    async def run(self) -> int:
        """Work until stopped (or idle with ``until_idle``). Returns an exit code."""
        self._install_signals()
        loop = asyncio.get_running_loop()
        for q in self.queues:
            if not q.paused:
                self._lanes[q.name] = lane = Lane(q, loop, on_finished=lambda: None)
                lane.on_finished = self._collector(lane)
        listening = self._start_listener()
        await self._renew_slots()
        background = [
            asyncio.create_task(self._slots_loop()),
            asyncio.create_task(self._watchdog()),
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
            for lane in self._lanes.values():
                lane.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if listening is not None:
                listening[1].set()
                await asyncio.to_thread(listening[0].join, 5)
            if self._renewing is not None:
                await asyncio.wait([self._renewing], timeout=30)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.store.release_slots, self.options.worker_id, list(self._lanes)
                )
            self.abandoned_threads = self.abandoned_threads or any(
                lane.abandoned for lane in self._lanes.values()
            )
        return 0

    def _start_listener(self) -> tuple[threading.Thread, threading.Event] | None:
        """LISTEN for new jobs in a thread (PostgreSQL): claims start without waiting a poll."""
        listener = self.store.listener()
        if listener is None:
            return None
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(self._new_jobs)

        names = {q.name for q in self.queues if not q.paused}
        thread = threading.Thread(
            target=listener.run,
            args=(names, wake, stop, self._idle),
            name="runner-listen",
            daemon=True,
        )
        thread.start()
        return thread, stop

    def _new_jobs(self) -> None:
        """Jobs were enqueued (a notification): claim now, not at the next poll."""
        for lane in self._lanes.values():
            lane.quiet_until = 0.0
        self._wake.set()

    def _busy(self) -> bool:
        return self._recording > 0 or any(lane.busy() for lane in self._lanes.values())

    async def _claim_loop(self) -> None:
        lanes = list(self._lanes.values())
        batch = self.options.claim_batch
        while not self._stopping.is_set():
            self._wake.clear()
            got = 0
            for lane in lanes:
                now = time.monotonic()
                if self._stopping.is_set() or now >= lane.valid_until or now < lane.quiet_until:
                    continue
                need = lane.need(batch)
                if need <= 0:
                    continue
                claimed = await self._claim(lane, need)
                got += claimed
                if claimed < need:  # the queue is empty for now
                    lane.quiet_until = time.monotonic() + self.options.poll_interval_s
            now = time.monotonic()
            if any(lane.quiet_until > now for lane in lanes):
                self._idle.set()
            else:
                self._idle.clear()
            if got:
                continue
            if (
                self.options.until_idle
                and not self._busy()
                and await self._db(self.store.pending, list(self._lanes)) == 0
            ):
                events.emit(log, logging.INFO, "idle", processed=self.stats.processed)
                return
            now = time.monotonic()
            wait_s = min(
                [lane.quiet_until - now for lane in lanes if lane.quiet_until > now]
                + [self.options.poll_interval_s]
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait_s, 0.001))

    async def _claim(self, lane: Lane, limit: int) -> int:
        args = (lane.spec.name,)
        kwargs = {"limit": limit, "lease_s": lane.spec.lease_s, "worker": self.options.worker_id}
        result = self._claim_here(args, kwargs) if self.store.claim_never_waits else None
        if result is None:
            result = await self._db(self.store.claim, *args, **kwargs)
        for dup in result.duplicates:
            self.stats.duplicates += 1
            events.emit(log, logging.INFO, "ack", **_identity(dup), duplicate=True)
            self.hooks.call("runner_job_acked", job=self._job(dup), duration_s=0.0, duplicate=True)
        ready = []
        claimed_hook = self.hooks.wanted("runner_job_claimed")
        debug = log.isEnabledFor(logging.DEBUG)
        for c in result.jobs:
            job = self._job(c)
            spec = self.job_specs.get(c.type)
            if claimed_hook:
                self.hooks.call("runner_job_claimed", job=job)
            if debug:
                events.emit(log, logging.DEBUG, "claim", **_identity(c))
            if spec is None:
                ready.append(Ready(c, job, None, 0.0))
            else:
                ready.append(Ready(c, job, spec.handler, spec.timeout_s, spec.policy.non_retryable))
        lane.observe_payloads(sum(len(c.payload_json) for c in result.jobs), len(result.jobs))
        lane.add(ready)
        self._start_on_loop(lane)
        return len(result.jobs) + len(result.duplicates)

    def _claim_here(self, args: tuple[str], kwargs: dict[str, Any]) -> base.ClaimResult | None:
        """An idle worker claims on the loop itself (PostgreSQL): the hand-off to a thread
        and back cost ~0.3 ms of the time from enqueue to handler start. Only when nothing
        is in flight, so nothing else on the loop is waiting (no lease to renew, no ack to
        flush), and only where a claim never waits for a lock; a stalled connection is
        bounded by its TCP timeout. A failure falls back to the retrying thread path."""
        if self._busy():
            return None
        try:
            return self.store.claim(*args, **kwargs)
        except base.StoreUnavailable:
            return None

    # -- running -----------------------------------------------------------------------

    def _start_on_loop(self, lane: Lane) -> None:
        """Start coroutine jobs (and jobs of unknown types) while the lane has free slots."""
        while (ready := lane.take_on_loop()) is not None:
            task = asyncio.create_task(self._run_on_loop(lane, ready))
            self._on_loop[ready.claimed.id] = task

    async def _run_on_loop(self, lane: Lane, ready: Ready) -> None:
        c = ready.claimed
        try:
            if ready.handler is None:
                outcome = execute.Outcome(False, 0.0)
            else:
                outcome = await execute.run(
                    ready.handler,
                    ready.job,
                    timeout_s=ready.timeout_s,
                    non_retryable=ready.non_retryable,
                )
        except asyncio.CancelledError:
            lane.done_on_loop(ready, execute.Outcome(False, 0.0))
            return
        finally:
            self._on_loop.pop(c.id, None)
        lane.done_on_loop(ready, outcome)
        self._start_on_loop(lane)
        self._wake.set()
        self._finish(lane, ready, outcome)

    def _collector(self, lane: Lane) -> Callable[[], None]:
        """What a lane's first finished job calls on the loop: collect the batch a flush
        interval later, so a busy lane wakes the loop once per interval, not once per job
        (threads keep taking jobs meanwhile; only the ack waits, as it would anyway)."""
        loop = asyncio.get_running_loop()

        def collect() -> None:
            """On the loop: a batch of jobs finished on the lane's threads."""
            for finished in lane.take_finished():
                self._finish(lane, finished.ready, finished.outcome)
            self._start_on_loop(lane)  # a thread freed a slot a coroutine job may take
            self._wake.set()

        def soon() -> None:
            loop.call_later(self.options.ack_flush_s, collect)

        return soon

    def _finish(self, lane: Lane, ready: Ready, outcome: execute.Outcome) -> None:
        """Record a finished job: acks are batched, failures are decided one by one."""
        self._recording += 1
        if outcome.ok:
            self._acks.append((ready, outcome.duration_s))
            self._ack_ready.set()
            return
        task = asyncio.create_task(self._fail(lane, ready, outcome))
        self._failing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._failing.discard)

    async def _fail(self, lane: Lane, ready: Ready, outcome: execute.Outcome) -> None:
        c, job = ready.claimed, ready.job
        try:
            spec = self.job_specs.get(c.type)
            if spec is None or spec.handler is None:
                error = jobs.ErrorInfo(
                    "UnknownJobType", f"no handler for job type {c.type!r} in this pipeline"
                )
                await self._dead_letter(lane.spec, ready, error)
                return
            error = outcome.error or jobs.ErrorInfo("Error", "unknown failure")
            self.stats.failed += 1
            decision = retry.decide(error, outcome.permanent, spec.policy, c.attempt)
            if decision.action is not jobs.Action.RETRY:
                await self._dead_letter(lane.spec, ready, error, decision.reason)
            elif await self._db(self.store.retry, c.id, c.lease_token, error, decision.delay_s):
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
        except Exception:
            log.exception("action=worker_error job_id=%s", c.id)
        finally:
            self._recording -= 1
            self._wake.set()

    async def _dead_letter(
        self, queue: QueueSpec, ready: Ready, error: jobs.ErrorInfo, reason: str = ""
    ) -> None:
        c = ready.claimed
        if await self._db(self.store.dead_letter, c.id, c.lease_token, error, queue.owner):
            self.stats.dead_lettered += 1
            events.emit(
                log,
                logging.WARNING,
                "dead_letter",
                **_identity(c),
                error=error.type,
                reason=reason,
                owner=queue.owner,
            )
            self.hooks.call(
                "runner_job_dead_lettered",
                job=ready.job,
                error=error,
                owner=queue.owner,
                alert=queue.alert,
            )
        else:
            self._stale("dead_letter", c)

    async def _ack_flusher(self) -> None:
        """Commit finished jobs' acks together, every ``ack_flush_s`` at most.

        An ack not yet committed when the process dies means a redelivery, never a lost
        job; the handler's slot is free already, so the next job never waits for a flush.
        """
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            if self.options.ack_flush_s:
                await asyncio.sleep(self.options.ack_flush_s)
            batch, self._acks = self._acks, []
            if not batch:
                continue
            items = [
                (r.claimed.id, r.claimed.lease_token, r.claimed.idempotency_key) for r, _ in batch
            ]
            try:
                acked = await self._db(self.store.ack_many, items)
            except asyncio.CancelledError:
                raise
            except Exception:  # not committed: the leases expire and the jobs run again
                log.exception("action=ack_failed jobs=%d", len(batch))
                acked = set()
            acked_hook = self.hooks.wanted("runner_job_acked")
            info = log.isEnabledFor(logging.INFO)
            for ready, duration_s in batch:
                c = ready.claimed
                if c.id not in acked:
                    self._stale("ack", c)
                    continue
                self.stats.processed += 1
                if info:
                    events.emit(log, logging.INFO, "ack", **_identity(c), duration_s=duration_s)
                if acked_hook:
                    self.hooks.call(
                        "runner_job_acked", job=ready.job, duration_s=duration_s, duplicate=False
                    )
            self._recording -= len(batch)
            self._wake.set()

    async def _watchdog(self) -> None:
        """Fail jobs whose plain handler ran past its timeout. Their threads run on and
        keep their slots until the handlers return (``Lane.expire``): say so, since a
        queue whose handlers hang runs fewer jobs at once, down to none."""
        while True:
            await asyncio.sleep(WATCHDOG_S)
            now = time.monotonic()
            for lane in self._lanes.values():
                for ready in lane.expire(now):
                    events.emit(
                        log,
                        logging.WARNING,
                        "handler_overran",
                        job_id=ready.claimed.id,
                        type=ready.claimed.type,
                        queue=lane.spec.name,
                        timeout_s=ready.timeout_s,
                        stuck_threads=lane.abandoned,
                    )
                    outcome = execute.timed_out(ready.timeout_s, ready.timeout_s)
                    self._finish(lane, ready, outcome)
                    self._wake.set()

    # -- slots ------------------------------------------------------------------------

    async def _renew_slots(self) -> bool:
        """Take, keep or give back this worker's slots of each queue. True when it should
        ask again soon (below its fair share, or still recording more than it holds)."""
        soon = False
        for lane in self._lanes.values():
            draining = self._stopping.is_set()
            asked_at = time.monotonic()
            # Shielded: a renewal cancelled at shutdown still finishes, and run() waits
            # for it before giving the slots back (else its commit could land after the
            # release and leave a row that blocks the next worker until it expires).
            self._renewing = asyncio.ensure_future(
                self._db(
                    self.store.acquire_slots,
                    lane.spec.name,
                    self.options.worker_id,
                    wanted=lane.executing if draining else lane.spec.concurrency,
                    executing=lane.reported(),
                    concurrency=lane.spec.concurrency,
                    ttl_s=lane.ttl_s,
                )
            )
            slots = await asyncio.shield(self._renewing)
            lane.set_slots(slots.held, asked_at + lane.ttl_s * 0.8)
            self._start_on_loop(lane)
            self._wake.set()
            soon = soon or (not draining and slots.held < slots.share) or lane.executing > lane.held
        return soon

    async def _slots_loop(self) -> None:
        # Often enough that a worker holding more than its fair share hears of a newcomer
        # within a quarter second (the renewal is one short transaction per queue).
        renew_s = min([SLOT_RENEW_S, *(lane.ttl_s / 5 for lane in self._lanes.values())])
        while True:
            try:
                soon = await self._renew_slots()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("action=slots_failed")
                soon = False
            await asyncio.sleep(SATURATED_RETRY_S if soon else renew_s)

    # -- one job -------------------------------------------------------------------------

    def _job(self, c: base.Claimed) -> jobs.Job:
        return jobs.Job._from_store(
            id=c.id,
            type=c.type,
            queue=c.queue,
            attempt=c.attempt,
            payload=_payload(c.payload_json),
            max_attempts=c.max_attempts,
            idempotency_key=c.idempotency_key,
            schema_version=c.schema_version,
            enqueued_at=c.enqueued_at,
            claimed_at=c.claimed_at,
            lease_token=c.lease_token,
        )

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
        """Renew leases of jobs claimed ahead and of heartbeat job types always, and of
        every running job while draining."""
        interval = max(0.05, min((q.lease_s for q in self.queues), default=30.0) / 3)
        while True:
            await asyncio.sleep(interval)
            draining = self._stopping.is_set()
            for lane in list(self._lanes.values()):
                leases = lane.leases(
                    lambda r: draining or self._heartbeat_type(r.claimed.type)  # noqa: B023
                )
                if not leases:
                    continue
                try:
                    lost = await self._db(self.store.extend_leases, leases, lane.spec.lease_s)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("action=extend_leases_failed queue=%s", lane.spec.name)
                    continue
                for job_id in lost:
                    events.emit(
                        log, logging.WARNING, "lease_lost", verb="extend_leases", job_id=job_id
                    )
                if lost:  # never start a job whose lease is gone
                    lane.drop(lost)

    def _heartbeat_type(self, job_type: str) -> bool:
        spec = self.job_specs.get(job_type)
        return bool(spec and spec.heartbeat)

    # -- shutdown -------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Give back jobs claimed ahead at once; let running jobs finish within the grace
        period, then release the rest at once."""
        for lane in self._lanes.values():
            left = lane.stop()
            if not left:
                continue
            leases = [(r.claimed.id, r.claimed.lease_token) for r in left]
            try:
                released = await asyncio.to_thread(self.store.release_many, leases)
            except Exception as exc:
                events.emit(log, logging.WARNING, "release_failed", reason=str(exc))
                continue
            self.stats.released += len(released)
            events.emit(
                log,
                logging.INFO,
                "release",
                queue=lane.spec.name,
                jobs=len(released),
                reason="claimed ahead, not started before stop",
            )
        deadline = time.monotonic() + self.options.shutdown_grace_s
        while self._busy() and not self._force and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        leftover = [run.ready for lane in self._lanes.values() for run in lane.running_jobs()]
        for task in list(self._on_loop.values()):
            task.cancel()
        if leftover:
            leases = [(r.claimed.id, r.claimed.lease_token) for r in leftover]
            try:
                released = await asyncio.to_thread(self.store.release_many, leases)
            except Exception as exc:
                events.emit(
                    log, logging.WARNING, "release_failed", jobs=len(leases), reason=str(exc)
                )
                released = set()
            for ready in leftover:
                c = ready.claimed
                if c.id in released:
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

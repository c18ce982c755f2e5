"""One queue inside a worker: its slots, the jobs claimed ahead, and the threads that run
its plain (synchronous) handlers.

A handler thread takes the next job itself as soon as one of the lane's slots is free, so a
busy worker runs job after job without a round trip through the event loop; finished jobs
are handed to the loop in batches (one wake-up for many). Coroutine handlers run on the
loop; both kinds share the lane's slots. Every field below is guarded by ``cond``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from runner import jobs
from runner.engine import base
from runner.worker import execute

PREFETCH_BUDGET_S = 0.25
"""Claim ahead at most this much expected handler time per slot (capped by claim_batch)."""
PREFETCH_BYTES = 2 * 1024 * 1024
"""And at most about this much payload JSON per queue (measured per claim): 2,000 jobs of
64 KiB payloads held ahead took a worker to 490 MB; this holds 32 of them (115 MB)."""
SLOT_TTL_BOUNDS_S = (2.0, 10.0)
"""A worker's slots expire this long (the visibility timeout, within bounds) after its
last renewal; it renews five times per period and stops starting jobs before expiry."""


@dataclass(frozen=True)
class QueueSpec:
    name: str
    concurrency: int
    lease_s: float
    paused: bool
    owner: str
    alert: str | None = None


@dataclass(slots=True)
class Ready:
    """A job claimed ahead, with what running it needs."""

    claimed: base.Claimed
    job: jobs.Job
    handler: Callable[[jobs.Job], Any] | None
    timeout_s: float
    non_retryable: Collection[str] = ()


@dataclass(slots=True)
class Running:
    ready: Ready
    deadline: float  # monotonic
    thread: threading.Thread | None = None  # None: a coroutine on the loop


@dataclass(slots=True)
class Finished:
    ready: Ready
    outcome: execute.Outcome


@dataclass
class Lane:
    spec: QueueSpec
    loop: asyncio.AbstractEventLoop
    on_finished: Callable[[], None]
    """Called on the loop (at most once per batch) when ``finished`` got jobs."""
    cond: threading.Condition = field(default_factory=threading.Condition)
    held: int = 0
    valid_until: float = 0.0  # monotonic; nothing starts after it until a renewal
    executing: int = 0
    stopping: bool = False
    threaded: deque[Ready] = field(default_factory=deque)  # claimed ahead, plain handlers
    on_loop: deque[Ready] = field(default_factory=deque)  # claimed ahead, coroutine handlers
    running: dict[int, Running] = field(default_factory=dict)
    finished: list[Finished] = field(default_factory=list)
    avg_s: float | None = None  # moving average of handler time
    avg_bytes: float | None = None  # moving average of a claimed payload's JSON length
    quiet_until: float = 0.0  # the last claim came back short: wait for a wake or a poll
    threads: int = 0
    abandoned: int = 0  # threads still in a handler past its timeout (each holds a slot)

    # -- sizing (read on the loop) ---------------------------------------------------

    @property
    def ttl_s(self) -> float:
        low, high = SLOT_TTL_BOUNDS_S
        return min(high, max(low, self.spec.lease_s))

    @property
    def ahead(self) -> int:
        return len(self.threaded) + len(self.on_loop)

    def target(self, batch: int) -> int:
        """Jobs to hold leased (running and claimed ahead): the slots, plus what they can
        start within the prefetch budget, so slow jobs are never hoarded, and no more
        payload bytes than PREFETCH_BYTES, so large payloads do not fill the memory."""
        if self.avg_s is None:
            return self.held
        budget = min(PREFETCH_BUDGET_S, self.spec.lease_s / 10)
        extra = int(self.held * budget / max(self.avg_s, 1e-5))
        if self.avg_bytes:
            batch = min(batch, int(PREFETCH_BYTES / self.avg_bytes))
        return max(self.held, min(batch, self.held + extra))

    def observe_payloads(self, total_bytes: int, count: int) -> None:
        """Claimed payload sizes (on the loop): they bound how far ahead to claim."""
        if count:
            mean = total_bytes / count
            self.avg_bytes = mean if self.avg_bytes is None else 0.8 * self.avg_bytes + 0.2 * mean

    def need(self, batch: int) -> int:
        """How many to claim now: none while enough are waiting, else up to the target."""
        target = self.target(batch)
        with self.cond:
            ahead, executing = self.ahead, self.executing
        need = target - executing - ahead
        if need <= 0 or (ahead and ahead > (target - self.held) // 2):
            return 0
        return need

    # -- changes made on the loop ----------------------------------------------------

    def add(self, ready: list[Ready]) -> None:
        with self.cond:
            for r in ready:
                if r.handler is not None and not inspect.iscoroutinefunction(r.handler):
                    self.threaded.append(r)
                else:
                    self.on_loop.append(r)
            self._grow()
            self.cond.notify_all()

    def set_slots(self, held: int, valid_until: float) -> None:
        with self.cond:
            self.held = held
            self.valid_until = valid_until
            self._grow()
            self.cond.notify_all()

    def reported(self) -> int:
        """What to record as held while a renewal is in flight: starts stay within the
        current slots until its answer arrives, and running handlers only finish."""
        with self.cond:
            return max(self.executing, self.held)

    def take_on_loop(self) -> Ready | None:
        """The next coroutine job, when a slot is free."""
        with self.cond:
            if not self.on_loop or not self._free():
                return None
            ready = self.on_loop.popleft()
            self.executing += 1
            self.running[ready.claimed.id] = Running(ready, time.monotonic() + ready.timeout_s)
            return ready

    def done_on_loop(self, ready: Ready, outcome: execute.Outcome) -> None:
        with self.cond:
            if self.running.pop(ready.claimed.id, None) is not None:
                self.executing -= 1
                self._observe(outcome.duration_s)
            self.cond.notify()

    def stop(self) -> list[Ready]:
        """Start nothing more; return the jobs claimed ahead (to give back)."""
        with self.cond:
            self.stopping = True
            left = [*self.threaded, *self.on_loop]
            self.threaded.clear()
            self.on_loop.clear()
            self.cond.notify_all()
            return left

    def drop(self, job_ids: set[int]) -> None:
        """Forget jobs claimed ahead whose lease was lost: they must not start."""
        with self.cond:
            self.threaded = deque(r for r in self.threaded if r.claimed.id not in job_ids)
            self.on_loop = deque(r for r in self.on_loop if r.claimed.id not in job_ids)

    def take_finished(self) -> list[Finished]:
        with self.cond:
            done, self.finished = self.finished, []
            return done

    def expire(self, now: float) -> list[Ready]:
        """Jobs past their timeout: their attempt fails now (the caller records it), and
        the thread's late result is dropped. A thread cannot be stopped, so its slot stays
        taken until the handler really returns: the queue's concurrency limit holds even
        while handlers hang (a provider that stalls gets no more calls than the limit)."""
        late: list[Ready] = []
        with self.cond:
            for job_id, run in list(self.running.items()):
                if run.deadline > now or run.thread is None:
                    continue  # coroutines time out on their own (wait_for)
                del self.running[job_id]
                self.abandoned += 1
                late.append(run.ready)
            if late:
                self._grow()  # a thread for each stuck one, to take the slot once it is free
        return late

    def leases(self, include_running: Callable[[Ready], bool]) -> list[tuple[int, str]]:
        with self.cond:
            ahead = [(r.claimed.id, r.claimed.lease_token) for r in (*self.threaded, *self.on_loop)]
            running = [
                (run.ready.claimed.id, run.ready.claimed.lease_token)
                for run in self.running.values()
                if include_running(run.ready)
            ]
        return ahead + running

    def running_jobs(self) -> list[Running]:
        with self.cond:
            return list(self.running.values())

    def busy(self) -> bool:
        with self.cond:
            return bool(self.running or self.finished or self.threaded or self.on_loop)

    # -- handler threads -------------------------------------------------------------

    def _free(self) -> bool:
        return (
            not self.stopping and self.executing < self.held and time.monotonic() < self.valid_until
        )

    def _grow(self) -> None:
        """Enough live threads for every slot that may run a plain handler (lock held)."""
        wanted = min(self.held, self.spec.concurrency) if self.threaded else 0
        while self.threads - self.abandoned < wanted:
            self.threads += 1
            threading.Thread(
                target=self._serve, name=f"runner-{self.spec.name}-{self.threads}", daemon=True
            ).start()

    def _observe(self, seconds: float) -> None:
        self.avg_s = seconds if self.avg_s is None else 0.8 * self.avg_s + 0.2 * seconds

    def _serve(self) -> None:
        while True:
            with self.cond:
                while not (self.threaded and self._free()):
                    if self.stopping and not self.threaded:
                        return
                    # valid_until may pass while waiting: wake up to look again
                    self.cond.wait(0.5)
                ready = self.threaded.popleft()
                self.executing += 1
                me = threading.current_thread()
                self.running[ready.claimed.id] = Running(
                    ready, time.monotonic() + ready.timeout_s, me
                )
            assert ready.handler is not None  # only plain handlers are threaded
            outcome = execute.call(
                ready.handler, ready.job, self.loop, ready.non_retryable, ready.timeout_s
            )
            with self.cond:
                run = self.running.get(ready.claimed.id)
                if run is None or run.thread is not me:  # timed out: recorded already
                    self.abandoned -= 1
                    self.threads -= 1  # its replacement took over (``expire``)
                    self.executing -= 1  # and its slot is free only now
                    self.cond.notify()
                    return
                del self.running[ready.claimed.id]
                self.executing -= 1
                self._observe(outcome.duration_s)
                self.finished.append(Finished(ready, outcome))
                first = len(self.finished) == 1
            if first:
                try:
                    self.loop.call_soon_threadsafe(self.on_finished)
                except RuntimeError:  # the loop is gone: nobody waits for the result
                    return

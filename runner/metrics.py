"""Prometheus metrics: worker counters and histograms (multi-process safe) and queue gauges
read from the database at scrape time.

``runner up --metrics-port`` points prometheus-client's multi-process mode at a fresh
directory before any worker starts; every worker process records into it and the
supervisor serves the sum, so the numbers are right with ``--processes N``.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from runner import jobs
from runner.engine import base
from runner.plugins.hookspecs import hookimpl

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client at import
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


def prepare_multiprocess_dir() -> str:
    """A fresh directory for this run's metric files; must precede importing the client."""
    path = tempfile.mkdtemp(prefix="runner-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class JobMetrics:
    """A plugin: counts lifecycle transitions per queue and job type."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ["queue", "type"]
        self.processed = Counter(
            "runner_jobs_processed", "Jobs acked after their handler succeeded", labels
        )
        self.failed = Counter("runner_jobs_failed", "Failed attempts", labels)
        self.retried = Counter("runner_jobs_retried", "Failed attempts scheduled again", labels)
        self.dead_lettered = Counter(
            "runner_jobs_dead_lettered", "Jobs moved to the dead-letter queue", labels
        )
        self.duplicates = Counter(
            "runner_jobs_duplicate_skipped",
            "Jobs acked without running: their idempotency key was done",
            labels,
        )
        self.processing = Histogram(
            "runner_job_processing_seconds", "Handler run time", labels, buckets=BUCKETS
        )
        self.wait = Histogram(
            "runner_job_queue_wait_seconds",
            "From enqueue to the start of the attempt",
            labels,
            buckets=BUCKETS,
        )

    @hookimpl
    def runner_job_claimed(self, job: jobs.Job) -> None:
        if job.claimed_at and job.enqueued_at:
            wait = max(0.0, job.claimed_at - job.enqueued_at)
            self.wait.labels(job.queue, job.type).observe(wait)

    @hookimpl
    def runner_job_acked(self, job: jobs.Job, duration_s: float, duplicate: bool) -> None:
        if duplicate:
            self.duplicates.labels(job.queue, job.type).inc()
            return
        self.processed.labels(job.queue, job.type).inc()
        self.processing.labels(job.queue, job.type).observe(duration_s)

    @hookimpl
    def runner_job_retried(self, job: jobs.Job) -> None:
        self.failed.labels(job.queue, job.type).inc()
        self.retried.labels(job.queue, job.type).inc()

    @hookimpl
    def runner_job_dead_lettered(self, job: jobs.Job, error: jobs.ErrorInfo) -> None:
        if error.type != "LeaseExpired":
            self.failed.labels(job.queue, job.type).inc()
        self.dead_lettered.labels(job.queue, job.type).inc()


class QueueCollector:
    """Queue gauges computed from the database at each scrape (any process, any host)."""

    def __init__(self, store: base.Store, queues: dict[str, bool], window_s: float) -> None:
        self.store = store
        self.queues = queues  # name -> paused
        self.window_s = window_s

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families = {
            "ready": GaugeMetricFamily(
                "runner_queue_ready_jobs", "Jobs ready to run", labels=["queue"]
            ),
            "scheduled": GaugeMetricFamily(
                "runner_queue_scheduled_jobs", "Jobs waiting for a retry time", labels=["queue"]
            ),
            "in_flight": GaugeMetricFamily(
                "runner_queue_in_flight_jobs", "Jobs leased by a worker", labels=["queue"]
            ),
            "dead": GaugeMetricFamily(
                "runner_queue_dead_jobs", "Jobs in the dead-letter queue", labels=["queue"]
            ),
            "oldest": GaugeMetricFamily(
                "runner_queue_oldest_ready_age_seconds",
                "How long the oldest ready job has waited",
                labels=["queue"],
            ),
            "paused": GaugeMetricFamily(
                "runner_queue_paused", "1 when the queue is paused", labels=["queue"]
            ),
        }
        refused = CounterMetricFamily(
            "runner_jobs_backpressure_refused",
            "Jobs refused at enqueue because the queue was at max_depth",
            labels=["queue", "type"],
        )
        try:
            stats = self.store.stats(list(self.queues), self.window_s)
            counted = self.store.counters(list(self.queues))
        except base.StoreUnavailable:
            return
        for queue, job_type, name, value in counted:
            if name == "backpressure_refused":
                refused.add_metric([queue, job_type], value)
        for name, s in stats.items():
            families["ready"].add_metric([name], s.ready)
            families["scheduled"].add_metric([name], s.scheduled)
            families["in_flight"].add_metric([name], s.in_flight)
            families["dead"].add_metric([name], s.dead)
            families["oldest"].add_metric([name], s.oldest_ready_age_s or 0.0)
            families["paused"].add_metric([name], 1.0 if self.queues[name] else 0.0)
        yield from families.values()
        yield refused


def settled_files(path: str) -> list[str]:
    """The metric files of ``path`` that a reader may open.

    A worker creates a file the first time it counts a new (queue, type): empty at first,
    then grown to its initial size. prometheus-client's reader fails on an empty file
    (``struct.error``), so a scrape that met one answered 500. A file without its 8-byte
    header holds no value yet; it is left out of this scrape and counted in the next.
    """
    files = []
    for name in glob.glob(os.path.join(path, "*.db")):
        try:
            if os.stat(name).st_size >= 8:
                files.append(name)
        except FileNotFoundError:
            continue
    return files


def multiprocess_collector(registry: Any, path: str | None = None) -> Any:
    """prometheus-client's multi-process collector, reading only settled files."""
    from prometheus_client.multiprocess import MultiProcessCollector

    class SettledCollector(MultiProcessCollector):
        def collect(self) -> Any:
            return self.merge(settled_files(self._path), accumulate=True)  # type: ignore[no-untyped-call]

    return SettledCollector(registry, path)  # type: ignore[no-untyped-call]


def serve(host: str, port: int, collector: QueueCollector) -> Any:
    """Serve the sum of every worker process's metrics plus the queue gauges."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    multiprocess_collector(registry)
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)

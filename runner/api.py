"""The composition root: load a pipeline, open its store, enqueue, inspect, run workers.

``runner.load(path)`` is the public producer API; the CLI is built on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import sqlalchemy as sa

from runner import errors, events, retry
from runner.config import loader, models, payloads
from runner.config.settings import Settings
from runner.engine import base
from runner.engine.store import SchemaTooNew, SqlStore
from runner.plugins import hookspecs, manager
from runner.worker import loop

DEFAULT_SQLITE_FILE = "runner.db"

log = logging.getLogger("runner.api")


def resolve_database_url(loaded: loader.LoadedPipeline, settings: Settings) -> str:
    """``RUNNER_DATABASE_URL`` > the file's ``database`` > ``sqlite:///<root>/runner.db``.

    A relative SQLite path resolves against the project root, not the current directory.
    """
    raw = settings.database_url or loaded.model.database
    if not raw:
        return f"sqlite:///{loaded.root / DEFAULT_SQLITE_FILE}"
    url = sa.make_url(raw)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute():
            url = url.set(database=str(loaded.root / path))
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class JobTypeRuntime:
    name: str
    config: models.JobType
    rules: payloads.PayloadRules


class Pipeline:
    """A loaded, validated pipeline. Enqueue with it; the worker and CLI use it too."""

    def __init__(
        self,
        loaded: loader.LoadedPipeline,
        settings: Settings,
        plugin_manager: pluggy.PluginManager,
        handlers: dict[str, hookspecs.Handler],
    ) -> None:
        self.loaded = loaded
        self.settings = settings
        self.plugin_manager = plugin_manager
        self.hook = plugin_manager.hook
        self.handlers = handlers
        self.model = loaded.model
        self.database_url = resolve_database_url(loaded, settings)
        self.types = {
            name: JobTypeRuntime(
                name,
                jt,
                payloads.PayloadRules(
                    name,
                    loaded.schemas[name],
                    max_bytes=settings.max_payload_bytes,
                    idempotency_key=jt.idempotency_key,
                ),
            )
            for name, jt in self.model.jobs.items()
        }
        self._store: SqlStore | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def queue_names(self) -> list[str]:
        return list(self.model.queues)

    @property
    def store(self) -> SqlStore:
        """The store, opened and migrated on first use."""
        if self._store is None:
            if self.database_url.startswith("sqlite:///"):
                db_file = sa.make_url(self.database_url).database
                if db_file and db_file != ":memory:":
                    Path(db_file).parent.mkdir(parents=True, exist_ok=True)
            store = SqlStore(
                self.database_url,
                base.EngineOptions(
                    pool_size=self.settings.pool_size,
                    sqlite_synchronous=self.settings.sqlite_synchronous,
                    sqlite_worker_synchronous=self.settings.sqlite_worker_synchronous,
                    pg_worker_synchronous_commit=self.settings.pg_worker_synchronous_commit,
                ),
            )
            try:
                self._open(store)
            except base.StoreUnavailable as exc:
                store.dispose()
                raise errors.DatabaseUnavailable(
                    f"cannot open database {sa.make_url(self.database_url)!r}: {exc}"
                ) from exc
            except SchemaTooNew as exc:
                store.dispose()
                raise errors.DatabaseUnavailable(str(exc)) from exc
            self._store = store
        return self._store

    def _open(self, store: SqlStore) -> None:
        """Migrate and register the queues; a connection lost on the way (a restarting
        server, a killed backend) is retried twice before the database counts as down."""
        for delay in (0.2, 0.5, None):
            try:
                store.migrate()
                store.ensure_queues(self.queue_names)
                return
            except base.StoreUnavailable:
                if delay is None:
                    raise
                time.sleep(delay)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- producers ------------------------------------------------------------------------

    def _type(self, job_type: str) -> JobTypeRuntime:
        try:
            return self.types[job_type]
        except KeyError:
            known = ", ".join(sorted(self.types))
            raise errors.NotFound(
                f"unknown job type {job_type!r} in {self.loaded.display} (known: {known})"
            ) from None

    def prepare(self, job_type: str, payload: object, *, line: int | None = None) -> base.NewJob:
        """Validate one payload (schema, secrets, size) into a row; raises InvalidPayload."""
        return self.preparer(job_type)(payload, line)

    def preparer(self, job_type: str) -> Callable[[object, int | None], base.NewJob]:
        """``prepare`` for many payloads of one type: the type is looked up once."""
        runtime = self._type(job_type)
        check = runtime.rules.prepare
        jt = runtime.config
        queue, priority, schema_version = jt.queue, jt.priority, jt.schema_version
        max_attempts = jt.retry.max_attempts

        def prepare(payload: object, line: int | None = None) -> base.NewJob:
            text, key = check(payload, line=line)
            return base.NewJob(queue, job_type, text, priority, max_attempts, schema_version, key)

        return prepare

    def enqueue(self, job_type: str, payload: object) -> int:
        """Validate and enqueue one job; durable when this returns. Returns the job id."""
        return self.enqueue_prepared(job_type, [self.prepare(job_type, payload)])[0]

    def enqueue_many(self, job_type: str, payloads: Iterable[object]) -> list[int]:
        """Validate every payload first (none is enqueued if one is invalid), then enqueue
        them all in one transaction. Returns ids in input order."""
        runtime = self._type(job_type)
        batch = payloads if isinstance(payloads, list) else list(payloads)
        accepted = runtime.rules.prepare_many(batch)
        if accepted is not None:  # all pass: the batch goes in as texts, without a row each
            jt = runtime.config
            texts, keys = accepted
            return self.enqueue_prepared(
                job_type,
                base.NewBatch(
                    jt.queue,
                    job_type,
                    jt.priority,
                    jt.schema_version,
                    jt.retry.max_attempts,
                    texts,
                    keys,
                ),
            )
        # One at least to refuse (or to look at closer): each is prepared on its own, and
        # every problem of every payload is reported with its index.
        prepare = self.preparer(job_type)
        rows: list[base.NewJob] = []
        problems: list[tuple[str, str]] = []
        for index, payload in enumerate(batch):
            try:
                rows.append(prepare(payload, None))
            except errors.InvalidPayload as exc:
                problems.extend((f"$[{index}]{path[1:]}", msg) for path, msg in exc.problems)
        if problems:
            raise errors.InvalidPayload(job_type, problems)
        return self.enqueue_prepared(job_type, rows)

    def enqueue_prepared(
        self, job_type: str, rows: Sequence[base.NewJob] | base.NewBatch
    ) -> list[int]:
        runtime = self._type(job_type)
        count = len(rows.payloads) if isinstance(rows, base.NewBatch) else len(rows)
        queue = self.model.queues[runtime.config.queue]
        try:
            ids = self.store.enqueue(rows, max_depth=queue.max_depth, dedupe=runtime.config.dedupe)
        except base.QueueFullError as exc:
            with contextlib.suppress(base.StoreUnavailable):
                self.store.count(exc.queue, job_type, "backpressure_refused", count)
            events.emit(
                log,
                logging.WARNING,
                "backpressure_refused",
                type=job_type,
                queue=exc.queue,
                depth=exc.depth,
                max_depth=exc.max_depth,
                requested=exc.requested,
            )
            raise errors.QueueFull(exc.queue, exc.depth, exc.max_depth, exc.requested) from None
        except base.StoreUnavailable as exc:
            raise errors.DatabaseUnavailable(
                f"enqueue failed, nothing was enqueued: {exc}"
            ) from exc
        if ids:
            queue_name = runtime.config.queue
            if len(ids) == 1:
                events.emit(
                    log, logging.INFO, "enqueue", job_id=ids[0], type=job_type, queue=queue_name
                )
            else:
                events.emit(
                    log,
                    logging.INFO,
                    "enqueue",
                    jobs=len(ids),
                    first_id=min(ids),
                    last_id=max(ids),
                    type=job_type,
                    queue=queue_name,
                )
                if log.isEnabledFor(logging.DEBUG):
                    for job_id in ids:
                        events.emit(
                            log,
                            logging.DEBUG,
                            "enqueue",
                            job_id=job_id,
                            type=job_type,
                            queue=queue_name,
                        )
            if self.hook.runner_job_enqueued.get_hookimpls():  # a call costs ~1 µs; skip it
                loop.Hooks(self.hook).call(
                    "runner_job_enqueued",
                    job_ids=ids,
                    job_type=job_type,
                    queue=runtime.config.queue,
                )
        return ids

    # -- operators ------------------------------------------------------------------------

    def status(self) -> dict[str, base.QueueStats]:
        return self.store.stats(self.queue_names, self.settings.status_window_s)

    def dlq_filter(
        self,
        *,
        queues: Sequence[str] = (),
        types: Sequence[str] = (),
        ids: Sequence[int] = (),
        error_type: str | None = None,
        older_than_s: float | None = None,
        limit: int | None = None,
    ) -> base.DlqFilter:
        for q in queues:
            if q not in self.model.queues:
                raise errors.NotFound(f"unknown queue {q!r} in {self.loaded.display}")
        for t in types:
            self._type(t)
        return base.DlqFilter(
            queues=list(queues) or self.queue_names,
            types=list(types),
            ids=list(ids),
            error_type=error_type,
            older_than_s=older_than_s,
            limit=limit,
        )

    def record_metrics(self) -> None:
        """Count this process's lifecycle transitions for Prometheus (multi-process mode)."""
        from runner import metrics

        if self.plugin_manager.get_plugin("runner.metrics") is None:
            self.plugin_manager.register(metrics.JobMetrics(), name="runner.metrics")

    def operator(self) -> str:
        """``RUNNER_OPERATOR``, or the OS user: recorded with every replay and purge."""
        if self.settings.operator:
            return self.settings.operator
        try:
            return getpass.getuser()
        except Exception:
            return "unknown"

    def replayable(self, flt: base.DlqFilter) -> tuple[base.DlqFilter | None, list[str]]:
        """Apply each job type's ``replay`` rule to a DLQ selection.

        Explicit job ids may replay ``allowed`` and ``manual`` types; a bulk selection
        (a filter or --all) only ``allowed`` ones. Returns the narrowed filter (None when
        nothing may be replayed) and the types held back.
        """
        explicit = bool(flt.ids)
        rules = {name: jt.replay for name, jt in self.model.jobs.items()}
        wanted = list(flt.types) or list(rules)
        allowed = [
            t for t in wanted if rules[t] == "allowed" or (explicit and rules[t] == "manual")
        ]
        held = [t for t in wanted if t not in allowed]
        if explicit and held:
            blocked = self.store.dlq_list(dataclasses.replace(flt, types=held))
            if blocked:
                listing = ", ".join(f"{j.id} ({j.type}: replay {rules[j.type]})" for j in blocked)
                raise errors.ReplayRefused(f"replay refused by the job type's rule: {listing}")
        if not allowed:
            return None, held
        return dataclasses.replace(flt, types=allowed), held

    # -- workers ---------------------------------------------------------------------------

    def worker(self, options: loop.WorkerOptions) -> loop.Worker:
        queues = [
            loop.QueueSpec(
                name=name,
                concurrency=q.concurrency,
                lease_s=q.visibility_timeout,
                paused=q.paused,
                owner=q.dlq.owner,
                alert=q.dlq.alert,
            )
            for name, q in self.model.queues.items()
        ]
        specs = {
            name: loop.JobSpec(
                type=name,
                handler=self.handlers.get(jt.handler),
                timeout_s=jt.timeout,
                policy=retry.Policy(
                    max_attempts=jt.retry.max_attempts,
                    backoff=jt.retry.backoff,
                    base_s=jt.retry.base,
                    max_s=jt.retry.max,
                    jitter=jt.retry.jitter,
                    non_retryable=frozenset(jt.retry.non_retryable),
                ),
                heartbeat=jt.heartbeat,
            )
            for name, jt in self.model.jobs.items()
        }
        alerts = [
            loop.AlertSpec(name, rule, float(threshold), q.dlq.owner, q.dlq.alert)
            for name, q in self.model.queues.items()
            if q.alerts is not None
            for rule, threshold in q.alerts.model_dump().items()
            if threshold is not None
        ]
        return loop.Worker(self.store, queues, specs, loop.Hooks(self.hook), options, alerts)

    def worker_options(self, *, until_idle: bool = False, **overrides: Any) -> loop.WorkerOptions:
        s = self.settings
        values: dict[str, Any] = {
            "until_idle": until_idle,
            "poll_interval_s": s.poll_interval_s,
            "claim_batch": s.claim_batch,
            "shutdown_grace_s": s.shutdown_grace_s,
            "reap_interval_s": s.reap_interval_s,
            "ack_flush_s": s.ack_flush_s,
            "done_retention_s": s.done_retention_s,
            "prune_interval_s": s.prune_interval_s,
            "alert_interval_s": s.alert_interval_s,
            "status_window_s": s.status_window_s,
            "idempotency_retention_s": s.idempotency_retention_s,
        }
        values.update(overrides)
        return loop.WorkerOptions(**values)

    def run_worker(self, *, until_idle: bool = False, **overrides: Any) -> loop.Worker:
        """Run one worker in this thread until stopped or idle; returns it (for its stats)."""
        worker_ = self.worker(self.worker_options(until_idle=until_idle, **overrides))
        asyncio.run(worker_.run())
        return worker_


def load(path: str | Path, *, settings: Settings | None = None) -> Pipeline:
    """Load and validate a pipeline file and its plugins.

    Raises ``runner.ConfigInvalid`` with every problem found (``file:line:col: message``)
    and ``runner.NotFound`` when the file does not exist.
    """
    settings = settings or Settings()
    loaded = loader.load_pipeline(path)
    pm, plugin_problems = manager.create(loaded.root, loaded.model.plugins)
    handlers, handler_problems = manager.collect_handlers(pm)
    diagnostics: list[errors.Diagnostic] = []
    for problem in [*plugin_problems, *handler_problems]:
        loc: tuple[str | int, ...] = (
            ("plugins", problem.index) if problem.index is not None else ("plugins",)
        )
        diagnostics.append(loaded.diagnostic(loc, problem.message))
    if not plugin_problems:
        diagnostics.extend(loader.check_handlers(loaded, handlers.keys()))
    if diagnostics:
        raise errors.ConfigInvalid(diagnostics)
    if settings.alert_webhook_url:
        from runner.plugins.builtin.webhook import WebhookSink

        pm.register(WebhookSink(settings.alert_webhook_url), name="runner.builtin.webhook")
    return Pipeline(loaded, settings, pm, handlers)

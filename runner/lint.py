"""``runner lint``: the operational checklist as lints, each with an id, a place, a why and a fix.

Lints read a valid pipeline (and, when the database already has history, its measured
processing times); they never change anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config import loader, models, payloads
from runner.config.durations import format_duration
from runner.config.settings import Settings
from runner.engine import base

MAX_SANE_ATTEMPTS = 20
PLACEHOLDER_OWNERS = frozenset(
    {"todo", "tbd", "fixme", "changeme", "nobody", "none", "unknown", "owner", "team", "-"}
)
BUSINESS_ID = re.compile(r"(^id$|Id$|_id$|ID$)")


@dataclass(frozen=True)
class Finding:
    id: str
    name: str
    severity: str  # "warning" | "error"
    file: str
    line: int
    col: int
    message: str
    why: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}:{self.col}: {self.id} {self.name}: {self.message}\n"
            f"    why: {self.why}\n    fix: {self.fix}"
        )


@dataclass(frozen=True)
class Context:
    loaded: loader.LoadedPipeline
    settings: Settings
    p95_s: Mapping[str, float | None]
    """Measured p95 processing time per queue, when the database has history."""

    @property
    def model(self) -> models.Pipeline:
        return self.loaded.model

    def finding(self, rule: Rule, loc: tuple[str | int, ...], message: str) -> Finding:
        line, col = self.loaded.locate(*loc)
        return Finding(
            rule.id,
            rule.name,
            rule.severity,
            self.loaded.display,
            line,
            col,
            message,
            rule.why,
            rule.fix,
        )


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: str
    why: str
    fix: str
    check: Callable[[Rule, Context], Iterator[Finding]]


def _owner(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, queue in ctx.model.queues.items():
        if queue.dlq.owner.strip().lower() in PLACEHOLDER_OWNERS:
            yield ctx.finding(
                rule,
                ("queues", name, "dlq", "owner"),
                f"queue {name} has no real DLQ owner ({queue.dlq.owner!r})",
            )


def _retries(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, job in ctx.model.jobs.items():
        if job.retry.max_attempts > MAX_SANE_ATTEMPTS:
            yield ctx.finding(
                rule,
                ("jobs", name, "retry", "max_attempts"),
                f"{name} retries {job.retry.max_attempts} times (more than {MAX_SANE_ATTEMPTS})",
            )


def _jitter(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, job in ctx.model.jobs.items():
        if job.retry.max_attempts > 1 and job.retry.jitter == 0:
            loc = ("jobs", name, "retry", "jitter")
            written = ctx.loaded.document.exists(loc)
            yield ctx.finding(
                rule, loc if written else ("jobs", name, "retry"), f"{name} retries without jitter"
            )


def _visibility(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, job in ctx.model.jobs.items():
        queue = ctx.model.queues[job.queue]
        loc = ("queues", job.queue, "visibility_timeout")
        vt = format_duration(queue.visibility_timeout)
        if not job.heartbeat and queue.visibility_timeout < 2 * job.timeout:
            yield ctx.finding(
                rule,
                loc,
                f"visibility_timeout {vt} of queue {job.queue} is "
                f"less than twice the timeout {format_duration(job.timeout)} "
                f"of {name}",
            )
        p95 = ctx.p95_s.get(job.queue)
        if p95 is not None and queue.visibility_timeout <= p95:
            yield ctx.finding(
                rule,
                loc,
                f"visibility_timeout {vt} of queue {job.queue} is "
                f"below the p95 processing time measured: {p95:.1f}s",
            )


def _pool(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, queue in ctx.model.queues.items():
        if queue.concurrency > ctx.settings.pool_size:
            yield ctx.finding(
                rule,
                ("queues", name, "concurrency"),
                f"concurrency {queue.concurrency} of queue {name} is above the "
                f"database pool size {ctx.settings.pool_size}",
            )


def _business_id(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name in ctx.model.jobs:
        schema = ctx.loaded.schemas.get(name, {})
        required = [str(r) for r in schema.get("required", [])]
        if not any(BUSINESS_ID.search(field) for field in required):
            yield ctx.finding(
                rule,
                ("jobs", name, "schema"),
                f"the payload schema of {name} requires no business id",
            )
        if not ctx.loaded.document.exists(("jobs", name, "schema_version")):
            yield ctx.finding(rule, ("jobs", name), f"{name} does not declare its schema_version")


def _schema_properties(schema: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(schema, dict):
        for key, sub in (schema.get("properties") or {}).items():
            yield f"{path}.{key}", str(key)
            yield from _schema_properties(sub, f"{path}.{key}")
        for keyword in ("items", "additionalProperties"):
            if isinstance(schema.get(keyword), dict):
                yield from _schema_properties(schema[keyword], f"{path}[]")
        for keyword in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(keyword) or []:
                yield from _schema_properties(sub, path)


def _secrets(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name in ctx.model.jobs:
        for path, key in _schema_properties(ctx.loaded.schemas.get(name, {})):
            if payloads.is_secret_key(key):
                yield ctx.finding(
                    rule,
                    ("jobs", name, "schema"),
                    f"the payload schema of {name} declares a secret-looking property {path}",
                )


def _alerts(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, queue in ctx.model.queues.items():
        if queue.alerts is None:
            yield ctx.finding(rule, ("queues", name), f"queue {name} has no alerts")


def _replay(rule: Rule, ctx: Context) -> Iterator[Finding]:
    for name, job in ctx.model.jobs.items():
        if job.replay == "allowed" and job.idempotency_key is None:
            loc = ("jobs", name, "replay")
            yield ctx.finding(
                rule,
                loc if ctx.loaded.document.exists(loc) else ("jobs", name),
                f"{name} may be replayed in bulk but has no idempotency_key",
            )


RULES = [
    Rule(
        "R001",
        "dlq-owner",
        "warning",
        "a dead job nobody owns is never looked at",
        "name a team, an on-call rota or an address in dlq.owner",
        _owner,
    ),
    Rule(
        "R002",
        "retries-unbounded",
        "warning",
        "many retries hammer a failing provider and hide poison jobs for hours",
        f"keep retry.max_attempts at {MAX_SANE_ATTEMPTS} or fewer; let the DLQ catch the rest",
        _retries,
    ),
    Rule(
        "R003",
        "no-jitter",
        "warning",
        "retries without jitter fire in lockstep and hit a recovering provider all at once",
        "set retry.jitter (0.5 is a good default)",
        _jitter,
    ),
    Rule(
        "R004",
        "visibility-timeout",
        "warning",
        "a lease shorter than the real run time redelivers jobs that are still running",
        "raise the queue's visibility_timeout above 2x the job timeout and the measured "
        "p95, or set heartbeat: true",
        _visibility,
    ),
    Rule(
        "R005",
        "concurrency-above-pool",
        "warning",
        "more concurrent jobs than database connections queue up on the pool",
        "lower concurrency, or raise RUNNER_POOL_SIZE",
        _pool,
    ),
    Rule(
        "R006",
        "schema-identity",
        "warning",
        "without a business id and a schema version, duplicates and old producers "
        "cannot be told apart",
        "require an id field (orderId, user_id...) and set schema_version",
        _business_id,
    ),
    Rule(
        "R007",
        "secret-in-schema",
        "error",
        "a schema that declares a secret invites producers to put secrets in payloads, "
        "which land in the database and the DLQ",
        "pass a reference (a vault path, a token id) instead of the secret",
        _secrets,
    ),
    Rule(
        "R008",
        "queue-without-alerts",
        "warning",
        "a queue that alerts nobody fails silently",
        "add alerts: (depth_above, oldest_age_above, failure_rate_above, dlq_above)",
        _alerts,
    ),
    Rule(
        "R009",
        "replay-without-idempotency",
        "warning",
        "a bulk replay of a job type without an idempotency key can repeat business effects",
        "add an idempotency_key, or set replay: manual (or never)",
        _replay,
    ),
]


def measured_p95(
    store: base.Store | None, queues: list[str], window_s: float
) -> dict[str, float | None]:
    if store is None:
        return {}
    try:
        return {name: s.p95_s for name, s in store.stats(queues, window_s).items()}
    except base.StoreUnavailable:
        return {}


def run(ctx: Context) -> list[Finding]:
    findings = [finding for rule in RULES for finding in rule.check(rule, ctx)]
    return sorted(findings, key=lambda f: (f.line, f.col, f.id))

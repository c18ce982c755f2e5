"""The ``runner`` command line. Only this module prints or exits.

Exit codes (sysexits): 0 ok, 2 usage, 65 invalid payload, 66 not found,
69 database unavailable, 70 internal error, 75 refused by backpressure,
78 invalid pipeline file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from runner import api, errors, events
from runner import metrics as metrics_mod
from runner.config import payloads
from runner.config.durations import parse_duration
from runner.config.settings import Settings
from runner.engine import base

if TYPE_CHECKING:  # rich is imported where it is used: `runner up` starts without it
    from rich.console import Console
    from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])

JSONL_BATCH = 1000


@functools.cache
def _console(stderr: bool = False) -> Console:
    """Rich consoles, made on first use; when not on a terminal, wide enough that tables
    do not wrap."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=160)
    return console


def _out() -> Console:
    return _console()


def _err() -> Console:
    return _console(stderr=True)


def _fail(exc: errors.RunnerError) -> NoReturn:
    if isinstance(exc, errors.ConfigInvalid):
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        click.echo(f"{len(exc.diagnostics)} error(s); pipeline not valid", err=True)
    else:
        click.echo(f"error: {exc}", err=True)
        cause = exc.__cause__
        while cause is not None:
            click.echo(f"  caused by: {type(cause).__name__}: {cause}", err=True)
            cause = cause.__cause__
    sys.exit(exc.exit_code)


def handle_errors(fn: F) -> F:
    """Map RunnerError to its documented exit code; anything else is a bug (exit 70)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.RunnerError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _load(path: str, log_format: str | None = None) -> api.Pipeline:
    settings = Settings()
    events.configure(log_format or settings.log_format, settings.log_level)
    return api.load(path, settings=settings)


def _duration_option(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runner")
def cli() -> None:
    """Declarative job-queue pipelines on SQLite or PostgreSQL."""


# -- check --------------------------------------------------------------------------------


@cli.command()
@click.argument("file")
@handle_errors
def check(file: str) -> None:
    """Validate a pipeline file and its plugins; print every error as file:line:col."""
    pipeline = api.load(file, settings=Settings())
    model = pipeline.model
    click.echo(
        f"ok: {file}: {len(model.queues)} queue(s), {len(model.jobs)} job type(s), "
        f"{len(pipeline.handlers)} handler(s)"
    )


# -- lint ----------------------------------------------------------------------------------

LINT_HISTORY_WINDOW_S = 7 * 86400.0


def _history_store(pipeline: api.Pipeline) -> base.Store | None:
    """The store, if the database already exists: lint never creates one."""
    url = pipeline.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or not Path(path).is_file():
            return None
    try:
        return pipeline.store
    except errors.DatabaseUnavailable:
        return None


@cli.command()
@click.argument("file")
@click.option("--strict", is_flag=True, help="warnings fail too (exit 1), for CI")
@click.option("--json", "as_json", is_flag=True, help="print findings as JSON")
@click.option(
    "--history/--no-history",
    default=True,
    help="compare timeouts with processing times measured in the database",
)
@handle_errors
def lint(file: str, strict: bool, as_json: bool, history: bool) -> None:
    """Check a pipeline against the operational checklist (exit 1 on errors, or any
    finding with --strict)."""
    settings = Settings()
    pipeline = api.load(file, settings=settings)
    with pipeline:
        store = _history_store(pipeline) if history else None
        from runner import lint as lint_mod  # only `runner lint` needs it

        p95 = lint_mod.measured_p95(store, pipeline.queue_names, LINT_HISTORY_WINDOW_S)
        findings = lint_mod.run(lint_mod.Context(pipeline.loaded, settings, p95))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(f) for f in findings]))
    else:
        for finding in findings:
            click.echo(str(finding))
        errors_n = sum(f.severity == "error" for f in findings)
        click.echo(
            f"{len(findings)} finding(s): {errors_n} error(s), "
            f"{len(findings) - errors_n} warning(s)"
            if findings
            else f"ok: {file}: no findings"
        )
    failing = [f for f in findings if f.severity == "error" or strict]
    sys.exit(1 if failing else 0)


# -- enqueue ------------------------------------------------------------------------------


def _read_payload(text: str, job_type: str) -> object:
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise errors.NotFound(f"payload file not found: {path}")
        return payloads.parse_json(path.read_bytes(), job_type=job_type)
    return payloads.parse_json(text, job_type=job_type)


def _jsonl_lines(source: str) -> Iterator[tuple[int, bytes]]:
    if source == "-":
        stream = sys.stdin.buffer
        yield from enumerate(stream, start=1)
        return
    path = Path(source)
    if not path.is_file():
        raise errors.NotFound(f"JSONL file not found: {path}")
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def _enqueue_jsonl(pipeline: api.Pipeline, job_type: str, source: str) -> list[int]:
    """Validate every line first; enqueue nothing unless all are valid; then one transaction."""
    prepare = pipeline.preparer(job_type)
    rows: list[base.NewJob] = []
    problems: list[tuple[str, str]] = []
    for number, raw in _jsonl_lines(source):
        if not raw.strip():
            continue
        try:
            payload = payloads.parse_json(raw, job_type=job_type, line=number)
            rows.append(prepare(payload, number))
        except errors.InvalidPayload as exc:
            problems.extend((f"line {number}: {path}", msg) for path, msg in exc.problems)
    if problems:
        raise errors.InvalidPayload(job_type, problems)
    return pipeline.enqueue_prepared(job_type, rows) if rows else []


@cli.command()
@click.argument("file")
@click.argument("job_type", metavar="TYPE")
@click.option("--payload", "payload_text", help="JSON object, or @path/to/file.json")
@click.option("--jsonl", "jsonl", help="enqueue one job per line of this file ('-' for stdin)")
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
@handle_errors
def enqueue(
    file: str, job_type: str, payload_text: str | None, jsonl: str | None, as_json: bool
) -> None:
    """Validate and enqueue a job; print its id (or, with --jsonl, how many were enqueued)."""
    if (payload_text is None) == (jsonl is None):
        raise click.UsageError("give exactly one of --payload or --jsonl")
    pipeline = _load(file)
    with pipeline:
        if jsonl is not None:
            ids = _enqueue_jsonl(pipeline, job_type, jsonl)
            deduplicated = len(ids) - len(set(ids))
            if as_json:
                click.echo(json.dumps({"enqueued": len(ids), "ids": ids}))
            else:
                click.echo(str(len(ids)))
            if deduplicated:
                click.echo(
                    f"{deduplicated} line(s) repeated a pending idempotency key and were "
                    "deduplicated",
                    err=True,
                )
            return
        assert payload_text is not None
        job_id = pipeline.enqueue(job_type, _read_payload(payload_text, job_type))
        click.echo(json.dumps({"id": job_id, "type": job_type}) if as_json else str(job_id))


# -- status -------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _status_json(stats: dict[str, base.QueueStats]) -> dict[str, Any]:
    return {
        "queues": {
            name: {
                "ready": s.ready,
                "scheduled": s.scheduled,
                "in_flight": s.in_flight,
                "done": s.done,
                "dead": s.dead,
                "oldest_ready_age_s": s.oldest_ready_age_s,
                "failure_rate": s.failure_rate,
                "p95_s": s.p95_s,
                "p50_s": s.p50_s,
                "throughput_per_min": s.processed_in_window / s.window_s * 60.0,
                "processed_in_window": s.processed_in_window,
                "failed_in_window": s.failed_in_window,
                "window_s": s.window_s,
            }
            for name, s in stats.items()
        }
    }


def _status_table(pipeline: api.Pipeline, stats: dict[str, base.QueueStats]) -> Table:
    window = pipeline.settings.status_window_s
    from rich.table import Table

    table = Table(
        title=f"{pipeline.loaded.display} (failure rate and p95 over the last {window:g}s)",
        title_justify="left",
    )
    for column in ("queue", "ready", "scheduled", "in flight", "done", "dead"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    table.add_column("oldest", justify="right")
    table.add_column("failures", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    table.add_column("done/min", justify="right")
    for name, s in stats.items():
        paused = " (paused)" if pipeline.model.queues[name].paused else ""
        table.add_row(
            name + paused,
            str(s.ready),
            str(s.scheduled),
            str(s.in_flight),
            str(s.done),
            str(s.dead),
            _num(s.oldest_ready_age_s, "{:.1f}s"),
            _num(None if s.failure_rate is None else s.failure_rate * 100, "{:.1f}%"),
            _num(s.p50_s, "{:.3f}s"),
            _num(s.p95_s, "{:.3f}s"),
            f"{s.processed_in_window / s.window_s * 60.0:.1f}",
        )
    return table


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
@click.option("--watch", is_flag=True, help="refresh until Ctrl-C")
@click.option("--interval", default="2s", show_default=True, help="refresh period with --watch")
@handle_errors
def status(file: str, as_json: bool, watch: bool, interval: str) -> None:
    """Per queue: ready, scheduled, in flight, done, dead, oldest ready age, failure rate,
    p50/p95 processing time and throughput, read from the database (no worker needed)."""
    period = _duration_option(interval) or 2.0
    pipeline = _load(file)
    with pipeline:
        if not watch:
            stats = pipeline.status()
            if as_json:
                click.echo(json.dumps(_status_json(stats)))
            else:
                _out().print(_status_table(pipeline, stats))
            return
        if as_json:  # one JSON document per refresh, for piping into jq
            while True:
                click.echo(json.dumps(_status_json(pipeline.status())))
                time.sleep(period)
        from rich.live import Live

        with Live(_status_table(pipeline, pipeline.status()), console=_out()) as live:
            while True:
                time.sleep(period)
                live.update(_status_table(pipeline, pipeline.status()))


# -- up -----------------------------------------------------------------------------------


class _ProgressPoller:
    """Polls the database while --until-idle runs and drives a rich progress bar."""

    def __init__(self, pipeline: api.Pipeline) -> None:
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="runner-progress", daemon=True)

    def _totals(self) -> tuple[int, int]:
        stats = self.pipeline.status().values()
        finished = sum(s.done + s.dead for s in stats)
        left = sum(s.ready + s.scheduled + s.in_flight for s in stats)
        return finished, left

    def _run(self) -> None:
        try:
            baseline, left = self._totals()
        except errors.RunnerError:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("[bold]draining"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_err(),
            transient=False,
        ) as progress:
            task = progress.add_task("jobs", total=left)
            while not self.stop.wait(0.3):
                try:
                    finished, left = self._totals()
                except Exception:
                    continue
                done = finished - baseline
                progress.update(task, completed=done, total=done + left)
            finished, left = self._totals()
            done = finished - baseline
            progress.update(task, completed=done, total=done + left)

    def __enter__(self) -> _ProgressPoller:
        if _err().is_terminal:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)


def _run_children(
    file: str,
    processes: int,
    until_idle: bool,
    grace: float | None,
    log_format: str | None,
    record_metrics: bool,
) -> int:
    """Supervise N worker processes; forward SIGTERM/SIGINT; exit with the worst code."""
    cmd = [sys.executable, "-m", "runner", "up", file, "--processes", "1", "--no-progress"]
    if record_metrics:
        cmd.append("--record-metrics")
    if log_format:
        cmd += ["--log-format", log_format]
    if until_idle:
        cmd.append("--until-idle")
    if grace is not None:
        cmd += ["--grace", f"{grace}s"]
    # own sessions: a Ctrl-C on the terminal reaches the supervisor once, which forwards it once
    children = [subprocess.Popen(cmd, start_new_session=True) for _ in range(processes)]

    signalled = False

    def forward(signum: int, _frame: Any) -> None:
        # Children get SIGTERM whatever arrived: a child still starting up then dies
        # before it claims anything, instead of raising KeyboardInterrupt mid-import.
        nonlocal signalled
        signalled = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    if signalled:
        codes = [0 if c == -signal.SIGTERM else c for c in codes]
    return max(codes, key=lambda c: (c != 0, abs(c)))


@cli.command()
@click.argument("file")
@click.option(
    "--until-idle", is_flag=True, help="exit 0 once no job is ready, scheduled or in flight"
)
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--grace", "grace", default=None, help="shutdown grace period, e.g. 30s")
@click.option("--progress/--no-progress", default=True, help="progress bar with --until-idle")
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default=None,
    help="console (default) or one JSON object per line; RUNNER_LOG_FORMAT sets the default",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="serve Prometheus metrics on this port",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="address the metrics server binds",
)
@click.option("--record-metrics", is_flag=True, hidden=True)
@handle_errors
def up(
    file: str,
    until_idle: bool,
    processes: int,
    grace: str | None,
    progress: bool,
    log_format: str | None,
    metrics_port: int | None,
    metrics_host: str,
    record_metrics: bool,
) -> None:
    """Run workers for every queue of the pipeline until SIGTERM/SIGINT (or idle)."""
    grace_s = _duration_option(grace)
    metrics_dir = metrics_mod.prepare_multiprocess_dir() if metrics_port is not None else None
    try:
        _up(
            file,
            until_idle,
            processes,
            grace_s,
            progress,
            log_format,
            record_metrics,
            metrics_dir,
            metrics_host,
            metrics_port,
        )
    finally:
        if metrics_dir is not None:
            metrics_mod.remove_multiprocess_dir(metrics_dir)


def _serve_metrics(pipeline: api.Pipeline, host: str, port: int) -> None:
    collector = metrics_mod.QueueCollector(
        pipeline.store,
        {name: q.paused for name, q in pipeline.model.queues.items()},
        pipeline.settings.status_window_s,
    )
    try:
        metrics_mod.serve(host, port, collector)
    except OSError as exc:
        raise click.UsageError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    events.emit(
        logging.getLogger("runner.metrics"), logging.INFO, "metrics_serving", host=host, port=port
    )


def _up(
    file: str,
    until_idle: bool,
    processes: int,
    grace_s: float | None,
    progress: bool,
    log_format: str | None,
    record_metrics: bool,
    metrics_dir: str | None,
    metrics_host: str,
    metrics_port: int | None,
) -> None:
    pipeline = _load(file, log_format)
    if record_metrics or metrics_dir is not None:
        pipeline.record_metrics()
    overrides: dict[str, Any] = {}
    if grace_s is not None:
        overrides["shutdown_grace_s"] = grace_s
    with pipeline:
        pipeline.store  # open and migrate once, before any child starts  # noqa: B018
        children: _Children | None = None
        if processes > 1 and hasattr(os, "fork"):
            children = _Children.fork(pipeline, processes, until_idle, overrides)
        if metrics_port is not None:
            _serve_metrics(pipeline, metrics_host, metrics_port)
        poller = _ProgressPoller(pipeline) if (until_idle and progress) else None
        worker = None
        if poller is not None:
            poller.__enter__()
        try:
            if children is not None:
                code = children.wait()
            elif processes > 1:
                code = _run_children(
                    file, processes, until_idle, grace_s, log_format, metrics_dir is not None
                )
            else:
                code, worker = _work_here(pipeline, until_idle, overrides)
        finally:
            if poller is not None:
                poller.__exit__(None, None, None)
        if until_idle and progress and code == 0:
            _print_final_status(pipeline)
    if worker is not None and worker.abandoned_threads:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # handler threads that ignored the grace period cannot be joined
    sys.exit(code)


def _print_final_status(pipeline: api.Pipeline) -> None:
    """The status table after a drain: a courtesy, so a database that is unreachable just
    then (a pooled connection the server closed is dropped by the first try) costs a
    warning line, never the drain's exit code."""
    problem = ""
    for attempt in range(3):
        try:
            stats = pipeline.status()
        except base.StoreUnavailable as exc:
            problem = str(exc)
            time.sleep(0.2 * (attempt + 1))
            continue
        _out().print(_status_table(pipeline, stats))
        return
    click.echo(f"status after the drain is unavailable: {problem}", err=True)


def _work_here(
    pipeline: api.Pipeline, until_idle: bool, overrides: dict[str, Any]
) -> tuple[int, Any]:
    """Run a worker in this process; print its summary line."""
    worker = pipeline.run_worker(until_idle=until_idle, **overrides)
    s = worker.stats
    click.echo(
        f"worker done: processed {s.processed}, retried {s.retried}, "
        f"dead-lettered {s.dead_lettered}, duplicates skipped {s.duplicates}, "
        f"released {s.released}",
        err=True,
    )
    return 0, worker


class _Children:
    """Worker processes forked from the supervisor once the pipeline is loaded and the
    database migrated: they start in milliseconds instead of importing everything again.
    Each opens its own connections and runs in its own session, so a Ctrl-C on the
    terminal reaches the supervisor once, and it forwards SIGTERM once."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.signalled = False

    @classmethod
    def fork(
        cls, pipeline: api.Pipeline, processes: int, until_idle: bool, overrides: dict[str, Any]
    ) -> _Children:
        pipeline.close()  # no connection is shared across a fork
        children = cls([])
        signal.signal(signal.SIGTERM, children._forward)
        signal.signal(signal.SIGINT, children._forward)
        sys.stdout.flush()
        sys.stderr.flush()
        for _ in range(processes):
            pid = os.fork()
            if pid == 0:  # the child never returns from here
                code = 70
                try:
                    os.setsid()
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    code, _ = _work_here(pipeline, until_idle, overrides)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:
                    logging.getLogger("runner.cli").exception("action=worker_crashed")
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children.pids.append(pid)
        return children

    def _forward(self, signum: int, _frame: Any) -> None:
        # Children get SIGTERM whatever arrived (their own graceful stop).
        self.signalled = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def wait(self) -> int:
        codes = []
        for pid in self.pids:
            _, status = os.waitpid(pid, 0)
            codes.append(os.waitstatus_to_exitcode(status))
        if self.signalled:
            codes = [0 if c == -signal.SIGTERM else c for c in codes]
        return max(codes, key=lambda c: (c != 0, abs(c)))


# -- alerts -------------------------------------------------------------------------------


@cli.command()
@click.argument("file")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def alerts(file: str, limit: int, as_json: bool) -> None:
    """Alert firings and resolutions recorded for the pipeline's queues (newest first)."""
    pipeline = _load(file)
    with pipeline:
        found = pipeline.store.alert_events(pipeline.queue_names, limit)
        if as_json:
            click.echo(json.dumps([dataclasses.asdict(e) for e in found]))
            return
        from rich.table import Table

        table = Table(title=f"alerts of {file}", title_justify="left")
        for column in ("when", "queue", "rule", "state", "value", "threshold"):
            table.add_column(column)
        for e in found:
            table.add_row(_ts(e.at), e.queue, e.rule, e.state, f"{e.value:g}", f"{e.threshold:g}")
        _out().print(table)


# -- dlq ----------------------------------------------------------------------------------


def _filter_options(fn: F) -> F:
    for option in reversed(
        [
            click.option("--queue", "queues", multiple=True, help="only this queue (repeatable)"),
            click.option("--type", "types", multiple=True, help="only this job type (repeatable)"),
            click.option("--error", "error_type", help="only jobs whose last error has this class"),
            click.option("--older-than", "older_than", help="only jobs dead for longer, e.g. 1h"),
        ]
    ):
        fn = option(fn)
    return fn


def _dead_json(job: base.DeadJob, *, with_payload: bool, with_errors: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "owner": job.owner,
        "enqueued_at": job.enqueued_at,
        "dead_at": job.dead_at,
        "idempotency_key": job.idempotency_key,
    }
    if with_errors:
        data["errors"] = [
            {
                "attempt": e.attempt,
                "type": e.type,
                "message": e.message,
                "traceback": e.traceback,
                "at": e.at,
            }
            for e in job.errors
        ]
    if with_payload:
        data["payload"] = json.loads(job.payload_json)
    return data


def _ts(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + "Z"


@cli.group()
def dlq() -> None:
    """Review, replay and purge dead-lettered jobs."""


@dlq.command("list")
@click.argument("file")
@_filter_options
@click.option("--limit", type=click.IntRange(1), default=None)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def dlq_list(
    file: str,
    queues: tuple[str, ...],
    types: tuple[str, ...],
    error_type: str | None,
    older_than: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List dead jobs (payload values are never shown here)."""
    pipeline = _load(file)
    with pipeline:
        flt = pipeline.dlq_filter(
            queues=queues,
            types=types,
            error_type=error_type,
            older_than_s=_duration_option(older_than),
            limit=limit,
        )
        dead = pipeline.store.dlq_list(flt)
        if as_json:
            click.echo(
                json.dumps([_dead_json(j, with_payload=False, with_errors=False) for j in dead])
            )
            return
        from rich.table import Table

        table = Table(title=f"dead jobs in {file}: {len(dead)}", title_justify="left")
        for column in ("id", "type", "queue", "attempts", "dead at", "owner", "last error"):
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        for j in dead:
            table.add_row(
                str(j.id),
                j.type,
                j.queue,
                f"{j.attempts}/{j.max_attempts}",
                _ts(j.dead_at),
                j.owner or "-",
                (j.last_error or "-")[:80],
            )
        _out().print(table)


@dlq.command("show")
@click.argument("file")
@click.argument("job_id", type=int)
@click.option("--payload", "with_payload", is_flag=True, help="also print the payload values")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def dlq_show(file: str, job_id: int, with_payload: bool, as_json: bool) -> None:
    """Show one dead job with its full error history."""
    pipeline = _load(file)
    with pipeline:
        found = pipeline.store.dlq_list(pipeline.dlq_filter(ids=[job_id]))
        if not found:
            raise errors.NotFound(f"no dead job {job_id} in the queues of {file}")
        job = found[0]
        if as_json:
            click.echo(json.dumps(_dead_json(job, with_payload=with_payload, with_errors=True)))
            return
        _out().print(f"[bold]job {job.id}[/bold] {job.type} on queue {job.queue}")
        _out().print(f"attempts {job.attempts}/{job.max_attempts}, owner {job.owner or '-'}")
        _out().print(f"enqueued {_ts(job.enqueued_at)}, dead {_ts(job.dead_at)}")
        if job.idempotency_key:
            _out().print(f"idempotency key {job.idempotency_key}", markup=False)
        for e in job.errors:
            _out().print(f"\n[bold]attempt {e.attempt}[/bold] {_ts(e.at)} {e.type}: ", end="")
            _out().print(e.message, markup=False)
            if e.traceback:
                _out().print(e.traceback, markup=False, style="dim")
        if with_payload:
            _out().print("\npayload:")
            _out().print_json(job.payload_json)
        else:
            _out().print("\n(payload hidden; add --payload to print it)")


def _selection(
    pipeline: api.Pipeline,
    ids: tuple[int, ...],
    select_all: bool,
    queues: tuple[str, ...],
    types: tuple[str, ...],
    error_type: str | None,
    older_than: str | None,
) -> base.DlqFilter:
    filtered = bool(queues or types or error_type or older_than)
    if not ids and not select_all and not filtered:
        raise click.UsageError(
            "name job ids, a filter (--queue/--type/--error/--older-than) or --all"
        )
    return pipeline.dlq_filter(
        ids=ids,
        queues=queues,
        types=types,
        error_type=error_type,
        older_than_s=_duration_option(older_than),
    )


@dlq.command("replay")
@click.argument("file")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "select_all", is_flag=True, help="every dead job of the pipeline")
@_filter_options
@click.option("--dry-run", is_flag=True, help="only say what would be replayed")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def dlq_replay(
    file: str,
    ids: tuple[int, ...],
    select_all: bool,
    queues: tuple[str, ...],
    types: tuple[str, ...],
    error_type: str | None,
    older_than: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Queue dead jobs again with attempts reset (their error history is kept)."""
    pipeline = _load(file)
    with pipeline:
        selection = _selection(pipeline, ids, select_all, queues, types, error_type, older_than)
        if ids and not pipeline.store.dlq_list(selection):
            raise errors.NotFound(f"no dead job among {list(ids)}")
        flt, held = pipeline.replayable(selection)
        if held:
            kept = pipeline.store.dlq_list(dataclasses.replace(selection, types=held))
            if kept:
                click.echo(
                    f"held back {len(kept)} dead job(s) of type(s) {', '.join(held)}: their "
                    "replay rule is manual (replay them by id) or never",
                    err=True,
                )
        if dry_run:
            found = pipeline.store.dlq_list(flt) if flt is not None else []
            result = {"would_replay": [j.id for j in found], "dry_run": True}
            click.echo(json.dumps(result) if as_json else f"would replay {len(found)} job(s)")
            return
        replayed = (
            pipeline.store.dlq_replay(flt, operator=pipeline.operator())
            if flt is not None
            else base.ReplayResult([], [])
        )
        if as_json:
            click.echo(
                json.dumps({"replayed": replayed.replayed, "skipped": replayed.skipped_pending_key})
            )
        else:
            click.echo(f"replayed {len(replayed.replayed)} job(s)")
            if replayed.skipped_pending_key:
                click.echo(
                    f"skipped {len(replayed.skipped_pending_key)} job(s) whose idempotency key "
                    "is pending again: " + ", ".join(map(str, replayed.skipped_pending_key)),
                    err=True,
                )


@dlq.command("purge")
@click.argument("file")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "select_all", is_flag=True, help="every dead job of the pipeline")
@_filter_options
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@handle_errors
def dlq_purge(
    file: str,
    ids: tuple[int, ...],
    select_all: bool,
    queues: tuple[str, ...],
    types: tuple[str, ...],
    error_type: str | None,
    older_than: str | None,
    yes: bool,
) -> None:
    """Delete dead jobs for good (asks for confirmation unless --yes)."""
    pipeline = _load(file)
    with pipeline:
        flt = _selection(pipeline, ids, select_all, queues, types, error_type, older_than)
        count = len(pipeline.store.dlq_list(flt))
        if count == 0:
            if ids:
                raise errors.NotFound(f"no dead job among {list(ids)}")
            click.echo("purged 0 job(s)")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise click.UsageError(f"purge would delete {count} dead job(s): add --yes")
            click.confirm(f"delete {count} dead job(s) for good?", abort=True)
        purged = pipeline.store.dlq_purge(flt, operator=pipeline.operator())
        click.echo(f"purged {purged} job(s)")


@dlq.command("audit")
@click.argument("file")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def dlq_audit(file: str, limit: int, as_json: bool) -> None:
    """Who replayed or purged dead jobs, when, and how many (newest first)."""
    pipeline = _load(file)
    with pipeline:
        entries = pipeline.store.audit_log(limit)
        if as_json:
            click.echo(json.dumps([dataclasses.asdict(e) for e in entries]))
            return
        from rich.table import Table

        table = Table(title="DLQ audit", title_justify="left")
        for column in ("when", "operator", "action", "jobs", "selection"):
            table.add_column(column)
        for e in entries:
            table.add_row(_ts(e.at), e.operator, e.action, str(e.count), e.selection)
        _out().print(table)


def main() -> None:
    cli(prog_name="runner")

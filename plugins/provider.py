"""A fake external provider (mail service, image CDN, payment gateway, report store).

Every call is recorded durably in a SQLite file under ``<project root>/var/`` so
tests and the demo can count business effects and duplicates. Like real providers
(Stripe, SES, Postmark) it accepts an idempotency key: a second call with a key
it has already seen returns the first result and adds no new effect.

How the provider misbehaves is decided by the data, as with a real one:
- a target containing ``flaky`` fails with ``ProviderUnavailable`` on its first
  2 calls (set the count with ``flaky3``, ``flaky5``...), then succeeds;
- a target containing ``down`` always fails with ``ProviderUnavailable`` (retried
  until the job's attempts run out);
- a target containing ``reject`` fails with ``ProviderRejected`` (non-retryable).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

STORE = Path(__file__).resolve().parent.parent / "var" / "provider.sqlite"


class ProviderUnavailable(Exception):
    """A temporary failure (timeout, 503): worth retrying."""


class ProviderRejected(Exception):
    """A permanent refusal (hard bounce, invalid card, corrupt file): never retry."""


_local = threading.local()
_setup_lock = threading.Lock()

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
    "target TEXT NOT NULL, key TEXT, job_id INTEGER, attempt INTEGER, at REAL NOT NULL, "
    "started REAL, outcome TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS effects (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
    "target TEXT NOT NULL, key TEXT UNIQUE, job_id INTEGER, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS calls_target ON calls (kind, target)",
)


def _open() -> sqlite3.Connection:
    STORE.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(STORE, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    # Switching a new file to WAL needs an exclusive lock that the busy timeout does not
    # wait for; several workers starting at once retry instead of failing a job.
    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            return conn
        except sqlite3.OperationalError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            time.sleep(0.01 * (attempt + 1))
    raise ProviderUnavailable("provider store is locked")


def _connect() -> sqlite3.Connection:
    """One connection per thread, kept open (the provider is called from handler threads)."""
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        with _setup_lock:
            conn = _open()
        _local.conn = conn
    return conn


def _failures_wanted(target: str) -> int:
    match = re.search(r"flaky(\d*)", target)
    if match is None:
        return 0
    return int(match.group(1) or 2)


def call(
    kind: str,
    target: str,
    *,
    key: str | None,
    job_id: int,
    attempt: int,
    work_s: float = 0.0,
) -> int:
    """Perform one business effect; returns the effect id. Raises like a real provider."""
    started = time.time()
    if work_s:
        time.sleep(work_s)
    conn = _connect()
    conn.execute("BEGIN IMMEDIATE")
    try:
        previous = conn.execute(
            "SELECT count(*) FROM calls WHERE kind = ? AND target = ?", (kind, target)
        ).fetchone()[0]
        if "reject" in target:
            outcome = "rejected"
        elif "down" in target or previous < _failures_wanted(target):
            outcome = "unavailable"
        else:
            outcome = "ok"
        conn.execute(
            "INSERT INTO calls (kind, target, key, job_id, attempt, at, started, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, target, key, job_id, attempt, time.time(), started, outcome),
        )
        effect_id = 0
        if outcome == "ok":
            row = (
                conn.execute("SELECT id FROM effects WHERE key = ?", (key,)).fetchone()
                if key
                else None
            )
            if row is not None:
                effect_id = int(row[0])
            else:
                cur = conn.execute(
                    "INSERT INTO effects (kind, target, key, job_id, at) VALUES (?, ?, ?, ?, ?)",
                    (kind, target, key, job_id, time.time()),
                )
                effect_id = int(cur.lastrowid or 0)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if outcome == "rejected":
        raise ProviderRejected(f"{kind} provider rejected the request")
    if outcome == "unavailable":
        raise ProviderUnavailable(f"{kind} provider unavailable (503), try again later")
    return effect_id

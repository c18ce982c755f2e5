"""SQLite: each producer thread keeps a connection of its own for one-statement enqueues.

A durable single enqueue on SQLite is one INSERT and one fsync (~110 µs on this kind of
machine); checking a connection out of SQLAlchemy's pool and back in added ~9 µs to it,
pure Python on every call. A SQLite connection is a file handle and a page cache (no
server process behind it), so a thread may as well keep one: taken from the engine
(opened and set up by the same ``connect`` hook as every other), then detached from
the pool, so the pool's size still bounds only the connections it lends.

Not for PostgreSQL: there a connection is a server process, and a network round trip
dwarfs the pool's cost.

Lifetimes: a thread's connection is closed when the thread ends (its holder is
collected) or when the store is disposed. A connection inherited through ``fork`` is
never used or closed by the child: SQLite forbids carrying one across a fork, and
closing it could checkpoint and remove the WAL under the parent; the child opens its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from runner.engine.base import StoreUnavailable
from runner.engine.prepared import Prepared

_INHERITED: list[Any] = []  # connections a parent opened: kept, unused, never closed


class _Held:
    """One thread's connection (weak-referenceable, unlike the DBAPI connection)."""

    __slots__ = ("__weakref__", "driver", "fairy", "pid")

    def __init__(self, engine: sa.Engine, setup: Callable[[Any, dict[str, Any]], None]) -> None:
        self.fairy: Any = engine.raw_connection()
        try:
            # A pooled connection may come from a worker's relaxed transaction: set it up
            # for durable producer commits, once, before it leaves the pool.
            cursor = self.fairy.cursor()
            try:
                setup(cursor, self.fairy.info)
            finally:
                cursor.close()
        except BaseException:
            self.fairy.close()
            raise
        self.fairy.detach()  # the pool forgets it; closing the fairy now really closes it
        self.driver: Any = self.fairy.dbapi_connection
        self.pid = os.getpid()

    def close(self) -> None:
        if self.pid != os.getpid():  # inherited through fork: keep it, never close it
            _INHERITED.append(self.fairy)
            return
        with contextlib.suppress(Exception):  # already closed or broken: nothing to release
            self.fairy.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit, modules may be gone
            self.close()


class ProducerConnections:
    """Per-thread DBAPI connections for statements that are their own transaction."""

    def __init__(self, engine: sa.Engine, setup: Callable[[Any, dict[str, Any]], None]) -> None:
        """``setup(cursor, info)`` prepares a connection for durable one-statement
        commits (it must not open a transaction)."""
        self._engine = engine
        self._setup = setup
        self._local = threading.local()
        self._live: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._lock = threading.Lock()

    def _held(self) -> _Held:
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and held.pid == os.getpid():
            return held
        held = _Held(self._engine, self._setup)  # an inherited one is kept by its close(), unused
        self._local.held = held
        with self._lock:
            self._live.add(held)
        return held

    def insert(self, stmt: Prepared, values: dict[str, Any]) -> int | None:
        """Run an INSERT of one row (no RETURNING) as its own transaction; return the new
        row's id, or None when it inserted nothing.

        ``execute`` steps the statement to its end, so the commit (and its fsync) is done
        when it returns; the id is the connection's last insert rowid, and the connection
        is this thread's alone.
        """
        dbapi = self._engine.dialect.loaded_dbapi
        held = self._held()
        try:
            cursor = held.driver.cursor()
            try:
                cursor.execute(stmt.sql, stmt.params(values))
                return int(cursor.lastrowid) if cursor.rowcount == 1 else None
            finally:
                cursor.close()
        except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
            self._local.held = None
            held.close()
            raise StoreUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "") from exc

    def close(self) -> None:
        """Close every thread's connection (the store is being disposed)."""
        with self._lock:
            live = list(self._live)
            self._live = weakref.WeakSet()
        for held in live:
            held.close()
        self._local = threading.local()

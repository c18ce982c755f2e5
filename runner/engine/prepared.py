"""Statements compiled once per engine and run on the pool's DBAPI connection.

The hottest verbs (one job enqueued) would otherwise spend more time in SQLAlchemy's
per-execution work (cache key, execution context, result set-up) than in the database.
The SQL is still built with SQLAlchemy Core in ``store.py`` and compiled for the engine's
dialect here, once; values are always bound, never formatted. On PostgreSQL, psycopg
prepares a statement on the server after a few executions, so its plan is reused too.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from runner.engine.base import StoreUnavailable


class Prepared:
    """One compiled statement: its SQL text and the order of its parameters."""

    def __init__(
        self,
        stmt: sa.ClauseElement,
        engine: sa.Engine,
        keys: Sequence[str],
        *,
        binary: Sequence[str] = (),
    ) -> None:
        """``binary``: parameters psycopg sends in binary format (arrays: as text, every
        element would be quoted and escaped in Python, ~8 us per row of a bulk insert)."""
        compiled = cast(SQLCompiler, stmt.compile(dialect=engine.dialect, column_keys=list(keys)))
        self.sql = str(compiled)
        if binary and engine.dialect.name == "postgresql":
            for key in binary:
                self.sql = self.sql.replace(f"%({key})s", f"%({key})b")
        self.order: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        # values fixed in the statement itself (e.g. a channel name), bound all the same
        self.constants = {k: v for k, v in compiled.params.items() if k not in keys}
        self._pick: Any = None
        if self.order:
            picker = operator.itemgetter(*self.order)
            self._pick = picker if len(self.order) > 1 else lambda m: (picker(m),)

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        merged = {**self.constants, **values} if self.constants else values
        if self.order is None:
            return merged
        if self._pick is None:
            return ()
        result: tuple[Any, ...] = self._pick(merged)
        return result


class RawTransaction:
    """A transaction on a pooled DBAPI connection (see ``raw_transaction``)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def one(self, stmt: Prepared, values: Mapping[str, Any]) -> Any:
        self.cursor.execute(stmt.sql, stmt.params(values))
        return self.cursor.fetchone()


def one_statement(
    engine: sa.Engine,
    begin: Any,
    stmt: Prepared,
    values: Mapping[str, Any],
    *,
    autocommit: bool = False,
    all_rows: bool = False,
) -> Any:
    """Run one statement in a transaction of its own; return its first row (or None), or
    with ``all_rows`` the list of its rows.

    With ``autocommit`` the statement is its own transaction: one round trip instead of
    three (BEGIN, the statement, COMMIT), and just as atomic and durable; ``begin`` then
    only sets the connection up (it must not open a transaction).
    """
    if not autocommit:
        with raw_transaction(engine, begin) as tx:
            tx.cursor.execute(stmt.sql, stmt.params(values))
            return tx.cursor.fetchall() if all_rows else tx.cursor.fetchone()
    with _checked_out(engine) as raw:
        driver: Any = raw.dbapi_connection
        # sqlite3 connections are opened in autocommit mode (isolation_level=None) already;
        # psycopg's are switched for this one statement.
        toggle = engine.dialect.name != "sqlite"
        if toggle:
            driver.autocommit = True
        try:
            cursor = raw.cursor()
            try:
                begin(cursor, raw.info)
                cursor.execute(stmt.sql, stmt.params(values))
                return cursor.fetchall() if all_rows else cursor.fetchone()
            finally:
                cursor.close()
        finally:
            if toggle:
                driver.autocommit = False


@contextlib.contextmanager
def raw_transaction(engine: sa.Engine, begin: Any) -> Iterator[RawTransaction]:
    """Check a connection out of the pool, ``begin(cursor, info)``, yield, commit; a
    failure rolls back."""
    with _checked_out(engine) as raw:
        cursor = raw.cursor()
        try:
            begin(cursor, raw.info)
            yield RawTransaction(cursor)
            raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()


@contextlib.contextmanager
def _checked_out(engine: sa.Engine) -> Iterator[Any]:
    """A pooled DBAPI connection; a lost one is dropped from the pool and reported as
    StoreUnavailable, like the verbs that go through SQLAlchemy."""
    dbapi = engine.dialect.loaded_dbapi
    raw = engine.raw_connection()
    try:
        yield raw
    except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
        raw.invalidate()
        raise StoreUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "") from exc
    finally:
        raw.close()

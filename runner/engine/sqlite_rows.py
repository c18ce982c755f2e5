"""SQLite: the worker's per-batch verbs (claim, ack, lease renewal) read their rows back as
one JSON value instead of one row per step.

Python's sqlite3 module releases the GIL around every ``sqlite3_step``, so reading 500
claimed rows is 500 releases. In a worker, four handler threads are waiting for the GIL at
each of them; every release hands the GIL over and the database thread queues to get it
back (a convoy: claims and acks slowed to a crawl while handlers wait for jobs). Each verb
here is a few statements of one step each in one ``BEGIN IMMEDIATE`` transaction: pick
the ids (``json_group_array``), change exactly those rows, read them back as one JSON
array. The write lock is held from the first statement, so nothing changes in between.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from runner.engine import tables
from runner.engine.base import Claimed
from runner.engine.prepared import Prepared, raw_transaction
from runner.engine.tables import IS_RUNNING

J = tables.jobs


def _ids_param() -> Any:
    """``SELECT value FROM json_each(:ids)``: a JSON array of ids as one parameter."""
    each = sa.func.json_each(sa.bindparam("ids")).table_valued("value")
    return sa.select(each.c.value)


def _as_json_array(column: sa.ColumnElement[Any]) -> Any:
    return sa.select(sa.func.json_group_array(column))


class SqliteRows:
    """The statements, compiled once per engine (see ``prepared.py``)."""

    def __init__(
        self,
        engine: sa.Engine,
        begin: Callable[[Any, dict[str, Any]], None],
        *,
        pick: sa.Select[Any],
        claim_values: dict[str, Any],
        claim_keys: Sequence[str],
        columns: Sequence[sa.ColumnElement[Any]],
        lease_pairs: Any,
        pairs_keys: Sequence[str],
        ack_values: dict[str, Any],
        now: sa.ColumnElement[float],
    ) -> None:
        self.engine = engine
        self.begin = begin
        ids = _ids_param()
        picked = pick.subquery("picked")
        self._pick = Prepared(_as_json_array(picked.c.id), engine, claim_keys)
        self._lease = Prepared(
            sa.update(J).where(J.c.id.in_(ids)).values(**claim_values),
            engine,
            [*claim_keys, "ids"],
        )
        self._read = Prepared(
            _as_json_array(sa.func.json_array(*columns)).where(J.c.id.in_(ids)),
            engine,
            ["ids"],
        )
        held = _as_json_array(J.c.id).where(
            IS_RUNNING,
            sa.tuple_(J.c.id, J.c.lease_token).in_(
                sa.select(lease_pairs.c.id, lease_pairs.c.token)
            ),
        )
        self._held = Prepared(held, engine, pairs_keys)
        self._ack = Prepared(
            sa.update(J).where(J.c.id.in_(ids)).values(**ack_values), engine, ["ids"]
        )
        self._extend = Prepared(
            sa.update(J)
            .where(J.c.id.in_(ids))
            .values(lease_expires_at=now + sa.bindparam("lease_s", type_=sa.Double())),
            engine,
            ["ids", "lease_s"],
        )

    def claim(self, values: dict[str, Any]) -> list[Claimed]:
        """Lease the picked jobs; ``values`` are the claim statement's parameters."""
        with raw_transaction(self.engine, self.begin) as tx:
            (ids,) = tx.one(self._pick, values)
            if ids == "[]":
                return []
            tx.cursor.execute(self._lease.sql, self._lease.params({**values, "ids": ids}))
            (rows,) = tx.one(self._read, {"ids": ids})
        return sorted((Claimed(*row) for row in json.loads(rows)), key=lambda c: c.id)

    def ack(self, pairs: dict[str, Any], then: Callable[[Any, set[int]], None]) -> set[int]:
        """Mark succeeded the jobs whose lease still matches; ``then(cursor, acked)`` runs in
        the same transaction (to record idempotency keys)."""
        with raw_transaction(self.engine, self.begin) as tx:
            (ids,) = tx.one(self._held, pairs)
            acked = set(json.loads(ids))
            if acked:
                tx.cursor.execute(self._ack.sql, self._ack.params({"ids": ids}))
                then(tx.cursor, acked)
        return acked

    def extend(self, pairs: dict[str, Any], lease_s: float) -> set[int]:
        """Renew the leases still held; return the ids renewed."""
        with raw_transaction(self.engine, self.begin) as tx:
            (ids,) = tx.one(self._held, pairs)
            kept = set(json.loads(ids))
            if kept:
                tx.cursor.execute(
                    self._extend.sql, self._extend.params({"ids": ids, "lease_s": lease_s})
                )
        return kept

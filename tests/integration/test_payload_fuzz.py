"""Payload fuzzing at enqueue, against the real database: the refused leave no trace."""

from __future__ import annotations

import math
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import runner
from runner.config.settings import Settings
from tests.helpers import write_pipeline

VALID = st.fixed_dictionaries(
    {
        "userId": st.integers(1, 10**9),
        "templateId": st.from_regex(r"^[a-z0-9_-]{1,20}$", fullmatch=True),
        "to": st.just("someone@example.com"),
    }
)
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
HOSTILE = st.one_of(
    JUNK,
    VALID.map(lambda p: {**p, "userId": "not a number"}),
    VALID.map(lambda p: {k: v for k, v in p.items() if k != "to"}),
    VALID.map(lambda p: {**p, "templateId": "x" * 100_000}),
    VALID.map(lambda p: {**p, "variables": {"nested": {"token": "t0k3n"}}}),
    VALID.map(lambda p: {**p, "variables": {"score": math.nan}}),
    VALID.map(lambda p: {**p, "to": "\ud800"}),
    st.integers(1, 200).map(lambda depth: {"variables": _nest(depth)}),
)


def _nest(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_fuzzed_payloads_database_holds_exactly_the_accepted(project: Path, db_url: str) -> None:
    path = write_pipeline(project)
    pipeline = runner.load(path, settings=Settings(database_url=db_url))
    accepted: set[int] = set()
    refused = [0]

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(payload=st.one_of(VALID, HOSTILE))
    def enqueue_one(payload: object) -> None:
        try:
            accepted.add(pipeline.enqueue("email.send", payload))
        except runner.InvalidPayload as exc:
            refused[0] += 1
            assert exc.problems and all(path.startswith("$") for path, _ in exc.problems)
            assert "t0k3n" not in str(exc)

    with pipeline:
        enqueue_one()
        stats = pipeline.status()["mail"]
        assert refused[0] > 0 and accepted
        assert stats.ready == len(accepted)  # duplicates of a pending key share one id

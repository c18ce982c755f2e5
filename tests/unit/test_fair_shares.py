"""How a queue's concurrency is split among live workers (pure function, property-tested)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runner.engine.base import fair_shares

wants = st.dictionaries(st.text(min_size=1, max_size=6), st.integers(0, 50), max_size=8)


@given(st.integers(1, 200), wants)
def test_shares_fill_the_concurrency_within_what_each_worker_wants(
    concurrency: int, wanted: dict[str, int]
) -> None:
    shares = fair_shares(concurrency, wanted)
    assert set(shares) == set(wanted)
    assert all(0 <= shares[w] <= wanted[w] for w in wanted)
    assert sum(shares.values()) == min(concurrency, sum(wanted.values()))
    # nobody short of what it wants has two fewer than anybody else
    short = [shares[w] for w in wanted if shares[w] < wanted[w]]
    if short:
        assert max(shares.values()) - min(short) <= 1


@given(st.integers(1, 200), wants)
def test_every_worker_computes_the_same_split(concurrency: int, wanted: dict[str, int]) -> None:
    reordered = dict(reversed(list(wanted.items())))
    assert fair_shares(concurrency, wanted) == fair_shares(concurrency, reordered)


def test_two_workers_split_four_slots_two_and_two() -> None:
    assert fair_shares(4, {"host:1": 4, "host:2": 4}) == {"host:1": 2, "host:2": 2}
    assert fair_shares(4, {"host:1": 1, "host:2": 4}) == {"host:1": 1, "host:2": 3}

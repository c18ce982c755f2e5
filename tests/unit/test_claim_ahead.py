"""How far ahead a lane claims: slots, the time budget, the batch cap, the byte budget."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from runner.worker import lane as lane_mod
from runner.worker.lane import Lane, QueueSpec


@pytest.fixture
def lane() -> Iterator[Lane]:
    loop = asyncio.new_event_loop()
    spec = QueueSpec("q", concurrency=4, lease_s=60.0, paused=False, owner="ops")
    made = Lane(spec, loop, on_finished=lambda: None)
    made.held = 4
    yield made
    loop.close()


def test_before_any_job_ran_a_lane_claims_only_its_slots(lane: Lane) -> None:
    assert lane.target(2000) == 4


def test_short_jobs_are_claimed_up_to_the_batch(lane: Lane) -> None:
    lane.avg_s = 0.00002  # 20 us a job: 0.25 s per slot would be 50,000 jobs
    assert lane.target(2000) == 2000


def test_slow_jobs_are_never_hoarded(lane: Lane) -> None:
    lane.avg_s = 2.0  # 0.25 s of work per slot is less than one job
    assert lane.target(2000) == 4


def test_large_payloads_are_claimed_within_the_byte_budget(lane: Lane) -> None:
    lane.avg_s = 0.00002
    lane.observe_payloads(64 * 1024 * 10, 10)  # 64 KiB each
    assert lane.target(2000) == lane_mod.PREFETCH_BYTES // (64 * 1024)
    assert lane.target(2000) * 64 * 1024 <= lane_mod.PREFETCH_BYTES


def test_the_byte_budget_never_takes_a_lane_below_its_slots(lane: Lane) -> None:
    lane.avg_s = 0.00002
    lane.observe_payloads(lane_mod.PREFETCH_BYTES * 10, 1)  # one huge payload
    assert lane.target(2000) == 4


def test_payload_sizes_are_a_moving_average(lane: Lane) -> None:
    lane.observe_payloads(0, 0)  # an empty claim says nothing
    assert lane.avg_bytes is None
    lane.observe_payloads(1000, 10)
    lane.observe_payloads(200_000, 10)
    assert lane.avg_bytes == pytest.approx(0.8 * 100 + 0.2 * 20_000)

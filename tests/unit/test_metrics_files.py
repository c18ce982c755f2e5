"""A scrape that meets a metric file a worker has only just created still answers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from runner import metrics


def write_counter(path: Path, value: float) -> None:
    values = MmapedDict(str(path))
    key = mmap_key(
        "runner_jobs_processed",
        "runner_jobs_processed_total",
        ["queue", "type"],
        ["mail", "email.send"],
        "Jobs acked",
    )
    values.write_value(key, value, 0.0)
    values.close()


def test_an_empty_file_being_created_is_left_for_the_next_scrape(tmp_path: Path) -> None:
    write_counter(tmp_path / "counter_101.db", 7.0)
    (tmp_path / "counter_102.db").write_bytes(b"")  # created, not yet grown

    with pytest.raises(struct.error):  # what prometheus-client's own reader does with it
        generate_latest(MultiProcessCollector(None, path=str(tmp_path)))  # type: ignore[no-untyped-call]

    registry = CollectorRegistry()
    metrics.multiprocess_collector(registry, str(tmp_path))
    text = generate_latest(registry).decode()
    assert 'runner_jobs_processed_total{queue="mail",type="email.send"} 7.0' in text
    assert metrics.settled_files(str(tmp_path)) == [str(tmp_path / "counter_101.db")]

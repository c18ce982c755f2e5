"""Peer libraries run under the same workload as runner (benchmarks/peers/base.py).

Each is installed by the `bench` extra (`pip install -e '.[dev,bench]'`); nothing here
imports a peer library until its measures run, so the harness works without them.
"""

from __future__ import annotations

import importlib
import importlib.util

from benchmarks.peers.base import Peer

# name -> (backend, module:class, modules it needs)
PEERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pgqueuer": (
        "postgres",
        "benchmarks.peers.pgqueuer_peer:PgQueuerPeer",
        ("pgqueuer", "asyncpg"),
    ),
    "pgqueuer_defaults": (
        "postgres",
        "benchmarks.peers.pgqueuer_peer:PgQueuerDefaultsPeer",
        ("pgqueuer", "asyncpg"),
    ),
    "procrastinate": (
        "postgres",
        "benchmarks.peers.procrastinate_peer:ProcrastinatePeer",
        ("procrastinate", "psycopg_pool"),
    ),
    "huey": ("sqlite", "benchmarks.peers.huey_peer:HueyPeer", ("huey",)),
}


def missing(names: list[str]) -> list[str]:
    """The modules the named peers need that are not installed."""
    needed = [module for name in names for module in PEERS[name][2]]
    return [module for module in needed if importlib.util.find_spec(module) is None]


def load(name: str) -> type[Peer]:
    module, _, attr = PEERS[name][1].partition(":")
    peer: type[Peer] = getattr(importlib.import_module(module), attr)
    return peer

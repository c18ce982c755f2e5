"""Shared fixtures: a database per test on SQLite and on PostgreSQL, and a project copy.

PostgreSQL: each test run creates its own database and drops it afterwards; each test
gets its own schema in it. With CI=true an unreachable server fails the run.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "RUNNER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _admin_engine() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test run; dropped at the end."""
    name = f"runner_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable at {PG_ADMIN_URL} with CI=true: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}")
    url = sa.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _pg_schema_url(database_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            leaked = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'runner' AND state = 'idle in transaction'"
            ).scalar()
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()
        assert not leaked, f"{leaked} runner connection(s) left idle in transaction"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for one test, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runner.db'}"
        return
    database = request.getfixturevalue("pg_database")
    yield from _pg_schema_url(database)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example project (pipelines, plugins, schemas) in a temporary folder."""
    root = tmp_path / "proj"
    for folder in ("pipelines", "plugins", "schemas"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own, for tests that run on PostgreSQL only."""
    yield from _pg_schema_url(pg_database)

"""The schema in PostgreSQL: `anchorpipe db upgrade|status`, concurrent upgrades, a reversible migration."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from pipelines.state import schema
from tests.conftest import sql


@pytest.fixture
def empty_db(postgres_url):
    name = f"e_{uuid.uuid4().hex[:12]}"
    admin = schema.psycopg_url(postgres_url)
    sql(admin, f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    sql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cli(url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": url, "ANCHORPIPE_REDIS_URL": "redis://127.0.0.1:1/0",
           "ANCHORPIPE_ARCHIVE": "/tmp/unused"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "db", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_status_upgrade_and_status_again(empty_db):
    out, _ = (p := cli(empty_db, "status")).communicate(timeout=60)
    assert p.returncode == 1 and "none (empty)" in out and schema.head() in out
    out, err = (p := cli(empty_db, "upgrade")).communicate(timeout=60)
    assert p.returncode == 0 and f"schema at revision {schema.head()} (was empty)" in out, err
    out, _ = (p := cli(empty_db, "status")).communicate(timeout=60)
    assert p.returncode == 0
    out, _ = (p := cli(empty_db, "upgrade")).communicate(timeout=60)
    assert p.returncode == 0 and out.strip() == f"schema at revision {schema.head()}"  # nothing to do


def test_hosts_upgrading_at_once_all_succeed(empty_db):
    procs = [cli(empty_db, "upgrade") for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert schema.current(empty_db) == schema.head()


@pytest.mark.system
def test_an_unreachable_database_is_a_clear_error_not_a_traceback():
    out, err = (p := cli("postgresql://postgres@127.0.0.1:1/none", "upgrade")).communicate(timeout=60)
    assert p.returncode == 2 and err.startswith("error: PostgreSQL failed") and "Traceback" not in err


def test_the_migration_can_be_reversed_and_replayed(empty_db):
    from alembic import command

    schema.upgrade(empty_db)
    sql(empty_db, "INSERT INTO agencies VALUES ('a', 1)")
    command.downgrade(schema._config(empty_db), "base")
    assert sql(empty_db, "SELECT to_regclass('records')") == [(None,)]
    schema.upgrade(empty_db)
    assert sql(empty_db, "SELECT count(*) FROM agencies") == [(0,)]

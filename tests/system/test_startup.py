"""Service start-up: a process that cannot pass its checks (Sentry, settings, schema, durability) stops
with one line saying why and exit status 78 (EX_CONFIG), before it serves anything; none goes on without them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest

from pipelines.demo.services import free_port
from pipelines.errors import EXIT_CONFIG
from pipelines.state.schema import psycopg_url

pytestmark = pytest.mark.system


@pytest.fixture
def empty_database(postgres_url):
    """A database with no schema: what a new deployment has before `anchorpipe db upgrade`."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(psycopg_url(postgres_url), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield psycopg_url(postgres_url).rsplit("/", 1)[0] + "/" + name


def service_env(database_url: str, redis_url: str, tmp_path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANCHORPIPE_", "SENTRY_"))}
    env.update(ANCHORPIPE_DATABASE_URL=database_url, ANCHORPIPE_REDIS_URL=redis_url,
               ANCHORPIPE_ARCHIVE=str(tmp_path / "archive"), **more)
    return env


def worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "seal", "-c", "1",
                           "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
                          env=env, capture_output=True, text=True, timeout=120)


def api(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uvicorn", "pipelines.api.app:app", "--host", "127.0.0.1",
                           "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120)


def one_line(res: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = [ln for ln in res.stderr.splitlines() if "cannot start" in ln]
    assert res.returncode == EXIT_CONFIG, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1 and all(w in lines[0] for w in words), res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


def test_a_worker_on_a_database_without_the_schema_refuses_to_start(empty_database, redis_url, tmp_path):
    res = worker(service_env(empty_database, redis_url, tmp_path))
    one_line(res, "anchorpipe worker", "schema", "anchorpipe db upgrade")


def test_the_api_on_a_database_without_the_schema_refuses_to_start(empty_database, redis_url, tmp_path):
    res = api(service_env(empty_database, redis_url, tmp_path))
    one_line(res, "anchorpipe web", "schema", "anchorpipe db upgrade")


def test_a_sentry_that_cannot_start_stops_the_worker_and_the_api(empty_database, redis_url, tmp_path):
    """Sentry is checked first and the schema after it: a bad DSN is what they report, not skipped past."""
    env = service_env(empty_database, redis_url, tmp_path, SENTRY_DSN="not a dsn")
    one_line(worker(env), "SENTRY_DSN")
    one_line(api(env), "SENTRY_DSN")


def test_invalid_settings_stop_every_celery_process_with_one_line(redis_url, tmp_path):
    env = service_env("postgresql://127.0.0.1:1/x", redis_url, tmp_path, ANCHORPIPE_METRICS_PORT="9999")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    one_line(worker(env), "PROMETHEUS_MULTIPROC_DIR")

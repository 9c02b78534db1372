"""Shared fixtures: services the tests need are started here, on free ports, in temp folders.

The suite has two tiers (tests/README.md). ``system`` tests start processes or servers: any test using
one of :data:`SERVER_FIXTURES` (directly or through another fixture), or marked ``system`` itself.
Every other test is ``unit``, and is held to it: starting a process or listening on a socket in a
unit test fails it, naming the tier to move it to.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid

import pytest

from pipelines.config import Settings
from pipelines.errors import ConfigError
from pipelines.ops.logs import configure as configure_logs

from pipelines.demo.services import moto_s3

#: Fixtures that start a server; a test using any of them is a system test.
SERVER_FIXTURES = frozenset({"s3_endpoint", "tsa", "evm_node", "redis_url", "postgres_url"})


#: The modules whose tests take longest (each starts a whole stack): run first, so that the two workers
#: end together instead of one waiting on a minute-long test picked up last (longest first).
LONGEST_FIRST = ("test_supervised", "test_stack", "test_doc_commands", "test_state_faults", "test_config_check")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("hosts"):  # its own tier (`make test-hosts`), in neither of make test's
            continue
        system = item.get_closest_marker("system") or SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if system and not item.get_closest_marker("system"):
            item.add_marker(pytest.mark.system)
        elif not system:
            item.add_marker(pytest.mark.unit)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1] if item.module else "",
                                         len(rank)))  # stable: the rest keep their order


class UnitTierBreach(AssertionError):
    """A unit test started a process or a server."""


def _refuse(what: str):  # type: ignore[no-untyped-def]
    def refused(*_: object, **__: object) -> None:
        raise UnitTierBreach(f"a unit test {what}: mark it @pytest.mark.system (tests/README.md)")
    return refused


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    """Around a unit test and every fixture it sets up (module and session ones included), starting a
    process (fork, exec) or listening on a socket fails it."""
    if item.get_closest_marker("unit") is None:
        yield
        return
    import _posixsubprocess
    import subprocess

    patches = [(subprocess, "_fork_exec", _refuse("started a process")),
               (subprocess, "_USE_POSIX_SPAWN", False),  # every start goes through _fork_exec
               (_posixsubprocess, "fork_exec", _refuse("started a process")),  # multiprocessing's way
               (os, "fork", _refuse("forked")),
               (socket.socket, "listen", _refuse("listened on a socket"))]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, value in patches:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's standalone S3 server, spoken to over HTTP like any S3 endpoint."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A fresh bucket with Object Lock enabled; returns (endpoint, bucket name)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"t-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return s3_endpoint, name


@pytest.fixture(scope="session")
def tsa(tmp_path_factory):
    """A real RFC 3161 TSA (OpenSSL's ``ts -reply`` behind HTTP): its URL and its pinned root certificates."""
    from pipelines.core.tsa import load_roots
    from pipelines.demo.services import tsa_server

    with tsa_server(tmp_path_factory.mktemp("tsa")) as (url, root):
        yield url, load_roots(root.read_bytes())


@pytest.fixture(scope="session")
def evm_node(tmp_path_factory):
    """A real EVM node (anvil, chain id 31337, a block per transaction): its JSON-RPC URL."""
    from pipelines.demo.services import anvil_node

    with anvil_node(tmp_path_factory.mktemp("anvil")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A private redis-server with AOF, on a free port."""
    from pipelines.demo.services import redis_server

    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def clean_redis(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.close()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A private PostgreSQL (initdb in a temp folder, free port), as the SQL sources and the state use it."""
    from pipelines.demo.services import postgres_server

    try:
        with postgres_server(tmp_path_factory.mktemp("pg")) as url:
            yield url.replace("postgresql://", "postgresql+psycopg://")
    except ConfigError as exc:  # pragma: no cover - `make test` installs PostgreSQL first
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def state_template(postgres_url):
    """A database at this version's schema, copied for each test (CREATE DATABASE ... TEMPLATE)."""
    import psycopg

    from pipelines.state.schema import psycopg_url, upgrade

    with psycopg.connect(psycopg_url(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE DATABASE anchorpipe_template")
    url = postgres_url.rsplit("/", 1)[0] + "/anchorpipe_template"
    upgrade(url)
    return url


@pytest.fixture
def db(postgres_url, state_template):
    """A fresh database at this version's schema, dropped after the test; yields its URL."""
    import psycopg

    from pipelines.state.schema import psycopg_url

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(psycopg_url(postgres_url), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE anchorpipe_template")
    yield psycopg_url(postgres_url).rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(psycopg_url(postgres_url), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sql(url: str, query: str, params: object = None) -> list[tuple]:
    """Run one statement on the database at ``url`` (for tests that reach past the port); its rows."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def accepted_ids(state, agency: str) -> set[str]:
    """Every record id accepted for ``agency``."""
    return {r[0] for r in sql(state.url, "SELECT id FROM records WHERE agency = %s", (agency,))}


def pending_ids(state, agency: str) -> list[str]:
    """The ids of ``agency``'s records waiting to be sealed, oldest first."""
    return [r[0] for r in sql(state.url, "SELECT id FROM records WHERE agency = %s AND batch_id IS NULL "
                                         "ORDER BY accepted_ms, id", (agency,))]


def pull_runner(cfg, state, **options):  # type: ignore[no-untyped-def]
    """The pull stage's runner of source ``cfg``, with the connector the runtime would build for it."""
    from pipelines.runtime import build_source
    from pipelines.stages.pull import SourceRunner

    return SourceRunner(cfg, state, build_source(cfg, state), **options)


def retry_source_now(state, name: str) -> None:
    """End a source's back-off (as if its delay had passed)."""
    sql(state.url, "UPDATE sources SET next_at = 0 WHERE name = %s", (name,))


def reset_state(state) -> None:
    """Empty every table of the state (as a fresh install)."""
    sql(state.url, "TRUNCATE records, batches, sources, source_units, quarantine, dead_letters, agencies, api_keys")
    sql(state.url, "UPDATE counters SET value = 0")


@pytest.fixture
def json_lines(capsys, tmp_path):
    """JSON logging to the captured stderr; yields a reader of the lines logged so far. (Logging is set up
    when the test starts: capsys replaces sys.stderr only then.)"""
    started = []

    def read() -> list[dict]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]

    def start() -> None:
        configure_logs(Settings(database_url="postgresql://x/y", redis_url="redis://x", archive=str(tmp_path)))
        started.append(True)

    read.start = start  # type: ignore[attr-defined]
    yield read
    for h in [h for h in logging.getLogger().handlers if h.get_name() == "anchorpipe"]:
        logging.getLogger().removeHandler(h)

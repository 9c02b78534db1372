"""Shared fixtures: services the tests need are started here, on free ports, in temp folders."""

from __future__ import annotations

import uuid

import pytest

from pipelines.demo.services import moto_s3


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
    """A private PostgreSQL (initdb in a temp folder, free port), run as the postgres user."""
    import glob
    import shutil
    import subprocess

    from pipelines.demo.services import child, free_port

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    import tempfile
    from pathlib import Path

    data = Path(tempfile.mkdtemp(prefix="anchorpipe-pg-"))  # outside pytest's root-only folders
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(["runuser", "-u", "postgres", "--", f"{bins[-1]}/initdb", "-D", str(data / "db"), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    port = free_port()
    args = ["runuser", "-u", "postgres", "--", f"{bins[-1]}/postgres", "-D", str(data / "db"), "-p", str(port),
            "-k", str(data), "-h", "127.0.0.1"]
    try:
        with child(args, port, tmp_path_factory.mktemp("pglog") / "pg.log"):
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        shutil.rmtree(data, ignore_errors=True)

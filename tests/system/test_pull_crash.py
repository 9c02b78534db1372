"""kill -9 a pull between accepting a page and storing its cursor, for every connector.

The pull runs as `anchorpipe source run NAME --once` in its own process, stalls at
the fault point, is killed with SIGKILL, and is run again; then the batches are
sealed, anchored and archived, and every source record must have exactly one proof.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from pipelines.archive import directory
from pipelines.config import Settings
from pipelines.stages.batches import Pipeline
from pipelines.state.postgres import PostgresState as State
from tests.conftest import accepted_ids
from pipelines.ledger.tlog import TransparencyLog
from tests.support.faults import FaultyStore
from tests.support.feed_server import Feed
from tests.unit.ledger.test_tlog import SIGNER

N = 230


def items(n: int) -> list[dict]:
    return [{"rec_id": f"p{i}", "body": {"i": i}} for i in range(n)]


def run_pull(env: dict, name: str, fault: bool, tmp: Path) -> subprocess.Popen:
    extra = {"ANCHORPIPE_FAULT_PAUSE": "pull.accepted", "ANCHORPIPE_FAULT_DIR": str(tmp)} if fault else {}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "source", "run", name, "--once"],
                            env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)


def kill_at_fault_point(proc: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the pull never reached its fault point"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def setup(request, tmp_path, db, clean_redis, monkeypatch):
    """(env for the CLI, source name) for the connector named by the test's parameter."""
    kind = request.param
    env = {**os.environ, "ANCHORPIPE_REDIS_URL": clean_redis, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_ARCHIVE": str(tmp_path / "archive"),
           "ANCHORPIPE_SOURCES": str(tmp_path / "sources.toml"), "ANCHORPIPE_SOURCE_LOCK_TTL": "1",
           "FEED_TOKEN": "s3cret"}
    common = 'agency = "dept-c"\nid_field = "rec_id"\npage_size = 100\n'
    if kind == "http":
        feed = Feed(items(N))
        request.addfinalizer(feed.stop)
        body = (f'kind = "http"\nurl = "{feed.url}"\ncursor_param = "after"\nitems_path = "data.items"\n'
                'next_cursor_path = "data.next"\ncontent_field = "body"\nauth_header = "X-Token"\n'
                'auth_secret_env = "FEED_TOKEN"\n')
    elif kind == "s3":
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        env.update({k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(
            Bucket=bucket, Key="drop/x.jsonl", Body="".join(json.dumps(r) + "\n" for r in items(N)).encode())
        body = f'kind = "s3"\nbucket = "{bucket}"\nprefix = "drop/"\nendpoint_url = "{endpoint}"\ncontent_field = "."\n'
    elif kind == "sql":
        url = f"sqlite:///{tmp_path / 'a.db'}"
        engine = sa.create_engine(url)
        meta = sa.MetaData()
        table = sa.Table("t", meta, sa.Column("rec_id", sa.String, primary_key=True), sa.Column("seq", sa.Integer))
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"rec_id": f"p{i}", "seq": i} for i in range(N)])
        body = f'kind = "sql"\nurl = "{url}"\ntable = "t"\ncursor_column = "seq"\ntiebreak_column = "rec_id"\ncontent_field = "."\n'
    else:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        (inbox / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items(N)))
        body = f'kind = "folder"\npath = "{inbox}"\nmin_age = 0\ncontent_field = "."\n'
    (tmp_path / "sources.toml").write_text(f'[[source]]\nname = "src"\n{common}{body}')
    return env, "src"


@pytest.mark.parametrize("setup", ["http", "s3", "sql", "folder"], indirect=True)
def test_kill_9_between_accept_and_cursor_commit(setup, tmp_path, db, clean_redis):
    env, name = setup
    proc = run_pull(env, name, fault=True, tmp=tmp_path)
    kill_at_fault_point(proc, tmp_path / "pull.accepted")
    state = State.connect(db)
    assert state.source_cursor(name) is None  # killed before the first commit point
    assert state.pending_depth() == 100  # the first page was accepted, durably
    time.sleep(1.1)  # the dead run's lock expires
    again = run_pull(env, name, fault=False, tmp=tmp_path)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert f"{N - 100} accepted, 100 already known" in out
    # Every source record was accepted once; now seal, anchor and archive: one proof each.
    assert state.pending_depth() == N and len(accepted_ids(state, "dept-c")) == N
    cfg = Settings(database_url=db, redis_url=clean_redis, archive="memory", batch_interval=0.001)
    p = Pipeline(cfg, state, FaultyStore(), TransparencyLog.create(FaultyStore(), [SIGNER]))
    p.archive(p.anchor(p.seal_ripe()))
    proofs = [directory.fetch_proof(p.store, "dept-c", f"p{i}") for i in range(N)]
    assert len({(pr.batch.id, pr.batch.index) for pr in proofs}) == N
    assert state.archived_records() == N

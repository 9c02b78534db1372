"""Pull sources against real peers: an HTTP feed server, S3 over HTTP (moto), SQLite and PostgreSQL, a folder."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from pipelines.errors import ConfigError
from pipelines.sources.config import load_sources
from pipelines.state.postgres import PostgresState as State
from tests.conftest import pull_runner, accepted_ids, retry_source_now
from tests.conftest import pending_ids as pending_of
from tests.support.feed_server import Feed


def records(n: int, start: int = 0) -> list[dict]:
    return [{"rec_id": f"r{i}", "body": {"n": i, "text": "é" * (i % 5)}} for i in range(start, start + n)]


def pending_ids(state: State, agency: str = "dept-x") -> list[str]:
    return pending_of(state, agency)


def write_config(tmp: Path, text: str) -> dict:
    path = tmp / "sources.toml"
    path.write_text(text)
    return load_sources(path)


@pytest.fixture
def state(db, clean_redis):
    return State.connect(db)


@pytest.fixture
def feed(monkeypatch):
    monkeypatch.setenv("FEED_TOKEN", "s3cret")
    server = Feed(records(250))
    yield server
    server.stop()


def http_config(tmp: Path, url: str, **extra: object) -> dict:
    more = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    return write_config(tmp, f"""
[[source]]
name = "permits"
agency = "dept-x"
kind = "http"
interval = 5
page_size = 100
url = "{url}"
cursor_param = "after"
items_path = "data.items"
next_cursor_path = "data.next"
id_field = "rec_id"
content_field = "body"
auth_header = "X-Token"
auth_secret_env = "FEED_TOKEN"
timeout = 0.5
{more}""")


def test_http_feed_pages_through_everything_once(tmp_path, state, feed):
    runner = pull_runner(http_config(tmp_path, feed.url)["permits"], state)
    result = runner.run()
    assert (result.status, result.accepted, result.pages) == ("ok", 250, 4)
    assert accepted_ids(state, "dept-x") == {f"r{i}" for i in range(250)}
    feed.records += records(30, 250)
    assert runner.run().accepted == 30  # only what is new
    assert len(pending_ids(state)) == 280 == len(set(pending_ids(state)))


def test_http_feed_retries_5xx_429_slow_and_truncated_pages(tmp_path, state, feed):
    feed.faults = [("status", 500), ("status", 429, 0), ("slow", 1.0), ("truncate",), ("status", 503)]
    result = pull_runner(http_config(tmp_path, feed.url, retries=6)["permits"], state).run()
    assert result.status == "ok" and result.accepted == 250
    assert feed.requests >= 4 + 5


def test_http_feed_honours_retry_after(tmp_path, state, feed):
    feed.faults = [("status", 429, 1)]
    t = time.monotonic()
    assert pull_runner(http_config(tmp_path, feed.url)["permits"], state).run().status == "ok"
    assert time.monotonic() - t >= 1.0


def test_a_page_failing_half_way_keeps_what_was_committed(tmp_path, state, feed):
    runner = pull_runner(http_config(tmp_path, feed.url, retries=1)["permits"], state)
    feed.faults = [None, ("status", 500), ("status", 500)]  # page 1 fine, page 2 keeps failing
    result = runner.run()
    assert result.status == "failed" and "500" in result.error
    assert accepted_ids(state, "dept-x") == {f"r{i}" for i in range(100)}
    assert runner.cursor() == "99"
    # The source is retried with growing delay; once the delay passes and the feed is back, it goes on.
    assert runner.run().status == "backoff"
    retry_source_now(state, "permits")
    assert runner.run().accepted == 150
    assert len(pending_ids(state)) == 250


def test_a_source_down_for_a_while_then_back(tmp_path, state, feed):
    runner = pull_runner(http_config(tmp_path, "http://127.0.0.1:9/records", retries=0)["permits"], state)
    first = runner.run()
    assert first.status == "failed"
    retry_source_now(state, "permits")
    runner.run()
    info = state.source_status("permits")
    assert info["failures"] == "2" and int(info["next_at"]) > time.time() * 1000 + 8000  # 10 s after 2 failures
    runner = pull_runner(http_config(tmp_path, feed.url)["permits"], state)
    retry_source_now(state, "permits")
    assert runner.run().accepted == 250
    assert state.source_status("permits")["failures"] == "0"


def test_bad_items_are_quarantined_and_never_block_the_rest(tmp_path, state, feed):
    feed.records[10] = {"body": {"no": "id"}}
    feed.records[20] = {"rec_id": 5, "body": {"n": 20}}  # an int id is taken as its text
    feed.records[30] = {"rec_id": "r31", "body": {"different": True}}  # r31 again below, other content
    runner = pull_runner(http_config(tmp_path, feed.url)["permits"], state)
    result = runner.run()
    assert result.status == "ok" and result.quarantined == 2
    q = {d["position"]: d for d in runner.quarantine()}
    assert any("item 10" in p and "lacks field" in d["reason"] for p, d in q.items())
    assert any("appears again" in d["reason"] or "already accepted" in d["reason"] for d in q.values())
    assert "5" in accepted_ids(state, "dept-x") and "r249" in accepted_ids(state, "dept-x")
    # Replaying changes nothing while the cause remains; the items stay listed.
    assert runner.replay() == (0, 2) and len(runner.quarantine()) == 2


def test_a_conflicting_record_is_quarantined_not_blocking(tmp_path, state, feed):
    from pipelines.intake.submit import store_records
    from pipelines.intake.records import parse_record

    store_records(state, "dept-x", [parse_record({"id": "r7", "content": {"other": 1}})])
    runner = pull_runner(http_config(tmp_path, feed.url)["permits"], state)
    result = runner.run()
    assert result.quarantined == 1 and result.accepted == 249
    assert "already accepted" in runner.quarantine()[0]["reason"]


def test_two_ticks_racing_on_one_source_run_it_once(tmp_path, state, feed):
    feed.faults = [("slow", 0.3)]
    cfg = http_config(tmp_path, feed.url)["permits"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(pull_runner(cfg, state).run())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results) == ["locked", "ok"]
    assert len(pending_ids(state)) == 250


def test_the_lock_expires_when_its_holder_dies(tmp_path, state, feed):
    cfg = http_config(tmp_path, feed.url)["permits"]
    assert state.lock_source("permits", "dead-holder", 300)
    assert pull_runner(cfg, state).run().status == "locked"
    time.sleep(0.4)
    assert pull_runner(cfg, state).run().status == "ok"


def test_backpressure_pauses_pulling(tmp_path, state, feed):
    cfg = http_config(tmp_path, feed.url)["permits"]
    assert pull_runner(cfg, state, max_pending=100).run().accepted == 250
    feed.records += records(10, 250)
    assert pull_runner(cfg, state, max_pending=100).run().status == "paused"
    assert len(pending_ids(state)) == 250


def test_s3_prefix_objects_are_read_once_and_streamed(tmp_path, state, s3_bucket):
    endpoint, bucket = s3_bucket
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    big = "".join(json.dumps(r) + "\n" for r in records(3000))  # about 150 kB, read in pages of 400
    s3.put_object(Bucket=bucket, Key="in/a.jsonl", Body=big.encode())
    s3.put_object(Bucket=bucket, Key="in/b.csv", Body=b"rec_id,name\nc1,Ann\nc2,\"Bo, Jr\"\nc3,Cy\n")
    s3.put_object(Bucket=bucket, Key="in/ignored.txt", Body=b"not records")
    cfg = write_config(tmp_path, f"""
[[source]]
name = "bucket"
agency = "dept-s3"
kind = "s3"
bucket = "{bucket}"
prefix = "in/"
endpoint_url = "{endpoint}"
page_size = 400
id_field = "rec_id"
content_field = "."
""")["bucket"]
    runner = pull_runner(cfg, state)
    result = runner.run()
    assert (result.status, result.accepted) == ("ok", 3003) and result.pages >= 8
    assert {"c1", "c2", "c3", "r0", "r2999"} <= accepted_ids(state, "dept-s3")
    assert runner.run().accepted == 0  # every object is done (key and ETag)
    s3.put_object(Bucket=bucket, Key="in/b.csv", Body=b"rec_id,name\nc1,Ann\nc4,Di\n")  # a new version
    again = runner.run()
    assert (again.accepted, again.duplicates) == (1, 1)


def _sql_rows(engine: sa.Engine) -> sa.Table:
    meta = sa.MetaData()
    table = sa.Table("permits", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("updated_at", sa.DateTime), sa.Column("holder", sa.String(50)),
                     sa.Column("fee", sa.Numeric(10, 2)))
    meta.drop_all(engine)
    meta.create_all(engine)
    t0 = dt.datetime(2026, 11, 1, 9, 0, 0)
    with engine.begin() as conn:  # many rows share a timestamp: the tie-breaker matters
        conn.execute(table.insert(), [{"id": i, "updated_at": t0 + dt.timedelta(seconds=i // 7),
                                       "holder": f"h{i}", "fee": i + 0.5} for i in range(1, 301)])
    return table


def _sql_source(tmp: Path, url: str) -> dict:
    return write_config(tmp, f"""
[[source]]
name = "db"
agency = "dept-sql"
kind = "sql"
url = "{url}"
table = "permits"
cursor_column = "updated_at"
tiebreak_column = "id"
page_size = 64
content_field = "."
""")["db"]


def _check_sql(tmp: Path, state: State, url: str) -> None:
    engine = sa.create_engine(url)
    table = _sql_rows(engine)
    runner = pull_runner(_sql_source(tmp, url), state)
    assert runner.run().accepted == 300
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 301, "updated_at": dt.datetime(2026, 11, 2), "holder": "new", "fee": 1}])
    assert runner.run().accepted == 1
    assert accepted_ids(state, "dept-sql") == {str(i) for i in range(1, 302)}
    digest = state.content_digests("dept-sql", ["8"])["8"].hex()
    from pipelines.core.commitment import content_sha256

    assert digest == content_sha256({"id": 8, "updated_at": "2026-11-01T09:00:01", "holder": "h8",
                                     "fee": "8.50"}).hex()
    engine.dispose()


def test_sql_table_on_sqlite(tmp_path, state):
    _check_sql(tmp_path, state, f"sqlite:///{tmp_path / 'agency.db'}")


def test_sql_table_on_postgresql(tmp_path, state, postgres_url):
    _check_sql(tmp_path, state, postgres_url)


def folder_source(tmp: Path, inbox: Path, min_age: float) -> dict:
    return write_config(tmp, f"""
[[source]]
name = "drop"
agency = "dept-f"
kind = "folder"
path = "{inbox}"
min_age = {min_age}
page_size = 50
id_field = "rec_id"
content_field = "."
""")["drop"]


def test_drop_folder_picks_up_complete_files_and_moves_them_aside(tmp_path, state):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(120)))
    (inbox / "002.csv").write_text("rec_id,x\nz1,1\nz2,2\n")
    (inbox / "003.jsonl.tmp").write_text('{"rec_id": "half"')  # still being written
    (inbox / ".004.jsonl").write_text('{"rec_id": "hidden"}\n')
    runner = pull_runner(folder_source(tmp_path, inbox, 0), state)
    result = runner.run()
    assert result.accepted == 122 and result.status == "ok"
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["001.jsonl", "002.csv"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [".004.jsonl", "003.jsonl.tmp"]
    (inbox / "003.jsonl.tmp").rename(inbox / "003.jsonl")
    (inbox / "003.jsonl").write_text('{"rec_id": "whole"}\n')
    assert runner.run().accepted == 1


def test_young_files_wait(tmp_path, state):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"rec_id": "a"}\n')
    assert pull_runner(folder_source(tmp_path, inbox, 30), state).run().accepted == 0


@pytest.mark.parametrize("text,message", [
    ('[[source]]\nname = "x"\nagency = "a"\nkind = "ftp"\n', "kind"),
    ('[[source]]\nname = "x"\nagency = "a"\nkind = "http"\n', 'source "x".url: Field required'),
    ('[[source]]\nname = "Bad Name"\nagency = "a"\nkind = "folder"\npath = "/tmp"\n', "name"),
    ('[[source]]\nname = "x"\nagency = "a"\nkind = "folder"\npath = "/tmp"\ninterval = -1\n', "interval"),
    ('[[source]]\nname = "x"\nagency = "a"\nkind = "folder"\npath = "/t"\n[[source]]\nname = "x"\n'
     'agency = "a"\nkind = "folder"\npath = "/t"\n', "duplicate"),
    ("not toml [", "not TOML"),
])
def test_bad_sources_files_are_refused_clearly(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        write_config(tmp_path, text)

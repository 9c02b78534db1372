"""Benchmark: records/s pulled and accepted per connector, beside the push intake measured in the same run.

Each connector reads 20,000 generated records from a real peer (an HTTP feed
server, S3 over HTTP via moto, SQLite, a folder) into a private PostgreSQL;
the push baseline sends the same records through the intake API in-process
(FastAPI's test client, no network), so the ratio shows what pulling costs
beyond the shared intake path.

    python bench/pull.py [--records 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import boto3
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the feed server lives in tests/

from pipelines.runtime import build_source
from pipelines.stages.pull import SourceRunner
from pipelines.demo.services import moto_s3, postgres_server
from pipelines.sources.config import load_sources
from pipelines.state.postgres import PostgresState as State
from pipelines.state.schema import upgrade


def items(n: int) -> list[dict]:
    return [{"rec_id": f"p{i}", "body": {"i": i, "holder": f"holder {i % 977}"}} for i in range(n)]


def push_rate(url: str, tmp: Path, records: list[dict]) -> float:
    from fastapi.testclient import TestClient

    from pipelines.api.app import create_app
    from pipelines.intake.auth import add_agency
    from pipelines.config import Settings

    state = State.connect(url)
    key = add_agency(state, "push-agency")
    client = TestClient(create_app(Settings(database_url=url, redis_url="redis://127.0.0.1:1/0", archive=str(tmp / "archive"))))
    t = time.perf_counter()
    for start in range(0, len(records), 1000):
        body = "\n".join(json.dumps({"id": r["rec_id"], "content": r["body"]}) for r in records[start:start + 1000])
        resp = client.post("/v1/records", content=body, headers={"Authorization": f"Bearer {key}",
                                                                 "Content-Type": "application/x-ndjson"})
        assert resp.status_code == 202
    return len(records) / (time.perf_counter() - t)


def pull_rate(url: str, config: str, tmp: Path, n: int) -> float:
    path = tmp / "sources.toml"
    path.write_text(config)
    (cfg,) = load_sources(path).values()
    state = State.connect(url)
    t = time.perf_counter()
    result = SourceRunner(cfg, state, build_source(cfg, state)).run(max_pages=10_000)
    elapsed = time.perf_counter() - t
    assert result.accepted == n, (result.status, result.accepted, result.quarantined, result.error)
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    n = ap.parse_args().records
    recs = items(n)
    common = 'id_field = "rec_id"\ncontent_field = "body"\npage_size = 2000\n'
    with tempfile.TemporaryDirectory() as d, postgres_server(Path(d)) as url, moto_s3(Path(d)) as endpoint:
        tmp = Path(d)
        upgrade(url)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        os.environ["FEED_TOKEN"] = "s3cret"
        results = {"push (intake API)": push_rate(url, tmp, recs)}
        from tests.support.feed_server import Feed

        feed = Feed(recs)
        results["http feed"] = pull_rate(url, f'[[source]]\nname = "h"\nagency = "a-http"\nkind = "http"\n'
                                         f'url = "{feed.url}"\ncursor_param = "after"\nitems_path = "data.items"\n'
                                         'next_cursor_path = "data.next"\nauth_header = "X-Token"\n'
                                         f'auth_secret_env = "FEED_TOKEN"\n{common}', tmp, n)
        feed.stop()
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="in/x.jsonl", Body="".join(json.dumps(r) + "\n" for r in recs).encode())
        results["s3 prefix"] = pull_rate(url, f'[[source]]\nname = "s"\nagency = "a-s3"\nkind = "s3"\n'
                                         f'bucket = "bench"\nprefix = "in/"\nendpoint_url = "{endpoint}"\n{common}',
                                         tmp, n)
        engine = sa.create_engine(f"sqlite:///{tmp / 'b.db'}")
        meta = sa.MetaData()
        t = sa.Table("t", meta, sa.Column("rec_id", sa.String, primary_key=True), sa.Column("seq", sa.Integer),
                     sa.Column("holder", sa.String))
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(t.insert(), [{"rec_id": r["rec_id"], "seq": i, "holder": r["body"]["holder"]}
                                      for i, r in enumerate(recs)])
        results["sql table (SQLite)"] = pull_rate(
            url, f'[[source]]\nname = "q"\nagency = "a-sql"\nkind = "sql"\nurl = "sqlite:///{tmp / "b.db"}"\n'
                 f'table = "t"\ncursor_column = "seq"\ntiebreak_column = "rec_id"\nid_field = "rec_id"\n'
                 'content_field = "."\npage_size = 2000\n', tmp, n)
        inbox = tmp / "inbox"
        inbox.mkdir()
        for k in range(0, n, 5000):
            (inbox / f"{k:06d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[k:k + 5000]))
        results["drop folder"] = pull_rate(url, f'[[source]]\nname = "f"\nagency = "a-f"\nkind = "folder"\n'
                                           f'path = "{inbox}"\nmin_age = 0\n{common}', tmp, n)
    base = results["push (intake API)"]
    print(f"{'path':<22} {'records/s':>10} {'ratio to push':>14}")
    for name, rate in results.items():
        print(f"{name:<22} {rate:>10,.0f} {rate / base:>14.2f}")


if __name__ == "__main__":
    main()

"""Benchmark: the whole pipeline, records pushed over HTTP until every proof is archived.

Starts the local stack (PostgreSQL, Redis, moto S3, API, workers, beat), then
for each offered rate pushes records for a few seconds and reports the sustained
end-to-end rate and accept→archived latency percentiles. Three baselines are
measured in the same run on the same servers: a pipelined Redis write loop (what
storing records cost when Redis held them), bulk idempotent inserts into
PostgreSQL (what storing them costs at the least now), and trivial Celery tasks
(what one message costs).

    python bench/e2e.py [--seconds 8] [--rates 2000,5000,max]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import redis

from pipelines.intake.auth import add_agency
from pipelines.demo.localstack import local_stack
from pipelines.state.postgres import PostgresState as State

CHUNK = 1_000


def redis_baseline(url: str, n: int = 200_000) -> float:
    r = redis.Redis.from_url(url)
    t = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.hset("bench:rec", f"r{i}", "x" * 100)
        pipe.rpush("bench:pending", f"r{i}")
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    rate = n / (time.perf_counter() - t)
    r.delete("bench:rec", "bench:pending")
    return rate


def postgres_baseline(url: str, n: int = 200_000) -> float:
    """Bulk idempotent inserts of (agency, id, digest, salt) rows, 2,000 a transaction, as accepting does."""
    import os as _os

    import psycopg

    from pipelines.state.schema import psycopg_url

    with psycopg.connect(psycopg_url(url)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_records (agency text, id text, d bytea, s bytea, "
                     "PRIMARY KEY (agency, id))")
        conn.commit()
        t = time.perf_counter()
        for start in range(0, n, 2000):
            ids = [f"r{i}" for i in range(start, min(start + 2000, n))]
            conn.execute("INSERT INTO bench_records SELECT 'a', i, d, s FROM unnest(%s::text[], %s::bytea[], "
                         "%s::bytea[]) AS t(i, d, s) ON CONFLICT DO NOTHING",
                         (ids, [_os.urandom(32) for _ in ids], [_os.urandom(32) for _ in ids]))
            conn.commit()
        rate = n / (time.perf_counter() - t)
        conn.execute("DROP TABLE bench_records")
        conn.commit()
    return rate


def celery_baseline(url: str, n: int = 3_000) -> float:
    """Trivial tasks through the running 'stages' worker: messages per second, send to drained."""
    from celery import Celery

    client = Celery(broker=url)
    r = redis.Redis.from_url(url)
    t = time.perf_counter()
    for _ in range(n):
        client.send_task("celery.accumulate", args=[1], queue="reconcile")
    while r.llen("reconcile") or r.hlen("unacked"):
        time.sleep(0.01)
    return n / (time.perf_counter() - t)


def push(api: str, key: str, start: int, count: int, rate: float | None) -> None:
    """Push ``count`` records from ``start`` at ``rate`` records/s (None: as fast as possible)."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    t0 = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        for offset in range(0, count, CHUNK):
            if rate:
                delay = t0 + offset / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            ids = range(start + offset, start + min(offset + CHUNK, count))
            body = "\n".join(json.dumps({"id": f"b{i}", "content": {"n": i, "v": "payload"}}) for i in ids)
            resp = client.post(f"{api}/v1/records", content=body, headers=headers)
            resp.raise_for_status()


def run_rate(stack, state: State, key: str, rate: float | None, seconds: float, start: int) -> tuple[int, dict]:
    count = int((rate or 20_000) * seconds)
    before = state.archived_records()
    since = int(time.time() * 1000)
    t0 = time.perf_counter()
    threads = 1 if rate else 2
    share = count // threads
    pushers = [threading.Thread(target=push, args=(stack.api_url, key, start + k * share, share,
                                                    rate / threads if rate else None)) for k in range(threads)]
    for p in pushers:
        p.start()
    for p in pushers:
        p.join()
    pushed = time.perf_counter() - t0
    target = before + share * threads
    while state.archived_records() < target:
        time.sleep(0.05)
    total = time.perf_counter() - t0
    lat = state.accept_to_archived(since)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return start + count, {"offered": rate, "records": share * threads, "accept_rate": share * threads / pushed,
                           "e2e_rate": share * threads / total, "p50": q[49], "p99": q[98]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rates", default="2000,5000,max")
    args = ap.parse_args()
    rates = [None if r == "max" else float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp, local_stack(
        Path(tmp), batch_interval="0.25", batch_max="20000", allow_volatile_state="false"
    ) as stack:
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
        state = State.connect(stack.database_url)
        key = add_agency(state, "bench-agency")
        time.sleep(2)  # let workers and beat settle
        base_redis = redis_baseline(stack.redis_url)
        base_pg = postgres_baseline(stack.database_url)
        base_celery = celery_baseline(stack.redis_url)
        print(f"baseline: pipelined Redis writes        {base_redis:>10,.0f} records/s")
        print(f"baseline: bulk PostgreSQL inserts        {base_pg:>10,.0f} records/s")
        print(f"baseline: trivial Celery tasks           {base_celery:>10,.0f} tasks/s")
        print(f"{'offered/s':>10} {'records':>8} {'accepted/s':>11} {'end-to-end/s':>13} {'p50 s':>6} {'p99 s':>6}"
              f" {'e2e/redis':>10} {'e2e/pg':>7} {'e2e/celery':>11}")
        start = 0
        for rate in rates:
            start, res = run_rate(stack, state, key, rate, args.seconds, start)
            print(f"{'max' if rate is None else f'{rate:,.0f}':>10} {res['records']:>8,} {res['accept_rate']:>11,.0f} "
                  f"{res['e2e_rate']:>13,.0f} {res['p50']:>6.2f} {res['p99']:>6.2f} "
                  f"{res['e2e_rate'] / base_redis:>10.3f} {res['e2e_rate'] / base_pg:>7.3f} "
                  f"{res['e2e_rate'] / base_celery:>11.1f}")


if __name__ == "__main__":
    main()

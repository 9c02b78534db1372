"""Benchmark: does the pipeline's cost grow with the history it has archived?

Starts the local stack (PostgreSQL, Redis, moto S3, API, workers, beat). At each
level of history (0, then 1 million, then ``--history``), it offers 5,000
records/s through the HTTP API for ``--seconds`` and measures the sustained
end-to-end rate, the accept→archived p99, the archive index bytes one round
writes, Redis ``used_memory`` and PostgreSQL's size. History is loaded in bulk
between levels, as if archived earlier: rows in PostgreSQL (records in archived
batches) and entries in the archive index (a level-2 run), with no bundles
(nothing reads them). Its last line reads
``history N: p99 ratio X, throughput ratio Y, redis bytes/archived record Z``.

    python bench/history.py [--history 10000000] [--seconds 20] [--rate 5000]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import run_rate  # the same load generator as bench/e2e.py

from pipelines.archive import index
from pipelines.demo.localstack import local_stack
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState as State
from pipelines.state.schema import psycopg_url
from pipelines.storage import open_store

AGENCY = "bench-agency"
BATCH = 10_000


def load_history(stack, start: int, count: int, progress) -> None:
    """``count`` archived records of ``AGENCY`` (ids h<start>..), in PostgreSQL and the archive index."""
    salt, digest = secrets.token_bytes(32), secrets.token_bytes(32)
    now = int(time.time() * 1000)
    with psycopg.connect(psycopg_url(stack.database_url)) as conn:
        with conn.cursor().copy("COPY batches (id, agency, state, sealed_at, size, created_ms, updated_ms, root, "
                                "bundle) FROM STDIN") as copy:
            for b in range(start // BATCH, (start + count) // BATCH):
                copy.write_row((f"hist-{b:08d}", AGENCY, "archived", "2026-01-01T00:00:00Z", BATCH, now, now,
                                "00" * 32, f"proofs/{AGENCY}/hist-{b:08d}.ndjson"))
        with conn.cursor().copy("COPY records (agency, id, content_sha256, salt, accepted_ms, batch_id, leaf) "
                                "FROM STDIN") as copy:
            for i in range(start, start + count):
                copy.write_row((AGENCY, f"h{i}", digest, salt, now, f"hist-{i // BATCH:08d}", i % BATCH))
                if i % 200_000 == 0:
                    progress(f"  PostgreSQL: {i - start:,} of {count:,} rows")
        conn.execute("UPDATE counters SET value = value + %s WHERE name = 'archived_records'", (count,))
        conn.commit()
    # History archived over months has long been vacuumed; a bulk load has not, and autovacuum would
    # otherwise scan the fresh rows during the measurement.
    with psycopg.connect(psycopg_url(stack.database_url), autocommit=True) as conn:
        progress("  PostgreSQL: VACUUM ANALYZE")
        conn.execute("VACUUM (ANALYZE) records")
        conn.execute("VACUUM (ANALYZE) batches")
    progress("  archive index: merging the history into level 2")
    store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
    entries = [(f"h{i}", (f"hist-{i // BATCH:08d}", (i % BATCH) * 900, 899)) for i in range(start, start + count)]
    index.add_round(store, AGENCY, entries)
    del entries
    index.compact(store, AGENCY)  # history above √(N × level 0) goes to level 2, as compaction would put it


def round_bytes(stack) -> int:
    """Bytes one archive round of 5,000 records writes to the index (its run and the manifest)."""
    store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
    metered = _Metered(store)
    index.add_round(metered, "bench-probe", [(f"p{i}", ("probe", i, 1)) for i in range(5_000)])
    manifest = store.get(f"ids/{AGENCY}/manifest.json") or b""
    return metered.written - len(store.get("ids/bench-probe/manifest.json") or b"") + len(manifest)


class _Metered:
    def __init__(self, store) -> None:
        self.store, self.written = store, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def put_immutable(self, key, data):
        self.written += len(data)
        return self.store.put_immutable(key, data)

    def put_if_version(self, key, data, version):
        self.written += len(data)
        return self.store.put_if_version(key, data, version)


def measure(stack, state, key, rate, seconds, start, label) -> tuple[int, dict]:
    start, res = run_rate(stack, state, key, rate, seconds, start)
    r = redis.Redis.from_url(stack.redis_url)
    res["redis"] = r.info("memory")["used_memory"]
    with psycopg.connect(psycopg_url(stack.database_url)) as conn:
        res["pg_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        res["rows"] = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    res["round_bytes"] = round_bytes(stack)
    print(f"{label:>12} {res['records']:>8,} {res['e2e_rate']:>12,.0f} {res['p50']:>6.2f} {res['p99']:>6.2f} "
          f"{res['round_bytes']:>12,} {res['redis']:>12,} {res['pg_bytes'] / max(1, res['rows']):>9.0f}", flush=True)
    return start, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--history", type=int, default=10_000_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=5_000.0)
    args = ap.parse_args()
    levels = sorted({0, min(1_000_000, args.history), args.history})
    with tempfile.TemporaryDirectory() as tmp, local_stack(
        Path(tmp), batch_interval="0.25", batch_max="20000", allow_volatile_state="false"
    ) as stack:
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
        state = State.connect(stack.database_url)
        key = add_agency(state, AGENCY)
        time.sleep(2)
        print(f"{'history':>12} {'records':>8} {'end-to-end/s':>12} {'p50 s':>6} {'p99 s':>6} "
              f"{'index B/round':>12} {'redis bytes':>12} {'pg B/row':>9}", flush=True)
        start, loaded, results = 0, 0, {}
        for level in levels:
            if level > loaded:
                load_history(stack, loaded, level - loaded, lambda m: print(m, file=sys.stderr, flush=True))
                loaded = level
            start, results[level] = measure(stack, state, key, args.rate, args.seconds, start, f"{level:,}")
        base, top = results[levels[0]], results[levels[-1]]
        archived = state.archived_records()
        per_record = (top["redis"] - base["redis"]) / max(1, archived - base["records"])
        print(f"history {levels[-1]:,}: p99 ratio {top['p99'] / base['p99']:.2f}, throughput ratio "
              f"{top['e2e_rate'] / base['e2e_rate']:.2f}, redis bytes/archived record {per_record:.2f}")


if __name__ == "__main__":
    main()

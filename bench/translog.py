"""Benchmark: entries/s appended to the built-in log, each append publishing a signed checkpoint.

For 1, 100 and 10,000 batch roots per checkpoint, on the local-folder backend
(the baseline) and on S3 over HTTP (moto's standalone server, started here).
Prints entries/s and the ratio of each S3 figure to the local one measured in
the same run.

    python bench/translog.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import boto3

from pipelines.core.logentry import batch_entry
from pipelines.core.merkle import leaf_hash
from pipelines.core.note import Signer
from pipelines.demo.services import moto_s3
from pipelines.storage.local import LocalStore
from pipelines.storage.s3 import S3Store
from pipelines.ledger.tlog import TransparencyLog

SIGNER = Signer.generate("bench.example/log")


def entries(start: int, count: int) -> list[tuple[str, bytes]]:
    return [(f"b{i}", batch_entry(f"b{i}", leaf_hash(b"%d" % i), 5000, "2026-11-28T12:00:00Z"))
            for i in range(start, start + count)]


def run(store, per_checkpoint: int, appends: int) -> float:
    log = TransparencyLog.create(store, [SIGNER])
    log.append(entries(0, 300))  # a log that already has full and partial tiles
    t = time.perf_counter()
    for n in range(appends):
        log.append(entries(1000 + n * per_checkpoint, per_checkpoint))
    return per_checkpoint * appends / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer appends (a smoke run)")
    args = ap.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    cases = [(1, 20 if args.quick else 100), (100, 3 if args.quick else 10), (10_000, 1)]
    with tempfile.TemporaryDirectory() as tmp, moto_s3(Path(tmp)) as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        print(f"{'roots/checkpoint':>16} {'local entries/s':>16} {'S3 entries/s':>14} {'S3/local':>9}")
        for per, appends in cases:
            local = run(LocalStore(Path(tmp) / f"local-{per}"), per, appends)
            bucket = f"bench-{per}"
            client.create_bucket(Bucket=bucket)
            s3 = run(S3Store.connect(bucket, "log", endpoint_url=endpoint), per, appends)
            print(f"{per:>16,} {local:>16,.0f} {s3:>14,.0f} {s3 / local:>9.2f}")


if __name__ == "__main__":
    main()

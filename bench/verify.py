"""Benchmark: verifying a whole archived bundle (``anchorpipe verify BUNDLE.ndjson``, and what ``audit`` does
per bundle) on one core, against a plain hashlib loop doing the same number of SHA-256 calls in the same run.

Seals ``--records`` generated records into one batch, anchors it in a fresh local log, writes its bundle as
the archive does, then times ``verify_batch`` over the parsed bundle (parsing included) ``--repeat`` times.
Goal: >= 20,000 proofs/s per core.

    python bench/verify.py [--records 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from pipelines.archive.bundle import build_bundle
from pipelines.core.batch import seal_records
from pipelines.core.commitment import RecordInput, content_sha256
from pipelines.core.note import Signer
from pipelines.core.policy import Policy
from pipelines.demo.offline import sample_record
from pipelines.ledger.tlog import TransparencyLog
from pipelines.storage.local import LocalStore


def sha256_calls(size: int) -> int:
    """SHA-256 calls the bundle verifier makes for ``size`` proofs: each leaf, and the tree's size - 1 nodes
    once (checking each proof's path alone would take size x (1 + log2 size))."""
    return 2 * size - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from pipelines.cli.records import verify_bundle_bytes

    with tempfile.TemporaryDirectory() as tmp:
        signer = Signer.generate("bench.example/log")
        log = TransparencyLog.create(LocalStore(Path(tmp) / "log"), [signer])
        records = [sample_record(i) for i in range(args.records)]
        batch = seal_records("bench-agency", [RecordInput(r["id"], content_sha256(r["content"])) for r in records])
        anchors = list(log.anchor([batch.head]).values())
        data, _ = build_bundle(batch, anchors)
    policy = Policy.of([signer.verifier()], ["tlog"])
    rates, base = [], []
    calls = sha256_calls(args.records)
    blob = b"x" * 81  # between a leaf's data (about 97 bytes) and a node's (65)
    for _ in range(args.repeat):
        t = time.perf_counter()
        verify_bundle_bytes(data, policy)
        rates.append(args.records / (time.perf_counter() - t))
        t = time.perf_counter()
        sha = hashlib.sha256
        for _ in range(calls):
            sha(blob).digest()
        base.append(args.records / (time.perf_counter() - t))
    rate, floor = statistics.median(rates), statistics.median(base)
    print(f"verify a bundle of {args.records:,} proofs on one core (parse + every proof + its shared anchors once): "
          f"{rate:,.0f} proofs/s (goal >= 20,000)")
    print(f"a bare hashlib loop doing the same {calls:,} SHA-256 calls: {floor:,.0f} proofs' worth/s: ratio "
          f"{rate / floor:.2f} (the rest is parsing each proof's JSON and validating its record)")
    print(json.dumps({"proofs_per_s": rate, "hashlib_floor_per_s": floor, "ratio": rate / floor}))


if __name__ == "__main__":
    main()

"""Soak: records pushed at a steady rate through the running stack for minutes, then every proof checked.

Starts the local stack (PostgreSQL, Redis, moto S3, API, workers, beat), pushes
``--rate`` records/s for ``--minutes`` through the HTTP API, prints the backlog
(pending records, batches per stage, queue lengths) every ``--every`` seconds
and the resident memory of every process at the start and the end, waits for
every proof, then checks as an auditor that every record has exactly one proof
and that it verifies under the pinned log key. Exits 1 if any check fails.

    python bench/soak.py [--minutes 10] [--rate 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import push  # the same load generator as bench/e2e.py

from pipelines.archive.bundle import bundle_key
from pipelines.core.commitment import content_sha256
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.demo.localstack import local_stack
from pipelines.intake.auth import add_agency
from pipelines.stages import QUEUES
from pipelines.state.postgres import PostgresState as State
from pipelines.storage import open_store

AGENCY = "soak-agency"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (a worker's pool), in MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def memory(stack) -> dict[str, float]:
    return {name: rss_mb(proc.pid) for name, proc in sorted(stack.procs.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=5_000.0)
    ap.add_argument("--every", type=float, default=30.0)
    args = ap.parse_args()
    total = int(args.rate * args.minutes * 60)
    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp), batch_interval="0.25",
                                                           batch_max="20000") as stack:
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
        state = State.connect(stack.database_url)
        key = add_agency(state, AGENCY)
        broker = redis.Redis.from_url(stack.redis_url)
        time.sleep(2)
        start_mem = memory(stack)
        print(f"pushing {total:,} records at {args.rate:,.0f}/s for {args.minutes:g} min", flush=True)
        pusher = threading.Thread(target=push, args=(stack.api_url, key, 0, total, args.rate))
        t0 = time.monotonic()
        pusher.start()
        print(f"{'t s':>6} {'archived':>10} {'pending':>8} {'batches in stage':>30} {'queues':>24} "
              f"{'redis MB':>9}", flush=True)
        while pusher.is_alive() or state.archived_records() < total:
            time.sleep(args.every if pusher.is_alive() else 2)
            stages = state.stage_counts()
            queues = {q: broker.llen(q) for q in QUEUES if broker.llen(q)}
            print(f"{time.monotonic() - t0:>6.0f} {state.archived_records():>10,} {state.pending_depth():>8,} "
                  f"{str(stages):>30} {str(queues):>24} {broker.info('memory')['used_memory'] / 2**20:>9.1f}",
                  flush=True)
            if time.monotonic() - t0 > args.minutes * 60 + 600:
                print("FAILED: not every record was archived 10 minutes after the last push")
                sys.exit(1)
        end_mem = memory(stack)
        print(f"{'process':<12} {'RSS MB at start':>16} {'at end':>8}")
        for name in sorted(set(start_mem) | set(end_mem)):
            print(f"{name:<12} {start_mem.get(name, 0):>16.0f} {end_mem.get(name, 0):>8.0f}")
        print("auditing: every record has exactly one proof, and every proof verifies", flush=True)
        store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
        policy = Policy.of([stack.signer.verifier()], ["tlog"])
        seen: set[str] = set()
        batches = _archived_batches(state)
        for b in batches:
            for line in (store.get(bundle_key(AGENCY, b)) or b"").splitlines():
                proof = parse_proof(line)
                if proof.record.id in seen:
                    print(f"FAILED: {proof.record.id} has two proofs")
                    sys.exit(1)
                seen.add(proof.record.id)
                n = int(proof.record.id[1:])
                verify_proof(proof, policy, content_sha256=content_sha256({"n": n, "v": "payload"}))
        if len(seen) != total:
            print(f"FAILED: {total - len(seen):,} records have no proof")
            sys.exit(1)
        print(f"OK: {total:,} records, each with exactly one verified proof, in {len(batches):,} batches")


def _archived_batches(state: State) -> list[str]:
    with state.tx() as conn:
        return [r[0] for r in conn.execute("SELECT id FROM batches WHERE state = 'archived' ORDER BY id")]


if __name__ == "__main__":
    main()

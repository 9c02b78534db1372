"""Benchmark: external anchors (a TSA and an EVM chain) against the log alone, in the same run.

Starts the local stack with a local TSA (OpenSSL) and a local anvil (a block a
second, ANCHORPIPE_EVM_CONFIRMATIONS=3 here), then:

1. pushes records as fast as the API takes them for ``--seconds``, first with the
   anchorer and upgrader workers stopped (the log alone), then running (every round
   anchored and every proof upgraded while records flow), alternating ``--rounds``
   times, each phase starting with no upgrade pending; prints records/s end to
   end for each and the ratio of the medians (goal >= 0.95);
2. offers 5,000 records/s for ``--steady`` seconds with anchors on: external
   transactions per hour, records per transaction, and the time from accept to
   a fully confirmed (upgraded) proof, p50/p99;
3. verifies the upgraded proofs one by one on one core (tlog + tsa + evm
   required, the block pinned) against the first proofs of the same records
   (tlog only) in the same run.

    python bench/anchors.py [--seconds 6] [--rounds 2] [--steady 40] [--interval 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from e2e import push

from pipelines.core.proof import parse_proof
from pipelines.core.tsa import load_roots
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.demo import online
from pipelines.demo.localstack import DEFAULT_WORKERS, EXTERNAL_WORKERS, local_stack
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState as State
from pipelines.storage import get_all, open_store



def external_workers(stack, running: bool) -> None:
    """Start or stop the anchorer and the upgrader (the log alone: neither runs)."""
    for name, (queues, concurrency) in EXTERNAL_WORKERS.items():
        if running and name not in stack.procs:
            stack.start_worker(name, queues, concurrency)
        elif not running and name in stack.procs:
            stack.kill(name)


def flat_out(stack, state: State, key: str, seconds: float, start: int) -> tuple[int, float]:
    """Records/s from the first push to the last proof archived, pushing as fast as the API takes them."""
    count = int(15_000 * seconds)
    before = state.archived_records()
    t0 = time.perf_counter()
    push(stack.api_url, key, start, count, None)
    while state.archived_records() < before + count:
        time.sleep(0.05)
    return start + count, count / (time.perf_counter() - t0)


def fully_confirmed(state: State, stack, since_ms: int, timeout: float = 300) -> list[float]:
    """Seconds from accept to upgraded proof of every record accepted since ``since_ms`` (polled: +-0.25 s)."""
    import psycopg

    from pipelines.state.schema import psycopg_url

    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with psycopg.connect(psycopg_url(stack.database_url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            now = time.time() * 1000
            rows = conn.execute("SELECT id, ext_done FROM batches WHERE created_ms >= %s", (since_ms,)).fetchall()
            for batch_id, ext in rows:
                if ext and batch_id not in done:
                    done[batch_id] = now
            if rows and len(done) == len(rows) and conn.execute(
                    "SELECT count(*) FROM records WHERE batch_id IS NULL").fetchone()[0] == 0:
                break
            time.sleep(0.25)
        lat = []
        for batch_id, at in done.items():
            for (ms,) in conn.execute("SELECT accepted_ms FROM records WHERE batch_id = %s", (batch_id,)):
                lat.append((at - ms) / 1000)
    return lat


def verify_rate(store, vkey, roots, blocks, agency: str, limit: int = 20_000) -> tuple[float, float, int]:
    """Proofs/s verifying upgraded proofs (all three required) and the same records' first proofs (tlog)."""
    bundles = online._upgraded_bundles(store, agency)
    new = [line for lines, up in bundles.values() if up for line in lines][:limit]
    old = [line for raw in get_all(store, list(bundles)) for line in (raw or b"").splitlines()][:limit]
    full = Policy.of([vkey], ["tlog", "tsa", "evm"], tsa_roots=roots, evm_blocks=blocks)
    log_only = Policy.of([vkey], ["tlog"])
    rates = []
    for docs, policy in ((new, full), (old, log_only)):
        t = time.perf_counter()
        for line in docs:
            verify_proof(parse_proof(line), policy)
        rates.append(len(docs) / (time.perf_counter() - t))
    return rates[0], rates[1], len(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steady", type=float, default=40.0)
    ap.add_argument("--interval", type=float, default=10.0, help="ANCHORPIPE_EXTERNAL_INTERVAL (default: its default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as ctx:
        work = Path(tmp)
        ext = {**online._external_ledgers(ctx, work), "external_interval": str(args.interval)}
        stack = ctx.enter_context(local_stack(work, workers={**DEFAULT_WORKERS, **EXTERNAL_WORKERS},
                                              batch_interval="0.25", batch_max="20000",
                                              allow_volatile_state="false", **ext))
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
        state = State.connect(stack.database_url)
        key = add_agency(state, "bench-agency")
        time.sleep(2)
        start = 0
        results: dict[str, list[float]] = {"log alone": [], "all anchors": []}
        print(f"flat out for {args.seconds:.0f} s each, alternating (records/s from first push to last proof "
              "archived):")
        for r in range(args.rounds):
            for mode in ("log alone", "all anchors"):
                # Each phase starts with no upgrade pending: the anchored phase bears its own records' upgrades
                # (they run while it pushes), never a backlog left by the phase before it.
                external_workers(stack, True)
                while state.oldest_unanchored() is not None:
                    time.sleep(0.5)
                if mode == "log alone":
                    external_workers(stack, False)
                start, rate = flat_out(stack, state, key, args.seconds, start)
                results[mode].append(rate)
                print(f"  round {r + 1} {mode:>12}: {rate:>9,.0f} records/s")
        alone = statistics.median(results["log alone"]) if results["log alone"] else float("nan")
        anchored = statistics.median(results["all anchors"]) if results["all anchors"] else float("nan")
        print(f"median: log alone {alone:,.0f}, all anchors {anchored:,.0f} records/s: ratio {anchored / alone:.3f} "
              "(goal >= 0.95)")
        external_workers(stack, True)
        # Let the backlog of upgrades finish before the steady phase.
        while state.oldest_unanchored() is not None:
            time.sleep(0.5)
        rounds_before = len([r for r in state.round_coverage() if r["kinds"]])
        since = int(time.time() * 1000)
        t0 = time.perf_counter()
        push(stack.api_url, key, start, int(5000 * args.steady), 5000.0)
        lat = fully_confirmed(state, stack, since)
        took = time.perf_counter() - t0
        cov = [r for r in state.round_coverage() if r["kinds"]][rounds_before:]
        per_hour = len(cov) / took * 3600
        for r in cov:
            print(f"  round at log size {r['size']}: {r['records']:,} records, confirmed "
                  f"{(r['closed_ms'] - r['opened_ms']) / 1000:.1f} s after it opened")
        q = statistics.quantiles(lat, n=100, method="inclusive")
        print(f"at 5,000 records/s for {args.steady:.0f} s: {len(cov)} external rounds (one TSA token and one "
              f"transaction each) in {took:.0f} s: {per_hour:,.0f} transactions/hour, "
              f"{statistics.mean(r['records'] for r in cov):,.0f} records per transaction "
              f"(interval {ext['external_interval']} s, {ext['evm_confirmations']} confirmations at 1 s blocks)")
        print(f"accept -> fully confirmed proof (TSA + EVM, upgraded): p50 {q[49]:.2f} s, p99 {q[98]:.2f} s "
              f"over {len(lat):,} records")
        trust = online._trust(state, ext)
        evm = trust["evm_blocks"]
        blocks = {evm["chain_id"]: [b["hash"] for b in evm["blocks"]]}
        store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
        new, old, n = verify_rate(store, stack.signer.verifier(), load_roots(trust["tsa_root"]), blocks,
                                  "bench-agency")
        print(f"verifying proofs one by one on one core ({n:,} each): upgraded (tlog+tsa+evm) {new:,.0f} proofs/s, "
              f"first (tlog) {old:,.0f} proofs/s: ratio {new / old:.3f}")
        print(json.dumps({"log_alone": alone, "all_anchors": anchored, "ratio": anchored / alone,
                          "tx_per_hour_at_5k": per_hour, "p50_confirmed_s": q[49], "p99_confirmed_s": q[98],
                          "verify_upgraded_per_s": new, "verify_first_per_s": old}))


if __name__ == "__main__":
    main()

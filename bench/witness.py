"""Benchmark: witnessing. A witness's cosigning rate, the latency to a quorum, and the pipeline with it on/off.

1. One ``anchorpipe witness serve`` process: checkpoints cosigned per second
   (every request a real add-checkpoint: signature, consistency proof, durable
   compare-and-swap, cosignature), from ``--clients`` concurrent clients each
   following its own log, against the same server's no-op ``GET /healthz`` rate
   in the same run (the HTTP floor), and per CPU-second of the witness process
   (goal: >= 500 cosignatures/s on one core).
2. Three local witnesses, quorum 2: from a checkpoint published to the witnessing
   stage returning it cosigned by all of them, p50/p99, on a log of ``--history``
   entries (the proof cost grows with the log: measured at that size).
3. The local stack pushing records flat out with witnessing on (3 witnesses, the
   witnesser, rounds and upgrades running) and off (those stopped), alternating
   ``--rounds`` times: records/s end to end and the ratio of the medians (goal >= 0.95).

    python bench/witness.py [--requests 4000] [--clients 4] [--history 100000] [--seconds 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from anchors import flat_out

from pipelines.core import merkle
from pipelines.core.checkpoint import Checkpoint
from pipelines.core.logentry import batch_entry
from pipelines.core.cosignature import WitnessKey, verify_cosignatures
from pipelines.core.note import Signer, sign_note
from pipelines.core.witness import AddCheckpoint
from pipelines.demo.localstack import DEFAULT_WORKERS, EXTERNAL_WORKERS, local_stack
from pipelines.demo.services import witness_server
from pipelines.intake.auth import add_agency
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.ledger.witness import WitnessClient
from pipelines.state.postgres import PostgresState as State
from pipelines.storage.local import LocalStore
from pipelines.stages.witnessing import Witnessing


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def requests_for(signer: Signer, count: int) -> list[bytes]:
    """add-checkpoint bodies growing a log by one entry each (old size -> old size + 1, with its proof)."""
    leaves = [merkle.leaf_hash(b"%s %d" % (signer.name.encode(), i)) for i in range(count + 1)]
    tree = merkle.Tree(leaves)
    out = []
    for size in range(1, count + 1):
        note = sign_note(Checkpoint(signer.name, size, merkle.subtree_hash(tree.node, 0, size)).text(), [signer])
        proof = merkle.consistency_proof(tree.node, size - 1, size) if size > 1 else []
        out.append(AddCheckpoint(size - 1, tuple(proof), note).body())
    return out


def hammer(url: str, bodies_per_client: list[list[bytes]] | None, count: int, clients: int) -> float:
    """Requests/s from ``clients`` threads with keep-alive: add-checkpoint bodies, or GET /healthz (None)."""
    errors: list[str] = []

    def run(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            if bodies_per_client is None:
                for _ in range(count // clients):
                    if c.get(f"{url}/healthz").status_code != 200:
                        errors.append("healthz")
            else:
                for body in bodies_per_client[k]:
                    r = c.post(f"{url}/add-checkpoint", content=body)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:80]}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    total = count if bodies_per_client is None else sum(map(len, bodies_per_client))
    return total / took


def witness_rate(work: Path, requests: int, clients: int) -> dict[str, float]:
    signers = [Signer.generate(f"bench.example/log-{k}") for k in range(clients)]
    print(f"preparing {requests:,} add-checkpoint requests for {clients} logs ...")
    bodies = [requests_for(s, requests // clients) for s in signers]
    with witness_server(work, "bench.example/witness", [s.verifier().text() for s in signers]) as w:
        pid = int(next(p for p in Path("/proc").iterdir() if p.name.isdigit() and _is(p, w.port)).name)
        floor = hammer(w.url, None, requests, clients)
        cpu0 = cpu_seconds(pid)
        rate = hammer(w.url, bodies, requests, clients)
        cpu = cpu_seconds(pid) - cpu0
        done = sum(map(len, bodies))
    per_core = done / cpu if cpu else float("nan")
    print(f"one witness process, {clients} clients: {rate:,.0f} checkpoints cosigned/s (GET /healthz floor "
          f"{floor:,.0f}/s: ratio {rate / floor:.2f}); {per_core:,.0f} cosignatures per CPU-second of the witness "
          "(goal >= 500 on one core)")
    return {"cosign_per_s": rate, "noop_per_s": floor, "cosign_per_cpu_s": per_core}


def _is(proc: Path, port: int) -> bool:
    try:
        cmd = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"witness" in cmd and str(port).encode() in cmd


def entry(batch_id: str) -> tuple[str, bytes]:
    """A log entry of a batch of that id (the root made up: the log only binds it)."""
    return batch_id, batch_entry(batch_id, merkle.leaf_hash(batch_id.encode()), 1, "2026-11-30T00:00:00Z")


def quorum_latency(work: Path, history: int, samples: int) -> dict[str, float]:
    signer = Signer.generate("bench.example/witnessed-log")
    log = TransparencyLog.create(LocalStore(work / "latency-log"), [signer])
    print(f"growing a log to {history:,} entries ...")
    for start in range(0, history, 10_000):
        log.append([entry(f"h{i}") for i in range(start, min(start + 10_000, history))])
    with ExitStack() as ctx:
        ws = [ctx.enter_context(witness_server(work, f"w{k}.bench.example", [signer.verifier().text()]))
              for k in range(3)]
        keys = [WitnessKey.parse(w.vkey) for w in ws]
        reader = LogReader(log.store, [signer.verifier()], signer.name)
        witnessing = Witnessing(reader, [WitnessClient(w.url, k, 5.0) for w, k in zip(ws, keys, strict=True)], 2)
        witnessing.tick()  # each witness learns the log (old size 0)
        lat = []
        for n in range(samples):
            log.append([entry(f"s{n}")])  # a checkpoint published
            t0 = time.perf_counter()
            head = witnessing.tick()
            lat.append(time.perf_counter() - t0)
            assert head is not None and len(verify_cosignatures(head.note, keys)) == 3
    q = statistics.quantiles(lat, n=100, method="inclusive")
    print(f"checkpoint -> cosigned by 3 local witnesses (quorum 2) and published, log of {history:,} entries: "
          f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms over {samples} checkpoints")
    return {"quorum_p50_ms": q[49] * 1000, "quorum_p99_ms": q[98] * 1000}


ROUND_WORKERS = EXTERNAL_WORKERS  # the witnesser, and the rounds and upgrades that bring cosignatures to proofs


def pipeline_ratio(work: Path, seconds: float, rounds: int) -> dict[str, float]:
    signer = Signer.generate("anchorpipe.local/log")
    (work / "stack").mkdir()
    with ExitStack() as ctx:
        ws = [ctx.enter_context(witness_server(work / "stack-witnesses", f"w{k}.local", [signer.verifier().text()]))
              for k in range(3)]
        stack = ctx.enter_context(local_stack(
            work / "stack", workers={**DEFAULT_WORKERS, **ROUND_WORKERS}, batch_interval="0.25", batch_max="20000",
            allow_volatile_state="false", signer=signer, witnesses=",".join(f"{w.url} {w.vkey}" for w in ws),
            witness_quorum="2"))
        state = State.connect(stack.database_url)
        key = add_agency(state, "bench-agency")
        time.sleep(2)
        start = 0
        results: dict[str, list[float]] = {"witnessing off": [], "witnessing on": []}
        for r in range(rounds):
            for mode in results:
                # Each phase starts with every proof witnessed and upgraded: the "on" phase bears its own
                # records' witnessing and upgrades (while it pushes), never a backlog from the phase before.
                for name, (queues, concurrency) in ROUND_WORKERS.items():
                    if name not in stack.procs:
                        stack.start_worker(name, queues, concurrency)
                while state.oldest_unanchored() is not None:
                    time.sleep(0.5)
                if mode == "witnessing off":
                    for name in ROUND_WORKERS:
                        stack.kill(name)
                start, rate = flat_out(stack, state, key, seconds, start)
                results[mode].append(rate)
                print(f"  round {r + 1} {mode:>14}: {rate:>9,.0f} records/s")
        off, on = (statistics.median(v) for v in results.values())
    print(f"median: witnessing off {off:,.0f}, on {on:,.0f} records/s end to end: ratio {on / off:.3f} (goal >= 0.95)")
    return {"off_records_per_s": off, "on_records_per_s": on, "ratio": on / off}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--history", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = witness_rate(work, args.requests, args.clients)
        out |= quorum_latency(work, args.history, args.samples)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "anchorpipe")
        out |= pipeline_ratio(work, args.seconds, args.rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

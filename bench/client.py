"""Benchmark: pushing records with the Python client and with ``anchorpipe push``, against the raw HTTP load
generator (NDJSON chunks posted with httpx, as bench/e2e.py does) in the same run, on the running stack.

Each phase submits ``--records`` new records (accepted: 202), chunks of 2,000; the phases alternate
``--rounds`` times; printed: records/s accepted for each, and the ratios of the medians (goal >= 0.9).

    python bench/client.py [--records 150000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from anchorpipe.client import Client
from pipelines.demo.localstack import local_stack
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState

CHUNK = 2_000


def record(tag: str, i: int) -> dict:
    return {"id": f"{tag}-{i}", "content": {"n": i, "v": "payload"}}


def raw(api: str, key: str, tag: str, n: int) -> float:
    t = time.perf_counter()
    with httpx.Client(timeout=120) as http:
        for start in range(0, n, CHUNK):
            body = "\n".join(json.dumps(record(tag, i)) for i in range(start, min(start + CHUNK, n)))
            http.post(f"{api}/v1/records", content=body, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}).raise_for_status()
    return n / (time.perf_counter() - t)


def client(api: str, key: str, tag: str, n: int) -> float:
    t = time.perf_counter()
    with Client(api, key, chunk=CHUNK) as c:
        assert c.submit(record(tag, i) for i in range(n)).accepted == n
    return n / (time.perf_counter() - t)


def push(api: str, key: str, tag: str, n: int, folder: Path) -> float:
    path = folder / f"{tag}.jsonl"
    path.write_text("".join(json.dumps(record(tag, i)) + "\n" for i in range(n)))
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "push", str(path), "--api", api, "--chunk",
                          str(CHUNK)], env={**os.environ, "ANCHORPIPE_API_KEY": key}, capture_output=True, text=True)
    took = time.perf_counter() - t
    if res.returncode != 0 or f"accepted {n:,}" not in res.stdout:
        raise SystemExit(res.stdout + res.stderr)
    return n / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=150_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp), batch_interval="0.25",
                                                           batch_max="20000") as stack:
        key = add_agency(PostgresState.connect(stack.database_url), "bench-agency")
        results: dict[str, list[float]] = {"raw HTTP": [], "client": [], "push": []}
        for r in range(args.rounds):
            for mode in results:
                tag = f"{mode.split()[0]}{r}"
                rate = (raw(stack.api_url, key, tag, args.records) if mode == "raw HTTP" else
                        client(stack.api_url, key, tag, args.records) if mode == "client" else
                        push(stack.api_url, key, tag, args.records, Path(tmp)))
                results[mode].append(rate)
                print(f"  round {r + 1} {mode:>8}: {rate:>9,.0f} records/s accepted")
        base = statistics.median(results["raw HTTP"])
        med = {m: statistics.median(v) for m, v in results.items()}
        print(f"median records/s: raw HTTP {base:,.0f}, client {med['client']:,.0f} (ratio "
              f"{med['client'] / base:.2f}), anchorpipe push {med['push']:,.0f} (ratio {med['push'] / base:.2f}); "
              "goal >= 0.9")
        print(json.dumps({"raw_per_s": base, "client_per_s": med["client"], "push_per_s": med["push"],
                          "client_ratio": med["client"] / base, "push_ratio": med["push"] / base}))


if __name__ == "__main__":
    main()

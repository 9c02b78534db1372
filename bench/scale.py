"""Benchmark: end-to-end records/s with 1, 2 and 4 sealer and archiver processes, as ratios to 1.

For each count N it starts the local stack (PostgreSQL, Redis, moto S3, API, beat)
with N sealer processes (queues seal and reconcile) and N archiver processes
(queue archive), one process each (`-c 1`), and the one sequencer; pushes
records as fast as the load generator can for ``--seconds``; and reports the
sustained end-to-end rate (until the last proof is archived) and the p99
latency. Ratios are to N = 1 measured in the same run.

    python bench/scale.py [--counts 1,2,4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import run_rate  # the same load generator as bench/e2e.py

from pipelines.demo.localstack import local_stack
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState as State


def measure(n: int, seconds: float) -> dict:
    workers = {**{f"sealer{i}": ("seal,reconcile", 1) for i in range(n)},
               **{f"archiver{i}": ("archive", 1) for i in range(n)}, "sequencer": ("anchor", 1)}
    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp), workers=workers, batch_interval="0.25",
                                                           batch_max="20000") as stack:
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
        state = State.connect(stack.database_url)
        key = add_agency(state, "scale-agency")
        time.sleep(3)  # workers and beat settle
        _, res = run_rate(stack, state, key, None, seconds, 0)
        return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,2,4")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"{'sealers+archivers':>18} {'records':>8} {'accepted/s':>11} {'end-to-end/s':>13} {'p99 s':>6} "
          f"{'ratio to 1':>10}", flush=True)
    base = None
    for n in (int(c) for c in args.counts.split(",")):
        res = measure(n, args.seconds)
        base = base or res["e2e_rate"]
        print(f"{n:>18} {res['records']:>8,} {res['accept_rate']:>11,.0f} {res['e2e_rate']:>13,.0f} "
              f"{res['p99']:>6.2f} {res['e2e_rate'] / base:>10.2f}", flush=True)


if __name__ == "__main__":
    main()

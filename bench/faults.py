"""Faults against a running stack, each while records are pushed: what is lost, doubled, and how fast it heals.

Starts the local stack (PostgreSQL, Redis, moto S3, API, workers, beat) and runs
each scenario in turn while a client pushes about 2,000 records/s (retrying a
chunk answered 503 or refused, as a client should): a stage worker, the
sequencer or the API killed with SIGKILL and restarted a second later (as
systemd would); Redis killed and restarted empty; PostgreSQL killed and
restarted after 5 s; S3 hung (moto stopped with SIGSTOP) for 20 s. Settings are
the defaults, and a supervisor thread restarts any worker that exits, within a
second, as systemd's Restart=always would. Per scenario
it prints the records lost (accepted with 202 but never archived; goal 0),
batches anchored twice (log entries beyond the batches; goal 0), seconds from
the end of the fault until every accepted record is archived (goal ≤ 10), and
the slowest intake answer during the fault (goal ≤ 1 s; a 503 or a refused
connection is an answer).

    python bench/faults.py [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from pipelines.demo.localstack import DEFAULT_WORKERS, Stack, local_stack
from pipelines.intake.auth import add_agency
from pipelines.ledger.tlog import LogReader
from pipelines.state.postgres import PostgresState as State
from pipelines.storage import open_store

CHUNK = 200
RATE = 2_000.0
SUPERVISOR_PAUSE = threading.Event()


class Pusher(threading.Thread):
    """Pushes CHUNK-record requests at RATE until stopped; retries a chunk until it is accepted."""

    def __init__(self, api: str, key: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.api, self.key, self.prefix = api, key, prefix
        self.accepted = 0
        self.answers: list[tuple[float, float]] = []  # (when it was sent, seconds to the answer)
        self.stopping = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/x-ndjson"}
        n = 0
        with httpx.Client(timeout=60) as client:
            while not self.stopping.is_set():
                body = "\n".join(json.dumps({"id": f"{self.prefix}-{i}", "content": {"i": i}})
                                 for i in range(n, n + CHUNK))
                t0 = time.monotonic()
                while True:
                    sent = time.monotonic()
                    try:
                        ok = client.post(f"{self.api}/v1/records", content=body, headers=headers).status_code == 202
                    except httpx.HTTPError:
                        ok = False
                    self.answers.append((sent, time.monotonic() - sent))
                    if ok:
                        break
                    time.sleep(0.2)
                self.accepted += CHUNK
                n += CHUNK
                time.sleep(max(0.0, CHUNK / RATE - (time.monotonic() - t0)))


def _restart_dead(stack: Stack) -> None:
    for name, (queues, concurrency) in DEFAULT_WORKERS.items():
        proc = stack.procs.get(name)
        if proc is None or proc.poll() is not None:
            stack.procs.pop(name, None)
            stack.start_worker(name, queues, concurrency)


def _moto_pid(endpoint: str) -> int:
    port = endpoint.rsplit(":", 1)[1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"moto.server" in args and port.encode() in args:
            return int(cmdline.parent.name)
    raise RuntimeError("moto's process not found")


def _kill_and_restart(name: str) -> Callable[[Stack], Callable[[], None]]:
    def fault(stack: Stack) -> Callable[[], None]:
        stack.kill(name)
        time.sleep(1.0)

        def heal() -> None:
            if name == "api":
                api = stack.api_url.rsplit(":", 1)[1]
                stack.spawn("api", [sys.executable, "-m", "uvicorn", "pipelines.api.app:app", "--host",
                                    "127.0.0.1", "--port", api, "--log-level", "warning"], port=int(api))
            else:
                _restart_dead(stack)
        return heal
    return fault


def _redis(stack: Stack) -> Callable[[], None]:
    stack.kill("redis")
    stack.start_redis(empty=True)
    return lambda: _restart_dead(stack)


def _postgres(stack: Stack) -> Callable[[], None]:
    stack.kill("postgres")
    time.sleep(5)
    return stack.start_postgres


def _s3_hung(stack: Stack) -> Callable[[], None]:
    pid = _moto_pid(stack.s3_endpoint)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(20)
    return lambda: os.kill(pid, signal.SIGCONT)


SCENARIOS: dict[str, Callable[[Stack], Callable[[], None]]] = {
    "stage worker SIGKILL": _kill_and_restart("stages"),
    "sequencer SIGKILL": _kill_and_restart("sequencer"),
    "API SIGKILL": _kill_and_restart("api"),
    "Redis SIGKILL, back empty": _redis,
    "PostgreSQL SIGKILL, back after 5 s": _postgres,
    "S3 hung 20 s": _s3_hung,
}


class Supervisor(threading.Thread):
    """Restarts a stage worker or the sequencer that exited, within a second, as systemd's Restart=always
    does (Celery's worker can exit when its broker restarts: an unrecoverable error in kombu)."""

    def __init__(self, stack: Stack, paused: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stack, self.paused = stack, paused

    def run(self) -> None:
        while True:
            time.sleep(1.0)
            if not self.paused.is_set():
                try:
                    _restart_dead(self.stack)
                except Exception:
                    pass


def run(stack: Stack, state: State, name: str, fault: Callable[[Stack], Callable[[], None]], n: int) -> dict:
    key = add_agency(state, f"faults-{n}")
    before = state.archived_records()
    pusher = Pusher(stack.api_url, key, f"s{n}")
    pusher.start()
    time.sleep(3)  # steady state
    start = time.monotonic()
    SUPERVISOR_PAUSE.set()  # the fault itself decides when a killed process comes back
    try:
        heal = fault(stack)
        heal()
    finally:
        SUPERVISOR_PAUSE.clear()
    healed = time.monotonic()
    time.sleep(3)
    pusher.stopping.set()
    pusher.join()
    deadline = time.monotonic() + 180
    while state.archived_records() - before < pusher.accepted and time.monotonic() < deadline:
        time.sleep(0.2)
    recovered = time.monotonic() - healed if state.archived_records() - before >= pusher.accepted else float("inf")
    during = [seconds for sent, seconds in pusher.answers if start <= sent <= healed]
    return {"lost": max(0, pusher.accepted - (state.archived_records() - before)), "accepted": pusher.accepted,
            "recovery": recovered, "slowest": max(during, default=0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run only the scenario whose name contains this")
    args = ap.parse_args()
    chosen = {k: v for k, v in SCENARIOS.items() if not args.only or args.only.lower() in k.lower()}
    with tempfile.TemporaryDirectory() as tmp, local_stack(Path(tmp), batch_interval="0.25",
                                                           archive_read_timeout="1") as stack:  # else defaults
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
        state = State.connect(stack.database_url)
        Supervisor(stack, SUPERVISOR_PAUSE).start()
        time.sleep(2)
        print(f"{'scenario':<36} {'accepted':>9} {'lost':>5} {'doubled':>8} {'recovery s':>11} {'slowest answer s':>17}",
              flush=True)
        for n, (name, fault) in enumerate(chosen.items()):
            res = run(stack, state, name, fault, n)
            reader = LogReader(open_store(stack.archive + "/log", s3_endpoint=stack.s3_endpoint),
                               [stack.signer.verifier()])
            with state.tx() as conn:
                batches = conn.execute("SELECT count(*) FROM batches WHERE state = 'archived'").fetchone()[0]
            doubled = reader.head().checkpoint.size - batches
            print(f"{name:<36} {res['accepted']:>9,} {res['lost']:>5} {doubled:>8} {res['recovery']:>11.1f} "
                  f"{res['slowest']:>17.2f}", flush=True)


if __name__ == "__main__":
    main()

"""``anchorpipe demo``: the main job on embedded defaults, end to end on one machine.

Starts a private PostgreSQL, Redis, an S3 server (moto), the intake API, workers and
beat; creates an agency; pushes generated records through the HTTP API; waits
for every proof; then, as an auditor holding only S3 read access and the log's
verifier key, fetches the proofs back and verifies every one; prints rates and
latencies; stops everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from pipelines.archive.directory import fetch_proof
from pipelines.core.commitment import content_sha256
from pipelines.core.proof import parse_proof
from pipelines.core.verify import Policy, verify_proof
from pipelines.demo.localstack import local_stack
from pipelines.demo.offline import sample_record
from pipelines.errors import VerificationError
from pipelines.intake.auth import add_agency
from pipelines.ledger.tlog import LogReader
from pipelines.state.postgres import PostgresState
from pipelines.storage import get_all, open_store

Echo = Callable[[str], None]
Progress = Callable[[str, int], object]
AGENCY = "demo-agency"
CHUNK = 2_000
SAMPLE_LOOKUPS = 200


def run_demo(records: int, export: Path | None, echo: Echo, progress: Progress, **settings: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="anchorpipe-demo-"))
    try:
        echo(f"starting PostgreSQL, Redis, an S3 server, the API, workers and beat in {work}")
        with local_stack(work, allow_volatile_state="false", **settings) as stack:
            os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
            state = PostgresState.connect(stack.database_url)
            key = add_agency(state, AGENCY)
            echo("warming up: one record through every stage")
            _push(stack.api_url, key, [{"id": "warm-up", "content": "warm-up"}], _quiet)
            _wait_archived(state, 1, _quiet)
            samples = [sample_record(i) for i in range(records)]
            t0 = time.perf_counter()
            _push(stack.api_url, key, samples, progress)
            pushed = time.perf_counter() - t0
            _wait_archived(state, records + 1, progress, offset=1)
            total = time.perf_counter() - t0
            echo(f"accepted {records:,} records through the API at {records / pushed:,.0f} records/s; "
                 f"all proofs archived after {total:.1f} s ({records / total:,.0f} records/s end to end)")
            lat = state.accept_to_archived()
            echo(f"accept -> archived latency: p50 {_pct(lat, 50):.2f} s, p99 {_pct(lat, 99):.2f} s")
            store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
            log_store = open_store(stack.archive + "/log", s3_endpoint=stack.s3_endpoint)
            _audit(store, log_store, stack.signer.verifier(), samples, echo, progress)
            if export is not None:
                _export(store, log_store, stack.signer.verifier().text(), export)
                echo(f"exported proofs (NDJSON per batch), log.vkey and the log to {export}")
        echo("stopped everything the demo started")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _push(api: str, key: str, samples: list[dict], progress: Progress) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    with httpx.Client(timeout=120) as client, progress("pushing records to the API", len(samples)) as bar:
        for start in range(0, len(samples), CHUNK):
            chunk = samples[start:start + CHUNK]
            body = "\n".join(json.dumps(r) for r in chunk)
            resp = client.post(f"{api}/v1/records", content=body, headers=headers)
            if resp.status_code != 202:
                raise VerificationError(f"the API refused a chunk: {resp.status_code} {resp.text[:200]}")
            bar.update(len(chunk))


class _Silent:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _quiet(label: str, length: int) -> _Silent:
    return _Silent()


def _wait_archived(state: PostgresState, records: int, progress: Progress, timeout: float = 600, offset: int = 0) -> None:
    deadline = time.monotonic() + timeout
    with progress("waiting for every proof", records - offset) as bar:
        done = offset
        while done < records:
            if time.monotonic() > deadline:
                raise VerificationError(f"only {done} of {records} proofs archived after {timeout:.0f} s")
            time.sleep(0.1)
            now = state.archived_records()
            bar.update(now - done)
            done = now


def _pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def _audit(store, log_store, vkey, samples: list[dict], echo: Echo, progress: Progress) -> None:
    """An auditor with S3 read access and the pinned log key; trusts nothing else."""
    policy = Policy.of([vkey], ["tlog"])
    with ThreadPoolExecutor(8) as pool:  # the index lookup, record by record, on a sample
        looked_up = list(pool.map(lambda r: fetch_proof(store, AGENCY, r["id"]), samples[:SAMPLE_LOOKUPS]))
    for rec, proof in zip(samples, looked_up, strict=False):
        verify_proof(proof, policy, content_sha256=content_sha256(rec["content"]))
    # Every proof: each of the agency's bundles fetched once; every record must have exactly one proof.
    content = {rec["id"]: rec["content"] for rec in samples}
    keys = store.list_keys(f"proofs/{AGENCY}/")
    proved: set[str] = set()
    with progress("verifying every proof", len(samples)) as bar:
        for raw in get_all(store, keys):
            for line in (raw or b"").splitlines():
                proof = parse_proof(line)
                if proof.record.id == "warm-up":
                    continue
                if proof.record.id in proved:
                    raise VerificationError(f"record {proof.record.id} has two proofs")
                proved.add(proof.record.id)
                verify_proof(proof, policy, content_sha256=content_sha256(content[proof.record.id]))
                bar.update(1)
    missing = len(content) - len(proved)
    if missing:
        raise VerificationError(f"{missing} records have no proof in the archive")
    reader = LogReader(log_store, [vkey])
    head = reader.head()
    reader.check_tiles(head)
    echo(f"auditor: {SAMPLE_LOOKUPS} proofs found by (agency, id) through the archive's index (at most 4 GETs "
         f"each), and all {len(samples):,} proofs in {len(keys)} batches verified against the pinned log key: "
         "every record has exactly one, and every one is VALID")
    echo(f"auditor: log {head.checkpoint.origin} at size {head.checkpoint.size}: tiles match the signed checkpoint")


def _export(store, log_store, vkey_text: str, export: Path) -> None:
    (export / "proofs").mkdir(parents=True, exist_ok=True)
    (export / "log.vkey").write_text(vkey_text + "\n")
    for key in store.list_keys("proofs/"):
        (export / key).parent.mkdir(parents=True, exist_ok=True)
        (export / key).write_bytes(store.get(key))
    for key in log_store.list_keys(""):
        if key == "checkpoint" or key.startswith("tile/"):
            path = export / "log" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(log_store.get(key))

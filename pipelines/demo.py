"""``anchorpipe demo``: the main job on embedded defaults, end to end on one machine.

Generates sample records, seals them, writes every proof, reads each one back
as an auditor would and verifies it, and prints what it measured.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipelines import offline
from pipelines.core.commitment import content_sha256
from pipelines.core.proof import parse_proof
from pipelines.core.verify import verify_proof
from pipelines.records import RecordInput

Echo = Callable[[str], None]


def sample_record(i: int) -> dict[str, object]:
    return {"id": f"permit/{i:07d}", "content": {"permit": i, "holder": f"holder {i % 977}", "fee": i % 500 + 0.5}}


def run_demo(records: int, out: Path | None, echo: Echo, progress: Callable[[str, int], object]) -> None:
    """Seal ``records`` generated records and verify every proof; raise on any failure."""
    agency = "demo-agency"
    work = Path(tempfile.mkdtemp(prefix="anchorpipe-demo-"))
    out = out or work / "proofs"
    samples = [sample_record(i) for i in range(records)]
    t0 = time.perf_counter()
    inputs = [RecordInput(r["id"], content_sha256(r["content"])) for r in samples]
    batch = offline.seal_records(agency, inputs)
    t_seal = time.perf_counter() - t0
    with progress("writing proofs", batch.size) as bar:
        offline.write_proofs(batch, out, progress=bar.update)
    t_write = time.perf_counter() - t0 - t_seal
    echo(f"sealed {batch.size:,} records into batch {batch.id}, root {batch.root.hex()}")
    t1 = time.perf_counter()
    with progress("verifying proofs", len(samples)) as bar:
        for rec in samples:
            proof = parse_proof((out / offline.proof_filename(rec["id"])).read_bytes())
            verify_proof(proof, content_sha256=content_sha256(json.loads(json.dumps(rec["content"]))))
            bar.update(1)
    t_verify = time.perf_counter() - t1
    echo(f"verified {len(samples):,} proofs offline: every one VALID")
    echo(f"seal {records / t_seal:,.0f} records/s, write {records / t_write:,.0f} proofs/s, "
         f"verify {records / t_verify:,.0f} proofs/s")
    echo(f"proofs in {out}")

"""``anchorpipe demo --offline``: sealing and the built-in log without any service running.

Generates sample records, seals them in batches, anchors every batch in a fresh
built-in log (a local folder, a new Ed25519 key), writes every proof, then acts
as an auditor: reads each proof back, verifies it against the pinned log key,
and checks the log's tiles and its consistency from the first checkpoint on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.archive.files import proof_filename, write_proofs
from pipelines.core.batch import seal_records
from pipelines.core.commitment import RecordInput, content_sha256
from pipelines.core.note import Signer
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.storage.local import LocalStore

Echo = Callable[[str], None]
Progress = Callable[[str, int], object]
AGENCY = "demo-agency"


def sample_record(i: int) -> dict[str, object]:
    return {"id": f"permit/{i:07d}", "content": {"permit": i, "holder": f"holder {i % 977}", "fee": i % 500 + 0.5}}


def run_demo(records: int, batch_size: int, export: Path | None, echo: Echo, progress: Progress) -> None:
    """Seal, anchor and verify ``records`` generated records; raise on any failure."""
    work = Path(tempfile.mkdtemp(prefix="anchorpipe-demo-"))
    try:
        signer = Signer.generate("anchorpipe.local/demo-log")
        log = TransparencyLog.create(LocalStore(work / "log"), [signer])
        samples = [sample_record(i) for i in range(records)]
        t0 = time.perf_counter()
        first_checkpoint, where = None, {}
        with progress("sealing, anchoring, writing proofs", records) as bar:
            for start in range(0, records, batch_size):
                chunk = samples[start:start + batch_size]
                batch = seal_records(AGENCY, [RecordInput(r["id"], content_sha256(r["content"])) for r in chunk])
                anchors = log.anchor([batch.head])
                write_proofs(batch, work / "proofs" / batch.id, anchors=list(anchors.values()))
                first_checkpoint = first_checkpoint or log.head().checkpoint
                where.update((r["id"], batch.id) for r in chunk)
                bar.update(len(chunk))
        elapsed = time.perf_counter() - t0
        head = log.head()
        echo(f"sealed {records:,} records in {-(-records // batch_size)} batches, anchored in log "
             f"{head.checkpoint.origin} (size {head.checkpoint.size}) at {records / elapsed:,.0f} records/s")
        _audit(work, samples, where, signer, first_checkpoint, echo, progress)
        if export is not None:
            _export(work, signer, export)
            echo(f"exported proofs, log.vkey and the log to {export}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _audit(work: Path, samples, where, signer: Signer, first, echo: Echo, progress: Progress) -> None:
    """What an auditor does, trusting only the log's verifier key."""
    vkey = [signer.verifier()]
    policy = Policy.of(vkey, ["tlog"])
    t0 = time.perf_counter()
    with progress("verifying every proof", len(samples)) as bar:
        for rec in samples:
            raw = (work / "proofs" / where[rec["id"]] / proof_filename(rec["id"])).read_bytes()
            verify_proof(parse_proof(raw), policy, content_sha256=content_sha256(rec["content"]))
            bar.update(1)
    echo(f"verified {len(samples):,} proofs with their log receipts: every one VALID "
         f"({len(samples) / (time.perf_counter() - t0):,.0f} proofs/s)")
    reader = LogReader(LocalStore(work / "log"), vkey)
    head = reader.head()
    reader.check_tiles(head)
    reader.consistency(first, head)
    echo(f"log audited: tiles match the signed checkpoint; consistent from size {first.size} "
         f"to {head.checkpoint.size}")


def _export(work: Path, signer: Signer, export: Path) -> None:
    export.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work / "proofs", export / "proofs")
    shutil.copytree(work / "log", export / "log", ignore=shutil.ignore_patterns(".cas.lock", ".tmp-*"))
    (export / "log.vkey").write_text(signer.verifier().text() + "\n")

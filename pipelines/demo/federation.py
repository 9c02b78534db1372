"""``anchorpipe demo --federation``: three agencies' logs witnessed by each other, on one machine.

Each agency has its own log (its own key, its own folder) and runs a witness
(``anchorpipe witness serve``, a real process spoken to over HTTP) for the two
other agencies' logs. Records are sealed and sequenced in-process, as with
``--offline`` (the full service stack of each agency is what ``make demo`` runs);
after every few batches each log sends its newest checkpoint to the witnesses
of the two others and writes its proofs under the cosigned checkpoint. Then an
auditor pinning the three log keys and the three witness keys verifies every
proof with a quorum of two cosignatures required, and each log's tiles and
consistency.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from pipelines.archive.bundle import build_bundle, bundle_key
from pipelines.core.batch import SealedBatch, seal_records
from pipelines.core.commitment import RecordInput, content_sha256
from pipelines.core.cosignature import WitnessKey, verify_cosignatures
from pipelines.core.note import Signer
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_batch
from pipelines.demo.offline import sample_record
from pipelines.demo.services import LocalWitness, witness_server
from pipelines.errors import VerificationError
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.ledger.witness import WitnessClient
from pipelines.storage.local import LocalStore
from pipelines.stages.witnessing import Witnessing

Echo = Callable[[str], None]
Progress = Callable[[str, int], object]
AGENCIES = ("agency-a.example", "agency-b.example", "agency-c.example")
QUORUM = 2
#: Batches a log sequences between two requests to its witnesses.
WITNESS_EVERY = 4


def run_federation(records: int, batch_size: int, export: Path | None, echo: Echo, progress: Progress) -> None:
    """Seal ``records`` generated records per agency, have each log witnessed by the others, verify every
    proof with a quorum of 2; raise on any failure."""
    work = Path(tempfile.mkdtemp(prefix="anchorpipe-federation-"))
    try:
        signers = {a: Signer.generate(f"{a}/log") for a in AGENCIES}
        with ExitStack() as ctx:
            echo(f"starting three witnesses, each run by one agency for the two others' logs, in {work}")
            witnesses = {a: ctx.enter_context(witness_server(
                work / "witnesses", f"{a}/witness", [signers[o].verifier().text() for o in AGENCIES if o != a]))
                for a in AGENCIES}
            logs = {a: _AgencyLog(work / a, signers[a], [w for o, w in witnesses.items() if o != a]) for a in AGENCIES}
            t0 = time.perf_counter()
            with progress("sealing, sequencing, witnessing, writing proofs", records * len(AGENCIES)) as bar:
                for start in range(0, records, batch_size):
                    for a in AGENCIES:
                        chunk = [sample_record(i) for i in range(start, min(start + batch_size, records))]
                        logs[a].add(seal_records(a, [RecordInput(f"{a}:{r['id']}", content_sha256(r["content"]))
                                                     for r in chunk]))
                        bar.update(len(chunk))  # type: ignore[attr-defined]
                for log in logs.values():
                    log.flush()
            elapsed = time.perf_counter() - t0
            for a, log in logs.items():
                echo(f"{a}: {log.records:,} records in {log.batches} batches, log size {log.size}; "
                     f"{log.rounds} checkpoints cosigned by its two witnesses")
            echo(f"{records * len(AGENCIES):,} records sealed and witnessed in {elapsed:.1f} s")
            witness_keys = [WitnessKey.parse(w.vkey) for w in witnesses.values()]
            _audit(logs, witness_keys, echo, progress)
            if export is not None:
                _export(logs, witnesses, export)
                echo(f"exported each agency's proofs, log and log.vkey to {export}/<agency>/, and the witness keys "
                     f"to {export}/witnesses.vkeys")
        echo("stopped the witnesses")
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _AgencyLog:
    """One agency's log and archive folder, and its witnessing by the other agencies' witnesses."""

    def __init__(self, folder: Path, signer: Signer, witnesses: list[LocalWitness]) -> None:
        self.folder, self.signer = folder, signer
        self.log = TransparencyLog.create(LocalStore(folder / "log"), [signer])
        reader = LogReader(self.log.store, [signer.verifier()], signer.name)
        self.witness_keys = [WitnessKey.parse(w.vkey) for w in witnesses]
        clients = [WitnessClient(w.url, k, 5.0) for w, k in zip(witnesses, self.witness_keys, strict=True)]
        self.witnessing = Witnessing(reader, clients, QUORUM)
        self.pending: list[SealedBatch] = []
        self.records = self.batches = self.rounds = 0
        self.agency = signer.name.split("/")[0]
        (folder / "proofs" / self.agency).mkdir(parents=True)

    @property
    def size(self) -> int:
        return self.log.head().checkpoint.size

    def add(self, batch: SealedBatch) -> None:
        self.log.anchor([batch.head])
        self.pending.append(batch)
        self.records += batch.size
        self.batches += 1
        if len(self.pending) >= WITNESS_EVERY:
            self.flush()

    def flush(self) -> None:
        """Have the newest checkpoint cosigned, then write the pending batches' proofs under it."""
        if not self.pending:
            return
        head = self.witnessing.tick()
        if head is None or len(verify_cosignatures(head.note, self.witness_keys)) < QUORUM:
            raise VerificationError(f"{self.signer.name}: its witnesses did not both cosign its checkpoint (their "
                                    "logs are in the demo's folder)")
        receipts = self.witnessing.log.receipts([b.id for b in self.pending], head)
        for batch in self.pending:
            data, _ = build_bundle(batch, [receipts[batch.id]])
            (self.folder / bundle_key(self.agency, batch.id)).write_bytes(data)
        self.rounds += 1
        self.pending = []


def _audit(logs: dict[str, _AgencyLog], witness_keys: list[WitnessKey], echo: Echo, progress: Progress) -> None:
    """An auditor pinning every log's key and every witness's key, requiring 2 cosignatures."""
    policy = Policy.of([log.signer.verifier() for log in logs.values()], ["tlog"], witnesses=witness_keys,
                       witness_quorum=QUORUM)
    total = sum(log.records for log in logs.values())
    t0 = time.perf_counter()
    with progress(f"verifying every proof (tlog + {QUORUM} of {len(witness_keys)} witnesses)", total) as bar:
        for log in logs.values():
            for path in sorted((log.folder / "proofs").rglob("*.ndjson")):
                proofs = [parse_proof(line) for line in path.read_bytes().splitlines() if line.strip()]
                verify_batch(proofs, policy)
                bar.update(len(proofs))  # type: ignore[attr-defined]
    echo(f"auditor: all {total:,} proofs VALID with the log's key and a quorum of {QUORUM} witness cosignatures "
         f"({total / (time.perf_counter() - t0):,.0f} proofs/s)")
    for log in logs.values():
        reader = LogReader(log.log.store, [log.signer.verifier()])
        head = reader.head()
        reader.check_tiles(head)
        cosigned = reader.cosigned()
        assert cosigned is not None
        names = [c.witness for c in verify_cosignatures(cosigned.note, witness_keys)]
        echo(f"auditor: log {head.checkpoint.origin} at size {head.checkpoint.size}: tiles match; its newest cosigned "
             f"checkpoint (size {cosigned.checkpoint.size}) is cosigned by {', '.join(names)}")


def _export(logs: dict[str, _AgencyLog], witnesses: dict[str, LocalWitness], export: Path) -> None:
    export.mkdir(parents=True, exist_ok=True)
    for a, log in logs.items():
        shutil.copytree(log.folder / "proofs", export / a / "proofs")
        shutil.copytree(log.folder / "log", export / a / "log", ignore=shutil.ignore_patterns(".cas.lock", ".tmp-*"))
        (export / a / "log.vkey").write_text(log.signer.verifier().text() + "\n")
    (export / "witnesses.vkeys").write_text("".join(w.vkey + "\n" for w in witnesses.values()))

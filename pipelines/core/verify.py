"""Offline verification of a proof, in numbered steps; no I/O.

Each step either passes, adding a line to the report, or raises
:class:`VerificationError` saying what was expected and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.core import merkle
from pipelines.core.commitment import record_leaf_hash
from pipelines.core.proof import Proof
from pipelines.errors import VerificationError


@dataclass
class Report:
    """What a successful verification checked, in order."""

    checks: list[str] = field(default_factory=list)

    def ok(self, line: str) -> None:
        self.checks.append(line)


def verify_proof(proof: Proof, *, content_sha256: bytes | None = None) -> Report:
    """Verify ``proof`` offline; raise :class:`VerificationError` on the first failed step.

    ``content_sha256``: the digest of the record as the auditor holds it; when
    given, it must equal the digest the proof commits to.
    """
    report = Report()
    rec = proof.record
    # Step 1: the leaf hash is the commitment to exactly these record fields.
    leaf = record_leaf_hash(rec.agency, rec.id, bytes.fromhex(rec.content_sha256), bytes.fromhex(rec.salt))
    if leaf.hex() != proof.leaf_hash:
        raise VerificationError(f"leaf hash {proof.leaf_hash} does not commit to the record (computed {leaf.hex()})")
    report.ok(f"leaf hash commits to agency {rec.agency!r}, record {rec.id!r}")
    # Step 2: the auditor's copy of the record is the one committed to.
    if content_sha256 is not None:
        if content_sha256.hex() != rec.content_sha256:
            raise VerificationError(
                f"record content hashes to {content_sha256.hex()}, the proof commits to {rec.content_sha256}"
            )
        report.ok("record content matches content_sha256")
    # Step 3: the leaf is in the batch under the stated root.
    b = proof.batch
    merkle.verify_inclusion(b.index, b.size, leaf, [bytes.fromhex(h) for h in b.path], bytes.fromhex(b.root))
    report.ok(f"leaf {b.index} of {b.size} is included in batch {b.id} with root {b.root}")
    return report

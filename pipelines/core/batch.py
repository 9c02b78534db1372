"""Sealing a batch: record commitments in, Merkle root and every record's proof out. No I/O."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.core.anchors import Anchor
from pipelines.core.commitment import SALT_SIZE, RecordInput, check_agency, record_leaf_hash
from pipelines.core.logentry import BatchHead
from pipelines.core.merkle import Tree
from pipelines.core.proof import proof_document


def now_timestamp() -> str:
    """The current UTC time as a batch's ``sealed_at`` (RFC 3339, whole seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_batch_id(sealed_at: str) -> str:
    """A fresh batch id: the compact seal time and 32 random bits (``20260101T120000Z-1a2b3c4d``)."""
    compact = sealed_at.replace("-", "").replace(":", "")
    return f"{compact}-{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Commitment:
    """What one leaf commits to. ``content_sha256`` and ``salt`` are 32 bytes each."""

    agency: str
    record_id: str
    content_sha256: bytes
    salt: bytes


class SealedBatch:
    """A batch of commitments under one Merkle root, able to emit any record's proof.

    Sealing costs one leaf hash per record and n - 1 node hashes; each proof
    then costs O(log n) lookups (see :class:`Tree`).
    """

    def __init__(self, batch_id: str, sealed_at: str, commitments: Sequence[Commitment]) -> None:
        """Preconditions: at least one commitment; ids unique per agency (the caller's duty)."""
        self.id = batch_id
        self.sealed_at = sealed_at
        self.commitments = commitments
        self.leaf_hashes = [
            record_leaf_hash(c.agency, c.record_id, c.content_sha256, c.salt) for c in commitments
        ]
        self.tree = Tree(self.leaf_hashes)

    def proofs(self, anchors: Sequence[Anchor] = ()) -> Iterator[dict[str, Any]]:
        """Every proof document, in leaf order (paths computed all at once, anchors dumped once)."""
        docs = _anchor_docs(anchors)
        for i, path in enumerate(self.tree.all_paths(as_hex=True)):
            yield self._document(i, docs, path)

    @property
    def size(self) -> int:
        return self.tree.size

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def head(self) -> BatchHead:
        return BatchHead(self.id, self.root, self.size, self.sealed_at)

    def proof(self, index: int, anchors: Sequence[Anchor] = ()) -> dict[str, Any]:
        """The proof document (format v1) of the record at ``index``."""
        return self._document(index, _anchor_docs(anchors), tuple(h.hex() for h in self.tree.path(index)))

    def _document(self, index: int, anchors: list[dict[str, Any]], path: Sequence[str]) -> dict[str, Any]:
        c = self.commitments[index]
        return proof_document(
            agency=c.agency,
            record_id=c.record_id,
            content_sha256=c.content_sha256,
            salt=c.salt,
            leaf_hash=self.leaf_hashes[index],
            batch_id=self.id,
            index=index,
            size=self.size,
            root=self.root,
            path=path,
            sealed_at=self.sealed_at,
            anchors=anchors,
        )


def _anchor_docs(anchors: Sequence[Anchor]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in anchors]


def seal_records(agency: str, records: Sequence[RecordInput]) -> SealedBatch:
    """Seal ``records`` of one agency into a new batch with fresh random salts.

    Preconditions (checked): a valid agency name and at least one record.
    """
    check_agency(agency)
    if not records:
        raise ValueError("a batch needs at least one record")
    sealed_at = now_timestamp()
    commitments = [Commitment(agency, r.id, r.content_sha256, secrets.token_bytes(SALT_SIZE)) for r in records]
    return SealedBatch(new_batch_id(sealed_at), sealed_at, commitments)

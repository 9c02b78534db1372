"""Sealing a batch: record commitments in, Merkle root and every record's proof out. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.core.commitment import record_leaf_hash
from pipelines.core.merkle import Tree
from pipelines.core.proof import proof_document


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

    def proofs(self, anchors: list[dict[str, Any]] | None = None):
        """Every proof document, in leaf order (paths computed all at once)."""
        for i, path in enumerate(self.tree.all_paths(as_hex=True)):
            yield self.proof(i, anchors, path)

    @property
    def size(self) -> int:
        return self.tree.size

    @property
    def root(self) -> bytes:
        return self.tree.root

    def proof(self, index: int, anchors: list[dict[str, Any]] | None = None,
              path: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The proof document (format v1) of the record at ``index`` (``path``: its hex path, if known)."""
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
            path=path if path is not None else [h.hex() for h in self.tree.path(index)],
            sealed_at=self.sealed_at,
            anchors=anchors,
        )

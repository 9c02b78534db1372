"""The built-in ledger: an append-only C2SP tlog-tiles log of batch entries on an ObjectStore.

Layout under the store (see docs/ledgers.md):

- ``checkpoint``: the signed checkpoint, the only mutable object the sequencer writes;
- ``anchorpipe/cosigned-checkpoint``: the newest checkpoint witnesses were asked
  to cosign, with the cosignatures it got (written by the witnessing stage, only
  ever to a larger size);
- ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``: C2SP tlog-tiles;
- ``anchorpipe/sequenced/<size>``: the entries appended to the log at ``size``
  (an entry bundle), written once before any tile, so a crashed append is
  finished the same way by whoever comes next;
- ``anchorpipe/batches/<batch id>``: the batch's log index and leaf hash, so
  anchoring a batch again returns its first index instead of a second entry.

One sequencer at a time: every append stages at the current size with a
create-once put and publishes the checkpoint with a compare-and-swap on its
version, so two racing sequencers cannot fork the log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.core import merkle, tiles
from pipelines.core.anchors import TlogAnchor
from pipelines.core.checkpoint import Checkpoint, open_checkpoint
from pipelines.core.logentry import BatchHead, parse_batch_entry
from pipelines.core.framing import MAX_LP
from pipelines.core.note import MAX_NOTE_BYTES, Signer, Verifier, sign_note
from pipelines.errors import ConflictError, LogStateError, StorageError, VerificationError
from pipelines.storage import ObjectStore, get_all, put_all

CHECKPOINT = "checkpoint"
COSIGNED = "anchorpipe/cosigned-checkpoint"
SEQUENCED = "anchorpipe/sequenced/{size}"
BATCH = "anchorpipe/batches/{batch_id}"
MAX_ROUNDS = 20

# The most each kind of object may hold, from the formats (a log read by an auditor may be hostile): a
# checkpoint is a signed note; a hash tile holds at most 256 hashes; an entry tile at most 256 entries of
# at most 2 + 65,535 bytes each (C2SP tlog-tiles' length prefix); a batch's index document is tiny.
MAX_CHECKPOINT_BYTES = MAX_NOTE_BYTES
MAX_HASH_TILE_BYTES = tiles.TILE_WIDTH * merkle.HASH_SIZE
MAX_ENTRY_TILE_BYTES = tiles.TILE_WIDTH * (2 + MAX_LP)
MAX_INDEX_DOC_BYTES = 4096


@dataclass(frozen=True)
class Head:
    """A verified checkpoint, its signed note, and its storage version."""

    checkpoint: Checkpoint
    note: str
    version: str


class LogReader:
    """Read-only access to a log, trusting only the pinned ``verifiers`` (for auditors)."""

    def __init__(self, store: ObjectStore, verifiers: list[Verifier], origin: str | None = None) -> None:
        self.store, self.verifiers, self.origin = store, verifiers, origin

    def head(self) -> Head:
        found = self.store.get_versioned(CHECKPOINT, MAX_CHECKPOINT_BYTES)
        if found is None:
            raise LogStateError(f"no log at {self.store.describe()} (no checkpoint)")
        note = found[0].decode("utf-8", "replace")
        return Head(open_checkpoint(note, self.verifiers, self.origin), note, found[1])

    def read_tile(self, level: int, index: int, width: int) -> bytes:
        return self._must(tiles.tile_path(level, index, width), min(width * merkle.HASH_SIZE, MAX_HASH_TILE_BYTES))

    def read_bundle(self, index: int, width: int) -> bytes:
        return self._must(tiles.entries_path(index, width), MAX_ENTRY_TILE_BYTES)

    def _must(self, key: str, limit: int) -> bytes:
        data = self.store.get(key, limit)
        if data is None:
            raise LogStateError(f"{key} is missing from {self.store.describe()}")
        return data

    def tree(self, size: int) -> tiles.TiledTree:
        return tiles.TiledTree(size, self.read_tile)

    def check_tiles(self, head: Head) -> None:
        """Recompute the checkpoint's root from the tiles; raise LogStateError on any mismatch."""
        try:
            root = self.tree(head.checkpoint.size).root()
        except ValueError as exc:
            raise LogStateError(f"tiles of {self.store.describe()} are malformed: {exc}") from exc
        if root != head.checkpoint.root:
            raise LogStateError(
                f"tiles of {self.store.describe()} give root {root.hex()} at size {head.checkpoint.size}, "
                f"the checkpoint says {head.checkpoint.root.hex()}"
            )

    def consistency(self, old: Checkpoint, head: Head) -> list[bytes]:
        """A consistency proof from ``old`` to ``head``, checked before it is returned."""
        new = head.checkpoint
        if old.origin != new.origin:
            raise VerificationError(f"checkpoints are of different logs: {old.origin!r} and {new.origin!r}")
        if old.size > new.size:
            raise VerificationError(f"old checkpoint size {old.size} is beyond the log's size {new.size}")
        if old.size == 0:
            return []
        proof = self.tree(new.size).consistency_proof(old.size)
        merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
        return proof

    def entries(self, size: int) -> list[bytes]:
        """Every entry of the log up to ``size``, read from its entry tiles (C2SP tlog-tiles), in order."""
        out: list[bytes] = []
        for n in range(-(-size // tiles.TILE_WIDTH)):
            width = min(tiles.TILE_WIDTH, size - n * tiles.TILE_WIDTH)
            try:
                chunk = tiles.unbundle(self.read_bundle(n, width))
            except ValueError as exc:
                raise LogStateError(f"entry tile {n} of {self.store.describe()} is malformed: {exc}") from exc
            if len(chunk) != width:
                raise LogStateError(f"entry tile {n} of {self.store.describe()} holds {len(chunk)} entries, want {width}")
            out += chunk
        return out

    def consistency_proof(self, old_size: int, head: Head) -> list[bytes]:
        """The consistency proof from ``old_size`` to ``head`` (empty from 0 or to the same size)."""
        if not 0 < old_size < head.checkpoint.size:
            return []
        return self.tree(head.checkpoint.size).consistency_proof(old_size)

    def cosigned(self) -> Head | None:
        """The newest cosigned checkpoint (its note carries the witnesses' cosignatures), verified with the
        log's keys; None before witnesses cosigned any."""
        found = self.store.get_versioned(COSIGNED, MAX_CHECKPOINT_BYTES)
        if found is None:
            return None
        note = found[0].decode("utf-8", "replace")
        return Head(open_checkpoint(note, self.verifiers, self.origin), note, found[1])

    def publish_cosigned(self, head: Head, note: str) -> bool:
        """Publish ``note`` (``head``'s checkpoint with cosignatures) unless a larger one is published; a
        compare-and-swap, so the published size never goes down."""
        for _ in range(MAX_ROUNDS):
            current = self.cosigned()
            if current is not None and current.checkpoint.size >= head.checkpoint.size:
                return False
            try:
                self.store.put_if_version(COSIGNED, note.encode(), current.version if current else None)
                return True
            except ConflictError:
                continue
        return False

    def batch_indexes(self, batch_ids: list[str]) -> list[tuple[int, str] | None]:
        raws = get_all(self.store, [BATCH.format(batch_id=b) for b in batch_ids], limit=MAX_INDEX_DOC_BYTES)
        return [None if raw is None else _index_doc(raw) for raw in raws]

    def receipts(self, batch_ids: Sequence[str], head: Head) -> dict[str, TlogAnchor]:
        """The ``tlog`` anchor receipt of each batch at checkpoint ``head`` (see docs/ledgers.md)."""
        tree = self.tree(head.checkpoint.size)
        out = {}
        for batch_id, found in zip(batch_ids, self.batch_indexes(list(batch_ids)), strict=True):
            if found is None or found[0] >= head.checkpoint.size:
                raise LogStateError(f"batch {batch_id} is not in the log at size {head.checkpoint.size}")
            out[batch_id] = TlogAnchor(type="tlog", origin=head.checkpoint.origin, index=found[0],
                                       path=tuple(h.hex() for h in tree.inclusion_proof(found[0])),
                                       checkpoint=head.note)
        return out


def _index_doc(raw: bytes) -> tuple[int, str]:
    doc = json.loads(raw)
    return doc["index"], doc["leaf_hash"]


class TransparencyLog(LogReader):
    """The sequencer: appends batch entries and signs checkpoints with ``signers``. A :class:`Ledger`."""

    def __init__(self, store: ObjectStore, signers: list[Signer]) -> None:
        if not signers:
            raise ValueError("a sequencer needs at least one signer key")
        super().__init__(store, [s.verifier() for s in signers], signers[0].name)
        self.origin: str = signers[0].name
        self.signers = signers

    @classmethod
    def create(cls, store: ObjectStore, signers: list[Signer]) -> TransparencyLog:
        """Initialise an empty log (size 0); an existing log with the same key is left as it is."""
        log = cls(store, signers)
        empty = sign_note(Checkpoint(log.origin, 0, merkle.EMPTY_ROOT).text(), signers)
        try:
            store.put_if_version(CHECKPOINT, empty.encode(), None)
        except ConflictError:
            log.head()  # exists: it must verify with our key and origin
        return log

    @classmethod
    def open(cls, store: ObjectStore, signers: list[Signer]) -> TransparencyLog:
        """Open an existing log, refusing to run if storage disagrees with the checkpoint.

        An append that a crash interrupted after its commit point 1 is finished here.
        """
        log = cls(store, signers)
        head = log.head()
        log.check_tiles(head)
        if log.store.get(SEQUENCED.format(size=head.checkpoint.size)) is not None:
            log.append([])
        return log

    def anchor(self, heads: Sequence[BatchHead]) -> dict[str, TlogAnchor]:
        """Append each batch's entry (once per batch id) and return its receipt under the new checkpoint."""
        self.append([(h.id, h.entry()) for h in heads])
        return self.receipts([h.id for h in heads], self.head())

    def append(self, items: list[tuple[str, bytes]]) -> dict[str, int]:
        """Append ``(batch id, entry)`` items; return every batch's log index.

        Idempotent per batch id: a batch already in the log keeps its index and
        gets no second entry; the same batch id with a different entry raises
        ConflictError. Returns once a checkpoint covering every item is published.
        """
        entries: dict[str, bytes] = {}
        for batch_id, entry in items:
            if entries.setdefault(batch_id, entry) != entry:
                raise ConflictError(f"batch {batch_id} is given twice with different entries")
        items = list(entries.items())
        indices: dict[str, int] = {}
        for _ in range(MAX_ROUNDS):
            head = self.head()
            size = head.checkpoint.size
            staged = self.store.get(SEQUENCED.format(size=size))
            if staged is not None:  # an append at this size was begun: finish it first
                self._publish(head, tiles.unbundle(staged))
                continue
            pending = []
            for (batch_id, entry), known in zip(items, self.batch_indexes([b for b, _ in items]), strict=True):
                if known is None:
                    pending.append(entry)
                elif known[1] != merkle.leaf_hash(entry).hex():
                    raise ConflictError(f"batch {batch_id} is already in the log with a different entry")
                elif known[0] < size:
                    indices[batch_id] = known[0]
                else:
                    break  # staged by a racing sequencer since we read the head: reload
            else:
                if not pending:
                    return indices
                try:
                    # Commit point 1: positions size.. of these entries are decided for good.
                    self.store.put_immutable(SEQUENCED.format(size=size), tiles.bundle(pending))
                except ConflictError:
                    continue  # another sequencer staged first; finish its append next round
                self._publish(head, pending)
        raise StorageError(f"could not append to {self.store.describe()}: the log kept changing", transient=True)

    def _publish(self, head: Head, entries: list[bytes]) -> None:
        """Write index objects and tiles for staged ``entries``, then swap in the new checkpoint."""
        old = head.checkpoint
        writes = tiles.append(old.size, entries, self.read_tile, self.read_bundle)
        indexes = {}
        for offset, entry in enumerate(entries):
            doc = {"index": old.size + offset, "leaf_hash": merkle.leaf_hash(entry).hex()}
            indexes[BATCH.format(batch_id=parse_batch_entry(entry)[0])] = json.dumps(doc, sort_keys=True).encode()
        put_all(self.store, {**indexes, **writes})
        new_size = old.size + len(entries)
        tree = tiles.TiledTree(new_size, lambda lv, i, w: writes.get(tiles.tile_path(lv, i, w)) or self.read_tile(lv, i, w))
        root = tree.root()
        if old.size:  # never sign a checkpoint that does not extend the previous one
            merkle.verify_consistency(old.size, new_size, tree.consistency_proof(old.size), old.root, root)
        note = sign_note(Checkpoint(old.origin, new_size, root).text(), self.signers)
        try:
            # Commit point 2: the new checkpoint is published.
            self.store.put_if_version(CHECKPOINT, note.encode(), head.version)
        except ConflictError:
            pass  # a racing sequencer published this same staged append; the caller reloads

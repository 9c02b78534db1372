"""The anchoring port: ledgers that attest sealed batches, and the built-in log behind it.

Every ledger adapter turns batch heads into receipts that ``pipelines.core.verify``
checks offline. The built-in transparency log (:mod:`.tlog`) is the first;
external anchors (RFC 3161 TSAs, EVM chains) and witnesses live beside it
(:mod:`.tsa`, :mod:`.evm`, :mod:`.witness`), the log's keys in :mod:`.keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipelines.core.anchors import Anchor
from pipelines.core.logentry import BatchHead


class Ledger(Protocol):
    """Anchors sealed batches. Contract for every adapter:

    - ``anchor(heads)`` returns a receipt for every head, keyed by batch id, as
      core models that :mod:`pipelines.core.verify` checks offline.
    - Idempotent per batch id: a batch anchored before gets a receipt for its
      first anchoring, never a second entry; the same id with another root,
      size or seal time raises :class:`~pipelines.errors.ConflictError`.
    - Durable on return: every receipt returned stays valid after any crash.
    - Failures raise :class:`~pipelines.errors.StorageError` (``transient`` when
      a retry may help); a failed call may have anchored some batches, which a
      retry then finds instead of anchoring them again.
    """

    def anchor(self, heads: Sequence[BatchHead]) -> dict[str, Anchor]:
        ...

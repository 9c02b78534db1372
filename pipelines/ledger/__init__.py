"""The anchoring port: ledgers that attest sealed batches, and the built-in log behind it.

The ports the stages use (:class:`Ledger`, :class:`TimestampAuthority`, :class:`Chain`,
:class:`Witness`) are declared here; the adapters implement them. Every ledger adapter turns batch heads into receipts that ``pipelines.core.verify``
checks offline. The built-in transparency log (:mod:`.tlog`) is the first;
external anchors (RFC 3161 TSAs, EVM chains) and witnesses live beside it
(:mod:`.tsa`, :mod:`.evm`, :mod:`.witness`), the log's keys in :mod:`.keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipelines.core.anchors import Anchor, EvmAnchor, TsaAnchor
from pipelines.core.logentry import BatchHead
from pipelines.errors import AnchorpipeError


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


class TimestampAuthority(Protocol):
    """An RFC 3161 time-stamping authority (adapter: :class:`.tsa.TsaClient`)."""

    url: str

    def timestamp(self, checkpoint_note: str) -> TsaAnchor:
        """A token over the signed checkpoint ``note``, checked against the pinned roots before it is returned;
        StorageError (``transient`` for timeouts and 5xx) when none can be had."""
        ...


@dataclass(frozen=True)
class Signed:
    """A signed anchoring transaction, kept (in the state) before it is sent."""

    raw: bytes
    tx_hash: str
    nonce: int
    max_fee: int
    tip: int


class Chain(Protocol):
    """An EVM chain that anchors checkpoints in transactions (adapter: :class:`.evm.EvmChain`). A transaction
    is signed before it is sent, so that the state keeps it first and a crash never anchors twice."""

    def head(self) -> int:
        """The newest block's number."""
        ...

    def next_nonce(self) -> int:
        """The sender's next nonce, counting only mined transactions."""
        ...

    def sign(self, checkpoint_text: str, nonce: int, bump: Signed | None = None) -> Signed:
        """The anchoring transaction of ``checkpoint_text`` at ``nonce`` (with ``bump``: its replacement at
        higher fees), signed and not sent."""
        ...

    def send(self, raw: bytes) -> None:
        """Send signed bytes; sending the same bytes again is harmless."""
        ...

    def mined(self, tx_hash: str) -> tuple[int, str] | None:
        """(block number, block hash) holding ``tx_hash`` now; None if not mined."""
        ...

    def receipt(self, tx_hash: str, checkpoint_note: str, checkpoint_text: str) -> EvmAnchor:
        """The self-contained receipt of a mined transaction, checked as a verifier will check it."""
        ...


class WitnessError(AnchorpipeError):
    """A witness refused or could not be asked (``status`` its HTTP status, if any)."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status, self.transient = status, transient


class WitnessConflict(WitnessError):
    """The witness holds another size for the log (``size``) than the request's old size."""

    def __init__(self, witness: str, size: int) -> None:
        super().__init__(f"witness {witness} holds size {size}", status=409)
        self.size = size


class Witness(Protocol):
    """A C2SP tlog-witness that cosigns the log's checkpoints (adapter: :class:`.witness.WitnessClient`)."""

    name: str

    @property
    def where(self) -> str:
        """The witness's scheme, host and port: what may be shown."""
        ...

    def add_checkpoint(self, old: int, proof: Sequence[bytes], note: str) -> str:
        """The witness's verified cosignature line(s) of ``note``, extending the ``old`` size it holds by
        ``proof``; WitnessConflict with the size it holds when ``old`` is not it, WitnessError otherwise."""
        ...

    def close(self) -> None: ...

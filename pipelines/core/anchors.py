"""Anchor receipts carried in a proof's ``anchors`` list, one model per ledger kind.

Each receipt can be checked offline (see pipelines.core.verify). Kinds are told
apart by their ``type`` member; an unknown type is a format error, never
silently accepted. External receipts (``tsa``, ``evm``) attest a log
checkpoint; the batch's path into that checkpoint's tree is the ``tlog``
receipt of the same proof that carries the same checkpoint (docs/ledgers.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, TypeAdapter

from pipelines.core.fields import Hex32

Note = Annotated[str, StringConstraints(min_length=1, max_length=16384)]
HexBytes = Annotated[str, StringConstraints(pattern=r"^([0-9a-f]{2})*$", max_length=262144)]


class _Receipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlogAnchor(_Receipt):
    """The batch's entry in anchorpipe's built-in transparency log."""

    type: Literal["tlog"]
    origin: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    index: Annotated[StrictInt, Field(ge=0)]
    path: tuple[Hex32, ...] = Field(max_length=64)
    checkpoint: Note


class TsaAnchor(_Receipt):
    """An RFC 3161 time-stamp token over SHA-256 of the UTF-8 bytes of ``checkpoint`` (the signed note)."""

    type: Literal["tsa"]
    #: Who issued it (the TSA's URL as configured); informative only, the token's signer decides.
    tsa: Annotated[str, StringConstraints(max_length=512)]
    checkpoint: Note
    #: The TimeStampToken (a CMS ContentInfo), DER, base64.
    token: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]+={0,2}$", max_length=65536)]


class EvmAnchor(_Receipt):
    """A transaction on an EVM chain whose data commits to ``checkpoint``'s text, with what proves it is in
    block ``block_hash``: the raw transaction, its Merkle-Patricia proof under the header's
    ``transactionsRoot``, and the header (RLP), which hashes to ``block_hash``."""

    type: Literal["evm"]
    checkpoint: Note
    chain_id: Annotated[StrictInt, Field(ge=1)]
    tx_hash: Hex32
    block_number: Annotated[StrictInt, Field(ge=0)]
    block_hash: Hex32
    tx_index: Annotated[StrictInt, Field(ge=0)]
    raw_tx: HexBytes
    trie_proof: tuple[HexBytes, ...] = Field(max_length=64)
    header: HexBytes


Anchor = Annotated[TlogAnchor | TsaAnchor | EvmAnchor, Field(discriminator="type")]
ExternalAnchor = TsaAnchor | EvmAnchor
#: Every anchor kind a verifier knows (``anchorpipe verify --require KIND``).
ANCHOR_KINDS = frozenset({"tlog", "tsa", "evm"})

_ANCHOR: TypeAdapter[TlogAnchor | TsaAnchor | EvmAnchor] = TypeAdapter(Anchor)


def parse_anchor(raw: str | bytes) -> TlogAnchor | TsaAnchor | EvmAnchor:
    """One anchor receipt from its JSON (as the pipeline stores it between stages); ValueError if malformed."""
    return _ANCHOR.validate_json(raw)

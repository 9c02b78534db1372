"""EVM anchors: what the transaction carries, and the offline check of its inclusion in a block. No I/O.

The check recomputes, with the Ethereum Foundation's libraries (rlp, trie,
eth-hash): the transaction's hash from its raw bytes; its chain id and data
(which must commit to the checkpoint); its Merkle-Patricia proof under the
header's ``transactionsRoot``; and the block hash from the header. What it
cannot know offline is whether that block is on the canonical chain: the
caller decides that with a block hash the auditor pinned or a node they trust.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth_hash.auto import keccak
from trie.hexary import HexaryTrie
from trie.exceptions import BadTrieProof, InvalidKeyError, NodeOverrideError
from trie.exceptions import ValidationError as TrieNodeError

from pipelines.core.anchors import EvmAnchor
from pipelines.errors import VerificationError

#: The transaction data: this tag, then the checkpoint's text (origin, size, root), readable in any explorer.
PAYLOAD_TAG = b"anchorpipe.checkpoint/1\n"
_TX_ROOT, _NUMBER, _TIMESTAMP = 4, 8, 11  # positions in the header's RLP list (every fork since Frontier)


@dataclass(frozen=True)
class Block:
    """The block a verified receipt's transaction is in (still to be found canonical)."""

    chain_id: int
    number: int
    hash: str
    timestamp: int


def anchor_payload(checkpoint_text: str) -> bytes:
    return PAYLOAD_TAG + checkpoint_text.encode()


def tx_chain_and_data(raw: bytes) -> tuple[int, bytes]:
    """Chain id and data of a signed transaction (legacy EIP-155, EIP-2930 or EIP-1559)."""
    try:
        if raw and raw[0] in (1, 2):
            fields = rlp.decode(raw[1:])
            return int.from_bytes(fields[0], "big"), bytes(fields[6 if raw[0] == 1 else 7])
        fields = rlp.decode(raw)
        v = int.from_bytes(fields[6], "big")
        if v < 35:
            raise VerificationError("transaction: a legacy transaction without a chain id (EIP-155) replays anywhere")
        return (v - 35) // 2, bytes(fields[5])
    except (rlp.exceptions.DecodingError, IndexError, TypeError) as exc:
        raise VerificationError(f"transaction: raw_tx is not a signed transaction ({exc})") from None


def verify_evm_receipt(a: EvmAnchor, checkpoint_text: str) -> Block:
    """Check that ``a``'s transaction commits to ``checkpoint_text`` and is in the block ``a`` names."""
    raw = bytes.fromhex(a.raw_tx)
    if keccak(raw).hex() != a.tx_hash:
        raise VerificationError(f"transaction: raw_tx hashes to {keccak(raw).hex()}, not tx_hash {a.tx_hash}")
    chain_id, data = tx_chain_and_data(raw)
    if chain_id != a.chain_id:
        raise VerificationError(f"chain id: the transaction is for chain {chain_id}, the receipt says {a.chain_id}")
    if data != anchor_payload(checkpoint_text):
        raise VerificationError("transaction data: it does not commit to the checkpoint the receipt names")
    header = bytes.fromhex(a.header)
    if keccak(header).hex() != a.block_hash:
        raise VerificationError(f"header: it hashes to {keccak(header).hex()}, not block_hash {a.block_hash}")
    try:
        fields = rlp.decode(header)
        tx_root, number = bytes(fields[_TX_ROOT]), int.from_bytes(fields[_NUMBER], "big")
        timestamp = int.from_bytes(fields[_TIMESTAMP], "big")
    except (rlp.exceptions.DecodingError, IndexError, TypeError) as exc:
        raise VerificationError(f"header: not a block header ({exc})") from None
    if number != a.block_number:
        raise VerificationError(f"header: it is of block {number}, the receipt says {a.block_number}")
    try:
        nodes = tuple(rlp.decode(bytes.fromhex(n)) for n in a.trie_proof)
        found = HexaryTrie.get_from_proof(tx_root, rlp.encode(a.tx_index), nodes)  # type: ignore[no-untyped-call]
    except (BadTrieProof, TrieNodeError, InvalidKeyError, NodeOverrideError, rlp.exceptions.DecodingError, ValueError,
            TypeError) as exc:
        raise VerificationError(f"trie proof: it does not verify under the header's transactionsRoot ({exc})"
                                ) from None
    if found != raw:
        raise VerificationError(f"trie proof: transaction {a.tx_index} under the header's transactionsRoot is not "
                                "raw_tx")
    return Block(chain_id, number, a.block_hash, timestamp)

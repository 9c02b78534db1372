"""Writing checkpoints to an EVM chain over JSON-RPC (web3.py), and collecting what proves the inclusion.

One transaction per anchoring: to the sender's own address, value 0, data
``anchorpipe.checkpoint/1\\n`` plus the checkpoint text (see pipelines.core.evm).
The caller keeps the signed bytes before sending them, so a crash never sends a
second transaction for the same checkpoint: it sends the same bytes again.
A transaction stuck below the market is replaced by the same nonce at a higher
fee (:meth:`EvmChain.sign` with ``bump``), never by a second nonce.

The receipt (:meth:`EvmChain.receipt`) carries the raw transaction, its
Merkle-Patricia proof under the block's ``transactionsRoot`` and the block
header's RLP, rebuilt from the node's JSON and checked against the block hash,
so a verifier needs no node but one block hash it trusts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import sys

_RECURSION_LIMIT = sys.getrecursionlimit()

import rlp
from eth_account import Account
from eth_hash.auto import keccak
from trie.hexary import HexaryTrie
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3Exception

# py_ecc (imported under eth_account) raises the process's recursion limit to 100,000 for its own pairing
# code, which anchorpipe never calls: restored, so that deeply nested JSON still raises RecursionError
# instead of overflowing the C stack (the limit every JSON entry point relies on).
sys.setrecursionlimit(_RECURSION_LIMIT)

from pipelines.core.anchors import EvmAnchor
from pipelines.core.evm import anchor_payload, verify_evm_receipt
from pipelines.errors import ConfigError, StorageError
from pipelines.ledger import Signed

#: Header fields in RLP order; those after ``nonce`` exist from a fork on (London, Shanghai, Cancun, Prague) and
#: are present in the node's JSON exactly when the block has them.
_HEADER = ("parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot", "receiptsRoot", "logsBloom",
           "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "extraData", "mixHash", "nonce",
           "baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot",
           "requestsHash")
_INTS = {"difficulty", "number", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas", "blobGasUsed", "excessBlobGas"}


class EvmChain:
    """One chain, one sending key. Errors are :class:`StorageError` (transient: the node or the network)."""

    def __init__(self, rpc_url: str, private_key: str, *, chain_id: int | None = None, timeout: float = 10.0) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        try:
            self.account = Account.from_key(private_key.strip())
        except (ValueError, TypeError):
            raise ConfigError("the EVM key is not a 32-byte hex private key") from None  # never echo the key
        self.address = self.account.address
        self.expected_chain_id = chain_id
        self._chain_id: int | None = None
        parts = urlsplit(rpc_url)  # for messages: never credentials, nor a provider's key in the path
        self.rpc = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
        self._url = rpc_url

    def __repr__(self) -> str:
        return f"EvmChain({self.rpc}, sender {self.address})"

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (OSError, Web3Exception, ValueError) as exc:
            raise StorageError(f"EVM node {self.rpc}: {what} failed: {type(exc).__name__}: {self._scrub(exc)}",
                               transient=True) from None

    def _scrub(self, exc: Exception) -> str:
        """An error's text without the node's full URL (a provider's API key is often in its path)."""
        return str(exc).replace(self._url, self.rpc + "/***")[:200]

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            cid = int(self._call("eth_chainId", lambda: self.w3.eth.chain_id))
            if self.expected_chain_id is not None and cid != self.expected_chain_id:
                raise ConfigError(f"EVM node {self.rpc} serves chain {cid}, not the configured "
                                  f"ANCHORPIPE_EVM_CHAIN_ID {self.expected_chain_id}")
            self._chain_id = cid
        return self._chain_id

    def head(self) -> int:
        return int(self._call("eth_blockNumber", lambda: self.w3.eth.block_number))

    def balance(self) -> int:
        """The anchoring account's balance in wei."""
        return int(self._call("eth_getBalance", self.w3.eth.get_balance, self.address))

    def next_nonce(self) -> int:
        """The sender's next nonce counting only mined transactions (what a replacement must reuse)."""
        return int(self._call("eth_getTransactionCount", self.w3.eth.get_transaction_count, self.address, "latest"))

    def sign(self, checkpoint_text: str, nonce: int, bump: Signed | None = None) -> Signed:
        """Sign the anchoring transaction of ``checkpoint_text`` at ``nonce``; with ``bump``, a replacement of
        that transaction paying at least 25 % more (nodes want 10 % or more to replace)."""
        data = anchor_payload(checkpoint_text)
        base = int(self._call("eth_getBlock", self.w3.eth.get_block, "latest").get("baseFeePerGas") or 0)
        tip = int(self._call("eth_maxPriorityFeePerGas", lambda: self.w3.eth.max_priority_fee))
        max_fee = 2 * base + tip
        if bump is not None:
            tip = max(tip, bump.tip * 5 // 4 + 1)
            max_fee = max(max_fee, bump.max_fee * 5 // 4 + 1, tip)
        tx = {"type": 2, "chainId": self.chain_id, "nonce": nonce, "to": self.address, "value": 0, "data": data,
              "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
        tx["gas"] = int(self._call("eth_estimateGas", self.w3.eth.estimate_gas,
                                   {"from": self.address, "to": self.address, "value": 0, "data": data}))
        signed = self.account.sign_transaction(tx)
        return Signed(bytes(signed.raw_transaction), keccak(bytes(signed.raw_transaction)).hex(), nonce, max_fee, tip)

    def send(self, raw: bytes) -> None:
        """Send signed bytes; sending the same bytes again is harmless (the node knows them, or mined them)."""
        try:
            self.w3.eth.send_raw_transaction(raw)
        except (Web3Exception, ValueError) as exc:
            msg = str(exc).lower()
            if "already known" in msg or "already imported" in msg or "nonce too low" in msg:
                return  # in the pool, or mined (or its nonce used): the caller's receipt check tells which
            raise StorageError(f"EVM node {self.rpc}: sending failed: {self._scrub(exc)}", transient=True) from None
        except OSError as exc:
            raise StorageError(f"EVM node {self.rpc}: sending failed: {type(exc).__name__}", transient=True) from None

    def mined(self, tx_hash: str) -> tuple[int, str] | None:
        """(block number, block hash) holding ``tx_hash`` on the node's chain now; None if not mined (or
        dropped by a reorg)."""
        try:
            r = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except (OSError, Web3Exception, ValueError) as exc:
            raise StorageError(f"EVM node {self.rpc}: receipt of {tx_hash} failed: {type(exc).__name__}",
                               transient=True) from None
        return int(r["blockNumber"]), bytes(r["blockHash"]).hex()

    def block_hash(self, number: int) -> str | None:
        try:
            return bytes(self.w3.eth.get_block(number)["hash"]).hex()
        except Web3Exception:
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"EVM node {self.rpc}: block {number} failed: {type(exc).__name__}",
                               transient=True) from None

    def receipt(self, tx_hash: str, checkpoint_note: str, checkpoint_text: str) -> EvmAnchor:
        """The self-contained receipt of a mined transaction, checked as a verifier will check it."""
        found = self.mined(tx_hash)
        if found is None:
            raise StorageError(f"transaction {tx_hash} is not mined on {self.rpc}", transient=True)
        block = self._call("eth_getBlockByNumber", self.w3.eth.get_block, found[0], True)
        header = header_rlp(block)
        if keccak(header).hex() != bytes(block["hash"]).hex():
            raise StorageError(f"cannot rebuild the header of block {found[0]} from {self.rpc}: its fields are not "
                               "the ones this version knows", transient=False)
        raws = [bytes(self._call("eth_getRawTransactionByHash", self.w3.eth.get_raw_transaction, tx["hash"]))
                for tx in block["transactions"]]
        hashes = [bytes(tx["hash"]).hex() for tx in block["transactions"]]
        index = hashes.index(tx_hash)
        tree = HexaryTrie({})
        for i, raw in enumerate(raws):
            tree[rlp.encode(i)] = raw
        if tree.root_hash != bytes(block["transactionsRoot"]):
            raise StorageError(f"the transactions of block {found[0]} from {self.rpc} do not give its "
                               "transactionsRoot", transient=True)
        proof = tree.get_proof(rlp.encode(index))  # type: ignore[no-untyped-call]
        anchor = EvmAnchor(type="evm", checkpoint=checkpoint_note, chain_id=self.chain_id, tx_hash=tx_hash,
                           block_number=found[0], block_hash=bytes(block["hash"]).hex(), tx_index=index,
                           raw_tx=raws[index].hex(), trie_proof=tuple(rlp.encode(n).hex() for n in proof),
                           header=header.hex())
        verify_evm_receipt(anchor, checkpoint_text)
        return anchor


def header_rlp(block: Any) -> bytes:
    """A block header's RLP from the node's JSON (the fields it has, in their order)."""
    fields: list[Any] = []
    for name in _HEADER:
        if name not in block or block[name] is None:
            if _HEADER.index(name) <= _HEADER.index("nonce"):
                raise StorageError(f"block {block.get('number')} lacks header field {name}", transient=False)
            break
        value = block[name]
        if name == "miner":
            fields.append(bytes.fromhex(str(value)[2:]))
        elif name in _INTS:
            fields.append(int(value))
        else:
            fields.append(bytes(value))
    return bytes(rlp.encode(fields))

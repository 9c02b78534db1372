"""What an auditor pins for external anchors, read from files, and the one network check they may ask for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.cli.common import load_json, read_bytes
from pipelines.core.cosignature import WitnessKey
from pipelines.core.evm import Block
from pipelines.core.policy import CanonicalCheck
from pipelines.errors import InputError, VerificationError


def load_tsa_roots(paths: Sequence[Path]) -> list[Any]:
    from pipelines.core.tsa import load_roots

    roots = []
    for path in paths:
        try:
            roots += load_roots(read_bytes(path))
        except VerificationError as exc:
            raise InputError(f"{path}: {exc}") from None
    return roots


def load_witness_keys(values: Sequence[str]) -> list[WitnessKey]:
    """Pinned witness keys, each given as its text or as a file of them, one a line."""
    from pipelines.ledger.keys import read_text

    keys = []
    for value in values:
        texts = read_text(value, "witness key file").splitlines() if Path(value).is_file() else [value]
        keys += [WitnessKey.parse(t) for t in texts if t.strip()]
    return keys


def load_evm_blocks(path: Path) -> dict[int, list[str]]:
    """``{"chain_id": N, "blocks": [{"number": n, "hash": h}, ...]}``, or a list of such: chain id -> hashes."""
    doc = load_json(path)
    out: dict[int, list[str]] = {}
    try:
        for chain in doc if isinstance(doc, list) else [doc]:
            out.setdefault(int(chain["chain_id"]), []).extend(str(b["hash"]) for b in chain["blocks"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: want {{\"chain_id\": N, \"blocks\": [{{\"number\": n, \"hash\": \"...\"}}]}} "
                         f"({type(exc).__name__}: {exc})") from None
    return out


def canonical_check(rpc_url: str) -> CanonicalCheck:
    """Ask the node at ``rpc_url`` (JSON-RPC) whether a block is on its canonical chain; None when it serves
    another chain or cannot be reached (the anchor then stays unchecked, and the output says so)."""
    import httpx

    def call(method: str, *params: Any) -> Any:
        resp = httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                          timeout=15)
        resp.raise_for_status()
        return resp.json().get("result")

    def check(block: Block) -> bool | None:
        try:
            if int(call("eth_chainId"), 16) != block.chain_id:
                return None
            found = call("eth_getBlockByNumber", hex(block.number), False)
        except (httpx.HTTPError, ValueError, TypeError):
            return None
        return found is not None and str(found.get("hash", "")).lower().removeprefix("0x") == block.hash

    return check

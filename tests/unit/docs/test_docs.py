"""The worked examples in docs/ must stay true."""

from __future__ import annotations

import re

from pipelines.core.proof import parse_proof
from pipelines.core.verify import verify_inclusion
from tests.support.paths import ROOT

DOCS = ROOT / "docs"


def _blocks(name: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


def test_the_proof_format_example_verifies():
    (example,) = _blocks("proof-format.md", "json")
    report = verify_inclusion(parse_proof(example))
    assert report.checks[-1].endswith("94dc7888b071ff90215715fac3aefa097e61886e3e5e132c57002924e8f99871")


def test_the_proof_format_python_snippet_prints_the_leaf_hash(capsys):
    (snippet,) = _blocks("proof-format.md", "python")
    exec(compile(snippet, "proof-format.md", "exec"), {})
    assert capsys.readouterr().out.strip() == parse_proof(_blocks("proof-format.md", "json")[0]).leaf_hash


def test_the_external_anchors_worked_example_is_what_its_files_say():
    """docs/ledgers.md quotes the example proof's checkpoint, the imprint the TSA stamped and the transaction:
    recomputed here from docs/examples/ (which the doc-commands test verifies with the CLI and OpenSSL)."""
    import base64
    import hashlib

    import rfc3161_client

    from pipelines.core.evm import anchor_payload, tx_chain_and_data
    from pipelines.core.tsa import as_response

    text = (DOCS / "ledgers.md").read_text()
    proof = parse_proof((DOCS / "examples" / "upgraded-proof.json").read_text())
    tlog, tsa, evm = proof.anchors
    assert tlog.checkpoint == tsa.checkpoint == evm.checkpoint
    assert f"```\n{tlog.checkpoint}```" in text
    imprint = hashlib.sha256(tsa.checkpoint.encode()).hexdigest()
    token = rfc3161_client.decode_timestamp_response(as_response(base64.b64decode(tsa.token)))
    assert token.tst_info.message_imprint.message.hex() == imprint and f"`{imprint}`" in text
    assert f"`{evm.tx_hash[:8]}…{evm.tx_hash[-4:]}` in block {evm.block_number} of chain {evm.chain_id}" in text
    body = tlog.checkpoint[: tlog.checkpoint.rfind("\n\n") + 1]
    assert tx_chain_and_data(bytes.fromhex(evm.raw_tx)) == (evm.chain_id, anchor_payload(body))

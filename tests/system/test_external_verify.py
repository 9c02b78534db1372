"""Offline verification of tsa and evm receipts: every altered part is rejected with the failed check named.

Receipts come from a real TSA (OpenSSL) and a real node (anvil); the proof is a
real sealed batch anchored in a real log.
"""

from __future__ import annotations

import base64
import datetime
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pipelines.core.batch import seal_records
from pipelines.core.commitment import RecordInput, content_sha256
from pipelines.core.evm import Block
from pipelines.core.proof import parse_proof
from pipelines.core.tsa import load_roots
from pipelines.core.policy import Policy
from pipelines.core.verify import NotAnchored, verify_proof
from pipelines.demo.tsa import make_tsa
from pipelines.errors import InputError, VerificationError

from pipelines.ledger.tlog import TransparencyLog
from pipelines.ledger.tsa import TsaClient
from tests.support.faults import FaultyStore
from tests.system.test_external_anchors import new_chain, rpc
from tests.unit.ledger.test_tlog import SIGNER


@pytest.fixture(scope="module")
def anchored(tsa, evm_node):
    """A proof carrying tlog, tsa and evm receipts for one checkpoint; the TSA's roots; the chain."""
    url, roots = tsa
    batch = seal_records("agency-a", [RecordInput(f"r{i}", content_sha256({"i": i})) for i in range(5)])
    log = TransparencyLog.create(FaultyStore(), [SIGNER])
    tlog = log.anchor([batch.head])[batch.id]
    note = tlog.checkpoint
    text = note[: note.rfind("\n\n") + 1]
    tsa_receipt = TsaClient(url, roots).timestamp(note)
    chain = new_chain(evm_node)
    signed = chain.sign(text, chain.next_nonce())
    chain.send(signed.raw)
    rpc(evm_node, "anvil_mine", "0x2")
    evm = chain.receipt(signed.tx_hash, note, text)
    doc = next(iter(batch.proofs([tlog, tsa_receipt, evm])))
    other = chain.sign("elsewhere/log\n1\n" + base64.b64encode(b"\0" * 32).decode() + "\n", chain.next_nonce())
    chain.send(other.raw)
    rpc(evm_node, "anvil_mine", "0x1")
    return parse_proof(_json(doc)), roots, {evm.chain_id: [evm.block_hash]}, chain, other


def _json(doc) -> str:
    import json

    return json.dumps(doc)


def pin(roots, blocks, **kw) -> Policy:
    return Policy.of([SIGNER.verifier()], tsa_roots=roots, evm_blocks=blocks, **kw)


def with_anchor(proof, n, **update):
    anchors = list(proof.anchors)
    anchors[n] = anchors[n].model_copy(update=update)
    return proof.model_copy(update={"anchors": tuple(anchors)})


def test_the_good_proof_verifies_under_every_policy(anchored):
    proof, roots, blocks, _, _ = anchored
    report = verify_proof(proof, pin(roots, blocks, require=["tlog", "tsa", "evm"]))
    assert [v.verdict for v in report.anchors] == ["verified"] * 3
    verify_proof(proof, pin(roots, blocks, expression="tlog and (tsa or evm)"))
    # The TSA and the chain alone, with no log key pinned: they anchor the batch without trusting the operator.
    verify_proof(proof, Policy.of([], tsa_roots=roots, evm_blocks=blocks, require=["tsa", "evm"]))


def test_a_token_for_another_checkpoint_is_rejected(anchored, tsa):
    proof, roots, blocks, _, _ = anchored
    other = TsaClient(tsa[0], roots).timestamp(proof.anchors[0].checkpoint + " ")  # another message
    bad = with_anchor(proof, 1, token=other.token)
    with pytest.raises(VerificationError, match=r"anchor 1 \(tsa\): message imprint"):
        verify_proof(bad, pin(roots, blocks))


def test_a_token_from_an_unpinned_tsa_proves_nothing(anchored, tmp_path):
    proof, roots, blocks, _, _ = anchored
    stranger = load_roots(make_tsa(tmp_path / "other").read_bytes())
    with pytest.raises(NotAnchored, match="not signed under a pinned TSA root"):
        verify_proof(proof, pin(stranger, blocks, require=["tsa"]))
    with pytest.raises(NotAnchored, match="no TSA root certificate pinned"):
        verify_proof(proof, pin([], blocks, require=["tsa"]))


def test_a_tsa_certificate_without_time_stamping_is_rejected(anchored, tmp_path):
    """A CA the auditor pins issued a code-signing certificate; its holder signs a TSTInfo with it."""
    proof, _, blocks, _, _ = anchored
    now = datetime.datetime.now(datetime.UTC)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("ca")).issuer_name(name("ca")).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=9)).add_extension(x509.BasicConstraints(True, None), True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("not a tsa")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=9))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp_path / "c.crt").write_bytes(cert.public_bytes(pem))
    (tmp_path / "c.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "tok").write_bytes(base64.b64decode(proof.anchors[1].token))
    subprocess.run(["openssl", "cms", "-verify", "-noverify", "-inform", "DER", "-in", tmp_path / "tok", "-out",
                    tmp_path / "tstinfo"], check=True, capture_output=True)
    subprocess.run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-md", "sha256", "-outform", "DER",
                    "-econtent_type", "1.2.840.113549.1.9.16.1.4", "-in", tmp_path / "tstinfo", "-signer",
                    tmp_path / "c.crt", "-inkey", tmp_path / "c.key", "-out", tmp_path / "forged"],
                   check=True, capture_output=True)
    bad = with_anchor(proof, 1, token=base64.b64encode((tmp_path / "forged").read_bytes()).decode())
    with pytest.raises(VerificationError, match="TSA certificate: not a time-stamping certificate"):
        verify_proof(bad, pin([ca], blocks))


def test_altered_evm_receipts_are_rejected_naming_the_check(anchored):
    proof, roots, blocks, chain, other = anchored
    evm = proof.anchors[2]
    raw = bytearray(bytes.fromhex(evm.raw_tx))
    raw[-40] ^= 1
    header = bytearray(bytes.fromhex(evm.header))
    header[-5] ^= 1
    node = bytearray(bytes.fromhex(evm.trie_proof[-1]))
    node[-3] ^= 1
    cases = {
        "transaction: raw_tx hashes to": {"raw_tx": bytes(raw).hex()},
        "transaction data: it does not commit": {"raw_tx": other.raw.hex(), "tx_hash": other.tx_hash},
        "chain id: the transaction is for chain": {"chain_id": evm.chain_id + 1},
        "header: it hashes to": {"header": bytes(header).hex()},
        "header: it is of block": {"block_number": evm.block_number + 1},
        "trie proof": {"trie_proof": (*evm.trie_proof[:-1], bytes(node).hex())},
    }
    for check, update in cases.items():
        with pytest.raises(VerificationError, match=r"anchor 2 \(evm\): " + check):
            verify_proof(with_anchor(proof, 2, **update), pin(roots, blocks))


def test_an_evm_block_is_only_trusted_as_the_auditor_says(anchored):
    proof, roots, blocks, _, _ = anchored
    (chain_id, hashes_), = blocks.items()
    with pytest.raises(NotAnchored, match="remains to be checked"):
        verify_proof(proof, pin(roots, {chain_id + 1: hashes_}, require=["evm"]))  # pinned for another chain
    asked: list[Block] = []
    on_chain = Policy.of([SIGNER.verifier()], evm_check=lambda b: asked.append(b) or True, require=["evm"])
    verify_proof(proof, on_chain)
    assert asked and asked[0].hash == hashes_[0] and asked[0].chain_id == chain_id
    off_chain = Policy.of([SIGNER.verifier()], evm_check=lambda b: False, require=["evm"])
    with pytest.raises(VerificationError, match="canonical chain"):
        verify_proof(proof, off_chain)


def test_an_external_receipt_without_the_log_path_under_its_checkpoint_is_rejected(anchored):
    proof, roots, blocks, _, _ = anchored
    bad = proof.model_copy(update={"anchors": proof.anchors[1:]})
    with pytest.raises(VerificationError, match="no tlog receipt under the checkpoint"):
        verify_proof(bad, pin(roots, blocks))


@pytest.mark.parametrize("expression", ["tlog and", "tlog xor tsa", "__import__('os')", "tlog and btc", "not tlog"])
def test_a_malformed_policy_is_refused(expression):
    with pytest.raises(InputError, match="policy"):
        Policy.of([], expression=expression)


def test_the_policy_expression_decides(anchored):
    proof, roots, blocks, _, _ = anchored
    verify_proof(proof, pin([], blocks, expression="tlog and (tsa or evm)"))  # no TSA root: evm carries it
    with pytest.raises(NotAnchored, match="does not hold"):
        verify_proof(proof, pin([], {}, expression="tlog and (tsa or evm)"))


@pytest.mark.system
def test_the_ethereum_libraries_leave_the_recursion_limit_alone():
    """py_ecc (under eth_account) raises it to 100,000 on import; deep JSON would then overflow the C stack
    instead of being refused. The EVM adapter restores it."""
    import subprocess
    import sys

    code = ("import sys; import pipelines.ledger.evm; from pipelines.core.proof import parse_proof\n"
            "try:\n    parse_proof('[' * 100_000)\nexcept Exception as e:\n    print(type(e).__name__)\n"
            "print(sys.getrecursionlimit())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.split() == ["ProofFormatError", "1000"], res.stdout + res.stderr


def test_verify_asks_the_auditors_node_with_evm_rpc(anchored, evm_node, tmp_path):
    """`anchorpipe verify --evm-rpc URL` checks the block on the node's chain (here the node that mined it)."""
    import json
    import os
    import subprocess
    import sys

    from pipelines.cli.trust import canonical_check

    proof, roots, blocks, _, _ = anchored
    (chain_id, (block_hash,)), = blocks.items()
    evm = proof.anchors[2]
    check = canonical_check(evm_node)
    assert check(Block(chain_id, evm.block_number, block_hash, 0)) is True
    assert check(Block(chain_id, evm.block_number, "00" * 32, 0)) is False  # another block at that height
    assert check(Block(chain_id + 1, evm.block_number, block_hash, 0)) is None  # the node serves another chain
    (tmp_path / "p.json").write_text(json.dumps(proof.model_dump(mode="json")))
    (tmp_path / "log.vkey").write_text(SIGNER.verifier().text() + "\n")
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "verify", str(tmp_path / "p.json"), "--log-vkey",
                          str(tmp_path / "log.vkey"), "--evm-rpc", evm_node, "--require", "evm"],
                         capture_output=True, text=True, timeout=60, env=os.environ)
    assert res.returncode == 0 and "on the canonical chain per your node" in res.stdout, res.stdout + res.stderr

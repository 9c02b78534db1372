"""Proof format v1: what is written parses back; anything malformed is one clear error."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import ValidationError

from pipelines.core.batch import Commitment, SealedBatch
from pipelines.core.commitment import content_sha256
from pipelines.core.policy import Policy
from pipelines.core.proof import parse_proof
from pipelines.core.verify import NotAnchored, verify_inclusion, verify_proof
from pipelines.errors import ProofFormatError, VerificationError


@pytest.fixture
def batch() -> SealedBatch:
    commitments = [
        Commitment("dept-x", f"rec-{i}", content_sha256({"n": i}), bytes([i]) * 32) for i in range(11)
    ]
    return SealedBatch("20261128T120000Z-0a1b2c3d", "2026-11-28T12:00:00Z", commitments)


def test_every_written_proof_parses_and_verifies(batch):
    for i in range(batch.size):
        doc = batch.proof(i)
        proof = parse_proof(json.dumps(doc))
        assert proof.model_dump(mode="json") == doc
        report = verify_inclusion(proof, content_sha256=content_sha256({"n": i}))
        assert len(report.checks) == 3 and report.content_checked
        with pytest.raises(NotAnchored, match="carries no anchor"):  # consistent, and still not VALID
            verify_proof(proof, Policy(), content_sha256=content_sha256({"n": i}))


def test_wrong_record_content_is_invalid(batch):
    proof = parse_proof(json.dumps(batch.proof(3)))
    with pytest.raises(VerificationError, match="record content hashes to"):
        verify_inclusion(proof, content_sha256=content_sha256({"n": 4}))


@pytest.mark.parametrize(
    "field,value",
    [(("record", "agency"), "dept-y"), (("record", "id"), "rec-4"), (("record", "salt"), "00" * 32),
     (("record", "content_sha256"), "11" * 32), (("batch", "index"), 4), (("batch", "size"), 22),
     (("batch", "root"), "22" * 32), (("leaf_hash",), "33" * 32)],
)
def test_a_changed_field_breaks_verification(batch, field, value):
    doc = copy.deepcopy(batch.proof(3))
    target = doc
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    with pytest.raises(VerificationError):
        verify_inclusion(parse_proof(json.dumps(doc)))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.update(format="anchorpipe.proof/2"), "format is 'anchorpipe.proof/2'"),
        (lambda d: d.pop("leaf_hash"), "leaf_hash: Field required"),
        (lambda d: d["batch"].update(index=11), "batch index 11 is not below batch size 11"),
        (lambda d: d["batch"].update(index="3"), "batch.index"),
        (lambda d: d["batch"].update(index=True), "batch.index"),
        (lambda d: d["record"].update(salt="AB" * 32), "record.salt"),
        (lambda d: d["record"].update(agency="Bad Agency"), "record.agency"),
        (lambda d: d.update(extra=1), "extra: Extra inputs are not permitted"),
        (lambda d: d["batch"].update(sealed_at="yesterday"), "batch.sealed_at"),
        (lambda d: d["anchors"].append({"type": "carrier-pigeon"}), "anchors.0"),
    ],
)
def test_malformed_proofs_are_one_clear_error(batch, mutate, message):
    doc = copy.deepcopy(batch.proof(0))
    mutate(doc)
    with pytest.raises(ProofFormatError) as err:
        parse_proof(json.dumps(doc))
    assert message in str(err.value)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"\xff\xfe", b"{" * 10 + b"}" * 10, b"x" * (1 << 21)])
def test_garbage_is_a_format_error(raw):
    with pytest.raises(ProofFormatError):
        parse_proof(raw)


def test_proofs_are_frozen(batch):
    proof = parse_proof(json.dumps(batch.proof(0)))
    with pytest.raises(ValidationError):
        proof.leaf_hash = "00" * 32


@pytest.mark.parametrize("raw", ["[" * 100_000, '{"format": ' + "9" * 5000 + "}", '{"a": 1, "a": 2}', "\xff"])
def test_hostile_documents_are_format_errors_not_crashes(raw):
    with pytest.raises(ProofFormatError):
        parse_proof(raw)

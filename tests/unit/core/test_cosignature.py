"""Conformance of cosignatures with C2SP tlog-cosignature, and of the witness's rules with tlog-witness.

The spec's worked example is decoded and its signed message rebuilt; our
cosignatures are checked by a verifier written below from the spec's text
alone (it shares no code with pipelines.core).
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pipelines.core import merkle
from pipelines.core.checkpoint import Checkpoint
from pipelines.core.cosignature import Cosigner, WitnessKey, add_signature_lines, cosigned_message, verify_cosignatures
from pipelines.core.note import Signer, open_note, sign_note, split_note
from pipelines.core.witness import AddCheckpoint, Held, Refused, check_extends, open_request, parse_request
from pipelines.errors import BadSignature, InputError, VerificationError

# c2sp.org/tlog-cosignature: "an example of a checkpoint that contains a cosignature", and the signed message
# it shows for the timestamp 1679315147.
SPEC_NOTE = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+"
    "zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0"
    "xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_MESSAGE = ("cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
                "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")

LOG = Signer.generate("log.example/a")
WITNESS = Cosigner.generate("witness.example/w1")


def spec_verify(note: str, name: str, public_key: bytes) -> int:
    """A cosignature/v1 verifier from the spec's text only: find the line '— <name> <base64>', check the key
    ID SHA-256(name || "\\n" || 0x04 || key)[:4], split the u64 big-endian timestamp and the Ed25519 signature
    over "cosignature/v1\\n" "time <t>\\n" and the note body. Returns the timestamp; raises otherwise."""
    body, _, sigs = note.partition("\n\n")
    body += "\n"
    want_id = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public_key).digest()[:4]
    for line in sigs.splitlines():
        prefix = "\u2014 " + name + " "
        if not line.startswith(prefix):
            continue
        raw = base64.b64decode(line[len(prefix):])
        if raw[:4] != want_id:
            continue
        (timestamp,) = struct.unpack(">Q", raw[4:12])
        message = b"cosignature/v1\n" + b"time " + str(timestamp).encode() + b"\n" + body.encode()
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw[12:], message)  # raises InvalidSignature
        return timestamp
    raise LookupError("no cosignature by that key")


def signed_checkpoint(size: int, root: bytes, signer: Signer = LOG) -> str:
    return sign_note(Checkpoint(signer.name, size, root).text(), [signer])


def test_the_specs_worked_example_decodes_to_its_key_id_timestamp_and_message():
    text, lines = split_note(SPEC_NOTE)
    name, _, blob = lines[1].removeprefix("\u2014 ").partition(" ")
    raw = base64.b64decode(blob)
    assert name == "witness.example.com/w1" and len(raw) == 4 + 8 + 64
    assert struct.unpack(">Q", raw[4:12])[0] == 1679315147  # the time in the spec's message
    assert cosigned_message(text, 1679315147).decode() == SPEC_MESSAGE
    # A witness pinned under that name but another key: its key ID does not match, so the line is not its.
    other = Cosigner.generate("witness.example.com/w1").verifier()
    assert raw[:4] != struct.pack(">I", other.id)
    assert verify_cosignatures(SPEC_NOTE, [other]) == []


def test_our_cosignatures_verify_with_an_implementation_written_from_the_spec_alone():
    note = signed_checkpoint(5, hashlib.sha256(b"root").digest())
    line = WITNESS.cosign(split_note(note)[0], 1_700_000_000)
    cosigned = add_signature_lines(note, [line])
    assert spec_verify(cosigned, WITNESS.name, WITNESS.public_key) == 1_700_000_000
    # The key ID is of type 0x04.
    raw = base64.b64decode(line.split()[-1])
    assert raw[:4] == hashlib.sha256(WITNESS.name.encode() + b"\n\x04" + WITNESS.public_key).digest()[:4]
    # The vkey carries the 0x04 type byte.
    assert base64.b64decode(WITNESS.verifier().text().split("+", 2)[2])[0] == 0x04
    # And the spec verifier refuses a cosignature of another checkpoint.
    other = signed_checkpoint(6, hashlib.sha256(b"root").digest())
    with pytest.raises(InvalidSignature):
        spec_verify(add_signature_lines(other, [line]), WITNESS.name, WITNESS.public_key)


def test_the_log_key_ignores_cosignatures_and_pinned_witnesses_ignore_the_log_signature():
    note = signed_checkpoint(3, b"\x07" * 32)
    cosigned = add_signature_lines(note, [WITNESS.cosign(split_note(note)[0], 5)])
    assert open_note(cosigned, [LOG.verifier()])[1] == [LOG.name]
    assert [c.witness for c in verify_cosignatures(cosigned, [WITNESS.verifier()])] == [WITNESS.name]
    assert verify_cosignatures(note, [WITNESS.verifier()]) == []


def test_an_altered_cosignature_by_a_pinned_witness_is_refused():
    note = signed_checkpoint(3, b"\x07" * 32)
    line = WITNESS.cosign(split_note(note)[0], 5)
    raw = bytearray(base64.b64decode(line.split()[-1]))
    raw[11] ^= 1  # the timestamp is signed too
    forged = f"\u2014 {WITNESS.name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(BadSignature, match="does not verify"):
        verify_cosignatures(add_signature_lines(note, [forged]), [WITNESS.verifier()])
    short = f"\u2014 {WITNESS.name} {base64.b64encode(bytes(raw[:40])).decode()}\n"
    with pytest.raises(VerificationError, match="bytes"):
        verify_cosignatures(add_signature_lines(note, [short]), [WITNESS.verifier()])


def test_keys_round_trip_and_the_two_kinds_are_not_confused():
    assert Cosigner.parse(WITNESS.text()).verifier() == WITNESS.verifier()
    assert WitnessKey.parse(WITNESS.verifier().text()) == WITNESS.verifier()
    with pytest.raises(InputError, match="0x04"):
        WitnessKey.parse(LOG.verifier().text())
    with pytest.raises(InputError, match="0x01"):
        Signer.parse(WITNESS.text())
    assert "PRIVATE" not in repr(WITNESS) and WITNESS.text().split("+", 4)[4] not in repr(WITNESS)
    with pytest.raises(ValueError):
        cosigned_message("x\n", 1 << 63)


# The witness's rules (c2sp.org/tlog-witness), as pure functions.

def tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"entry %d" % i) for i in range(n)]


def root(n: int) -> bytes:
    return merkle.Tree(tree(n)).root


def consistency(n: int, old: int) -> list[bytes]:
    return merkle.consistency_proof(merkle.Tree(tree(n)).node, old, n)


LOGS = {LOG.name: [LOG.verifier()]}


def request(old: int, size: int, proof: list[bytes] | None = None, signer: Signer = LOG) -> AddCheckpoint:
    if proof is None:
        proof = consistency(size, old) if 0 < old < size else []
    return parse_request(AddCheckpoint(old, tuple(proof), signed_checkpoint(size, root(size), signer)).body())


def test_request_bodies_round_trip_and_malformed_ones_are_400():
    req = request(3, 8)
    assert req.old == 3 and len(req.proof) >= 1 and req.note.startswith(LOG.name)
    for body in (b"old 1\n", b"old -1\n\nx\n", b"new 1\n\nx\n", b"old 01\n\nx\n", b"old 1\n!!\n\nx\n",
                 b"old 1\n" + base64.b64encode(b"short") + b"\n\nx\n", b"\xff\n\n", b"old 1\n" + b"AAAA\n" * 64 + b"\n"):
        with pytest.raises(Refused) as exc:
            parse_request(body)
        assert exc.value.status == 400, body
    with pytest.raises(Refused) as exc:
        parse_request(b"old 0\n\n" + b"x" * 70_000)
    assert exc.value.status == 413


def test_each_refusal_has_the_specs_status():
    def status(fn) -> int:
        with pytest.raises(Refused) as exc:
            fn()
        return exc.value.status

    stranger = Signer.generate("log.example/b")
    assert status(lambda: open_request(request(0, 4, signer=stranger), LOGS)) == 404
    impostor = Signer(LOG.name, b"\x09" * 32)  # the log's name, another key
    assert status(lambda: open_request(request(0, 4, signer=impostor), LOGS)) == 403
    assert status(lambda: open_request(AddCheckpoint(5, (), signed_checkpoint(4, root(4))), LOGS)) == 400
    req = request(0, 4)
    cp = open_request(req, LOGS)
    check_extends(req, cp, None)  # a first checkpoint: accepted
    held = Held(4, root(4))
    req2 = request(2, 6)
    with pytest.raises(Refused) as exc:
        check_extends(req2, open_request(req2, LOGS), held)
    assert (exc.value.status, exc.value.size) == (409, 4)
    bad = request(4, 6, proof=[b"\x00" * 32])
    with pytest.raises(Refused) as exc:
        check_extends(bad, open_request(bad, LOGS), held)
    assert exc.value.status == 422 and not exc.value.evidence  # a made-up proof proves nothing about the log
    fork = parse_request(AddCheckpoint(4, (), signed_checkpoint(4, b"\x01" * 32)).body())
    with pytest.raises(Refused) as exc:
        check_extends(fork, open_request(fork, LOGS), held)
    assert exc.value.status == 409 and exc.value.evidence
    good = request(4, 9)
    check_extends(good, open_request(good, LOGS), held)
    same = request(4, 4)
    check_extends(same, open_request(same, LOGS), held)  # the same checkpoint again: cosigned again

"""Signed notes and checkpoints against the C2SP / Go sumdb/note reference vector."""

from __future__ import annotations

import pytest

from pipelines.core.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_text
from pipelines.core.note import Signer, Verifier, key_id, open_note, sign_note
from pipelines.errors import InputError, VerificationError

# The signed-note example of golang.org/x/mod/sumdb/note, which c2sp.org/signed-note specifies.
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
NOTE = TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def test_reference_note_verifies():
    assert open_note(NOTE, [Verifier.parse(VKEY)]) == (TEXT, ["PeterNeumann"])


def test_signing_reproduces_the_reference_bytes():
    signer = Signer.parse(SKEY)
    assert signer.verifier().text() == VKEY
    assert signer.text() == SKEY
    assert sign_note(TEXT, [signer]) == NOTE


def test_key_id_is_the_spec_hash():
    v = Verifier.parse(VKEY)
    assert key_id(v.name, v.public_key) == 0xC74F20A3


def test_signer_repr_hides_the_key():
    assert "AYEK" not in repr(Signer.parse(SKEY)) and "PRIVATE" not in repr(Signer.parse(SKEY))


@pytest.mark.parametrize("note,message", [
    (NOTE.replace("problem,", "problem;"), "does not verify"),
    (NOTE.replace("UgYN1", "UgYN2"), "does not verify"),
    (NOTE.replace("x08go", "x08gp"), "not signed by any trusted key"),
    (TEXT + "\u2014 PeterNeumann x08go/ZJ\n", "no blank line"),
    (NOTE.replace("\u2014 ", "-- "), "malformed signature line"),
    (NOTE + "\x01", "no blank line"),
    (NOTE.replace("you don't", "you\tdon't"), "control characters"),
])
def test_tampered_notes_are_rejected(note, message):
    with pytest.raises(VerificationError, match=message):
        open_note(note, [Verifier.parse(VKEY)])


def test_unknown_keys_are_ignored_and_one_trusted_signature_is_required():
    other = Signer.generate("PeterNeumann")  # same name, different key id
    assert open_note(sign_note(TEXT, [other, Signer.parse(SKEY)]), [Verifier.parse(VKEY)])[1] == ["PeterNeumann"]
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        open_note(sign_note(TEXT, [other]), [Verifier.parse(VKEY)])


@pytest.mark.parametrize("bad", [
    VKEY.replace("c74f20a3", "c74f20a4"), VKEY.replace("+ARpc", "+AhRpc"), "PeterNeumann+c74f20a3",
    "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", VKEY[:-4],
])
def test_malformed_verifier_keys_are_refused(bad):
    with pytest.raises(InputError):
        Verifier.parse(bad)


def test_checkpoint_round_trip_and_origin_check():
    signer = Signer.generate("records.example.gov/log")
    cp = Checkpoint("records.example.gov/log", 12345, bytes(range(32)))
    assert cp.text() == "records.example.gov/log\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    note = sign_note(cp.text(), [signer])
    assert open_checkpoint(note, [signer.verifier()], "records.example.gov/log") == cp
    with pytest.raises(VerificationError, match="origin"):
        open_checkpoint(note, [signer.verifier()], "other.example/log")


@pytest.mark.parametrize("text", [
    "o\n012\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    "o\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\n",
    "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    "o\n1\n",
    "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "o\n18446744073709551616\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
])
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(VerificationError, match="malformed checkpoint"):
        parse_checkpoint_text(text)

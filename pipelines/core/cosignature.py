"""C2SP tlog-cosignature (c2sp.org/tlog-cosignature), Ed25519 ``cosignature/v1``. No I/O.

A cosignature is a note signature line on a checkpoint,
``— <witness name> base64(key ID || timestamp || signature)``, where the key ID
is SHA-256(name || 0x0A || 0x04 || public key)[:4], the timestamp a big-endian
uint64 of POSIX seconds, and the Ed25519 signature covers::

    cosignature/v1
    time <timestamp>
    <the checkpoint's whole note body>

A witness's keys are a vkey ``<name>+<key ID>+base64(0x04 || public key)`` and
``PRIVATE+KEY+<name>+<key ID>+base64(0x04 || seed)``.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pipelines.core.note import SIG_PREFIX, Signer, Verifier, parse_signature_line, split_note
from pipelines.errors import BadSignature, VerificationError

ALG_COSIGNATURE_V1 = 0x04
_SIG_BYTES = 4 + 8 + 64


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes a ``cosignature/v1`` signs for the note body ``checkpoint_text`` at ``timestamp``."""
    if not 0 <= timestamp < 1 << 63:
        raise ValueError("a cosignature's timestamp is a POSIX time below 2^63")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


class WitnessKey(Verifier):
    """A witness's pinned cosigning key (vkey signature type 0x04)."""

    ALG: ClassVar[int] = ALG_COSIGNATURE_V1
    WHAT: ClassVar[str] = "witness key"

    def verify_cosignature(self, checkpoint_text: str, sig: bytes) -> int | None:
        """The timestamp of ``sig`` (a signature line's decoded bytes) if it is this key's valid
        cosignature of ``checkpoint_text``; None if the key ID is another's. VerificationError if it is
        this key's and does not verify."""
        if len(sig) < 4 or struct.unpack(">I", sig[:4])[0] != self.id:
            return None
        if len(sig) != _SIG_BYTES:
            raise VerificationError(f"cosignature by {self.name} is {len(sig)} bytes, want {_SIG_BYTES}")
        timestamp: int = struct.unpack(">Q", sig[4:12])[0]
        if timestamp >= 1 << 63 or not self.verify(cosigned_message(checkpoint_text, timestamp), sig[12:]):
            raise BadSignature(f"cosignature by witness {self.name} does not verify")
        return timestamp


class Cosigner(Signer):
    """A witness's cosigning key."""

    __slots__ = ()
    ALG: ClassVar[int] = ALG_COSIGNATURE_V1
    VERIFIER: ClassVar[type[Verifier]] = WitnessKey

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """The signature line (ending in a newline) cosigning the note body ``checkpoint_text``."""
        sig = self.sign(cosigned_message(checkpoint_text, timestamp))
        blob = base64.b64encode(struct.pack(">IQ", self.id, timestamp) + sig).decode()
        return f"{SIG_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Cosignature:
    witness: str
    timestamp: int


def verify_cosignatures(note: str, witnesses: Sequence[WitnessKey]) -> list[Cosignature]:
    """The valid cosignatures on ``note`` by the pinned ``witnesses``, one per witness.

    Lines of other keys (the log's, unknown witnesses') are ignored; a line by a
    pinned witness that does not verify raises VerificationError (the note was altered).
    """
    text, lines = split_note(note)
    known: dict[str, list[WitnessKey]] = {}
    for w in witnesses:
        known.setdefault(w.name, []).append(w)
    found: dict[str, Cosignature] = {}
    for line in lines:
        name, sig = parse_signature_line(line)
        for key in known.get(name, ()):
            timestamp = key.verify_cosignature(text, sig)
            if timestamp is not None:
                found.setdefault(name, Cosignature(name, timestamp))
    return list(found.values())


def add_signature_lines(note: str, lines: Sequence[str]) -> str:
    """``note`` with signature ``lines`` appended (those it already has are not repeated)."""
    have = set(note.splitlines(keepends=True))
    return note + "".join(line for line in lines if line not in have)

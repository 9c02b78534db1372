"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys. No I/O.

A note is a text ending in a newline, a blank line, then signature lines
``— <key name> base64(key ID || signature)``. Key texts follow Go's
golang.org/x/mod/sumdb/note: the verifier key ``<name>+<hex key ID>+<base64(0x01 || public key)>``
and the signer key ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from pipelines.errors import BadSignature, InputError, NoTrustedSignature, VerificationError

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def check_key_name(name: str) -> str:
    """Key names are non-empty and contain no Unicode space and no ``+``."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise InputError(f"key name {name!r} is invalid: want non-empty, without spaces or '+'")
    return name


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> int:
    """SHA-256(name || 0x0A || alg || public key)[:4] as a big-endian integer."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{what} is not valid base64") from exc


@dataclass(frozen=True)
class Verifier:
    """A trusted Ed25519 verifier key, parsed from its vkey text."""

    name: str
    id: int
    public_key: bytes
    #: The signature type byte of the key's vkey and key ID (c2sp.org/signed-note).
    ALG: ClassVar[int] = ALG_ED25519
    WHAT: ClassVar[str] = "verifier key"

    @classmethod
    def parse(cls, vkey: str) -> Self:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-fA-F]{8}", parts[1]):
            raise InputError(f"{cls.WHAT} must look like <name>+<8 hex digits>+<base64 key>")
        name, hex_id, blob = parts
        check_key_name(name)
        raw = _b64(blob, cls.WHAT)
        if len(raw) != 33 or raw[0] != cls.ALG:
            raise InputError(f"{cls.WHAT} is not of signature type 0x{cls.ALG:02x} with a 32-byte Ed25519 key")
        if key_id(name, raw[1:], cls.ALG) != int(hex_id, 16):
            raise InputError(f"{cls.WHAT} id {hex_id} does not match its name and key")
        return cls(name, int(hex_id, 16), raw[1:])

    def text(self) -> str:
        blob = base64.b64encode(bytes([self.ALG]) + self.public_key).decode()
        return f"{self.name}+{self.id:08x}+{blob}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """An Ed25519 signer key. Its ``repr`` never shows the key."""

    __slots__ = ("name", "id", "_key")
    ALG: ClassVar[int] = ALG_ED25519
    VERIFIER: ClassVar[type[Verifier]] = Verifier

    def __init__(self, name: str, seed: bytes) -> None:
        check_key_name(name)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.name = name
        self.id = key_id(name, self.public_key, self.ALG)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, id={self.id:08x})"

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, name: str) -> Self:
        seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, seed)

    @classmethod
    def parse(cls, skey: str) -> Self:
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise InputError("not a signer key: want PRIVATE+KEY+<name>+<key id>+<base64 key>")
        raw = _b64(parts[4], "signer key")
        if len(raw) != 33 or raw[0] != cls.ALG:
            raise InputError(f"signer key is not of signature type 0x{cls.ALG:02x} with a 32-byte Ed25519 key")
        signer = cls(parts[2], raw[1:])
        if f"{signer.id:08x}" != parts[3].lower():
            raise InputError("signer key id does not match its name and key")
        return signer

    def text(self) -> str:
        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"PRIVATE+KEY+{self.name}+{self.id:08x}+{base64.b64encode(bytes([self.ALG]) + seed).decode()}"

    def verifier(self) -> Verifier:
        return self.VERIFIER(self.name, self.id, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _check_text(text: str) -> None:
    if not text.endswith("\n") or _CONTROL.search(text):
        raise InputError("note text must end in a newline and contain no control characters but newline")


def sign_note(text: str, signers: list[Signer]) -> str:
    """The signed note of ``text`` (which must end in a newline) with one line per signer."""
    _check_text(text)
    if not signers:
        raise ValueError("a note needs at least one signer")
    lines = []
    for s in signers:
        sig = base64.b64encode(struct.pack(">I", s.id) + s.sign(text.encode())).decode()
        lines.append(f"{SIG_PREFIX}{s.name} {sig}\n")
    return text + "\n" + "".join(lines)


def split_note(note: str) -> tuple[str, list[str]]:
    """A note's text and its signature lines, unverified (what an external anchor attests is the text)."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise VerificationError("note is larger than 1 MiB")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerificationError("malformed note: no blank line before the signatures")
    if _CONTROL.search(note):
        raise VerificationError("malformed note: control characters")
    return note[: split + 1], note[split + 2 : -1].split("\n")


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, list[str]]:
    """Check ``note`` against trusted ``verifiers``; return its text and the names that verified.

    Signatures from unknown keys are ignored; a signature from a known key that
    fails rejects the note; at least one known signature must verify.
    """
    text, lines = split_note(note)
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"note has {len(lines)} signatures, at most {MAX_SIGNATURES} are read")
    known = {(v.name, v.id): v for v in verifiers}
    verified: list[str] = []
    for line in lines:
        name, sig = parse_signature_line(line)
        verifier = known.get((name, struct.unpack(">I", sig[:4])[0]))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), sig[4:]):
            raise BadSignature(f"signature by {name} does not verify")
        verified.append(name)
    if not verified:
        raise NoTrustedSignature("note is not signed by any trusted key")
    return text, verified


def claimed_signers(note: str, limit: int = 3) -> list[str]:
    """``name+keyid`` of the first ``limit`` signature lines of ``note``, unverified: what a note says signed it,
    for a message naming the key an auditor did not pin (names cut to 64 characters)."""
    try:
        _, lines = split_note(note)
    except VerificationError:
        return []
    out = []
    for line in lines[:limit]:
        try:
            name, sig = parse_signature_line(line)
        except VerificationError:
            continue
        out.append(f"{name[:64]}+{sig[:4].hex()}")
    return out


def parse_signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(SIG_PREFIX):
        raise VerificationError(f"malformed signature line {line[:40]!r}")
    name, _, b64 = line[len(SIG_PREFIX):].rpartition(" ")
    try:
        sig = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"malformed signature from {name!r}") from exc
    if not name or len(sig) < 5:
        raise VerificationError(f"malformed signature line {line[:40]!r}")
    return name, sig

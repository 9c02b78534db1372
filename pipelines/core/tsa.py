"""RFC 3161 time-stamp tokens over log checkpoints, checked offline against pinned TSA roots. No I/O.

The CMS work (signature, certificate chain at the token's genTime, the
critical ``timeStamping`` extended key usage) is rfc3161-client's, the
library sigstore-python uses; this module says what is stamped and names the
check that failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import rfc3161_client
from cryptography import x509

from pipelines.errors import NoTrustedSignature, VerificationError


@dataclass(frozen=True)
class Stamp:
    """What a verified token attests: SHA-256 of ``message`` existed at ``gen_time`` (by the TSA ``signer``)."""

    gen_time: datetime
    signer: str


def stamped_message(checkpoint_note: str) -> bytes:
    """What anchorpipe asks a TSA to stamp: the signed checkpoint note's UTF-8 bytes (hashed with SHA-256)."""
    return checkpoint_note.encode()


def as_response(token: bytes) -> bytes:
    """A TimeStampResp (status granted) around a TimeStampToken, the form rfc3161-client reads.

    ``SEQUENCE { PKIStatusInfo SEQUENCE { INTEGER 0 }, token }``: only the outer DER header is written here."""
    body = b"\x30\x03\x02\x01\x00" + token
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return b"\x30" + length + body


def token_of(response: bytes) -> bytes:
    """The TimeStampToken of a TSA's TimeStampResp; VerificationError if it is not a granted response."""
    try:
        resp = rfc3161_client.decode_timestamp_response(response)
    except ValueError as exc:
        raise VerificationError(f"not an RFC 3161 time-stamp response: {exc}") from None
    if rfc3161_client.PKIStatus(resp.status) not in (rfc3161_client.PKIStatus.GRANTED,
                                                     rfc3161_client.PKIStatus.GRANTED_WITH_MODS):
        raise VerificationError(f"the TSA refused: status {resp.status}")
    return bytes(resp.time_stamp_token())


def verify_token(token: bytes, message: bytes, roots: Sequence[x509.Certificate]) -> Stamp:
    """Check that ``token`` stamps SHA-256(``message``) and is signed under one of the pinned ``roots``.

    Raises :class:`NoTrustedSignature` when no pinned root vouches for the
    signer, and :class:`VerificationError` naming the failed check otherwise."""
    try:
        return _verify_token(token, message, roots)
    except ValueError as exc:  # rfc3161-client parses parts of the token lazily, as they are read
        raise VerificationError(f"token: not a well-formed RFC 3161 TimeStampToken ({exc})") from None


def _verify_token(token: bytes, message: bytes, roots: Sequence[x509.Certificate]) -> Stamp:
    resp = rfc3161_client.decode_timestamp_response(as_response(token))
    imprint = resp.tst_info.message_imprint
    if imprint.hash_algorithm != x509.ObjectIdentifier(rfc3161_client.verify.SHA256_OID):
        raise VerificationError(f"message imprint: algorithm {imprint.hash_algorithm.dotted_string}, want SHA-256")
    want = hashlib.sha256(message).digest()
    if imprint.message != want:
        raise VerificationError(f"message imprint: the token stamps {imprint.message.hex()}, not SHA-256 of the "
                                f"checkpoint ({want.hex()}): it is a token for something else")
    if not roots:
        raise NoTrustedSignature("no TSA root certificate pinned (--tsa-root)")
    verifier = rfc3161_client.VerifierBuilder(roots=list(roots)).build()
    try:
        verifier.verify(resp, want)
    except rfc3161_client.VerificationError as exc:
        if "purpose" in str(exc) or "EKU" in str(exc):
            raise VerificationError("TSA certificate: not a time-stamping certificate (a TSA's certificate must "
                                    f"carry the critical extended key usage timeStamping): {exc}") from None
        if "verifying certificates" in str(exc):
            raise NoTrustedSignature(f"signature and certificate chain: not signed under a pinned TSA root "
                                     f"({exc})") from None
        raise VerificationError(f"token: {exc}") from None
    return Stamp(resp.tst_info.gen_time, _signer(resp))


def _signer(resp: rfc3161_client.TimeStampResponse) -> str:
    signer = resp.signed_data.signer_infos.pop()
    for der in resp.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == signer.issuer and cert.serial_number == signer.serial_number:
            return cert.subject.rfc4514_string()
    return signer.issuer.rfc4514_string()


def load_roots(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file; VerificationError if there is none."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise VerificationError(f"not a PEM certificate file: {exc}") from None
    return certs

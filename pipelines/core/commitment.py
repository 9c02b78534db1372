"""Record commitments: what a Merkle leaf binds, and how its bytes are laid out.

A leaf commits to a record without revealing it: the agency, the record id,
the SHA-256 of the record's canonical bytes, and a random per-record salt.
The layout is specified in docs/proof-format.md; change nothing here without
a new format tag.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import rfc8785

from pipelines.core.framing import lp
from pipelines.core.jsontext import check_value
from pipelines.core.merkle import HASH_SIZE, leaf_hash
from pipelines.errors import InputError

LEAF_FORMAT = b"anchorpipe.leaf/1"
SALT_SIZE = 32
MAX_ID_BYTES = 256

AGENCY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: What a new record id may not hold either, beyond C0 controls: C1 controls (a terminal reads some as escape
#: sequences) and the bidirectional embeddings, overrides and isolates, which display an id as another.
_SPOOFING_RE = re.compile("[\u0080-\u009f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class RecordInput:
    """One record as an agency submitted it: its id and its content's SHA-256."""

    id: str
    content_sha256: bytes


def check_agency(agency: object) -> str:
    """Return ``agency`` if it is a valid agency name, else raise :class:`InputError`.

    Agency names are 1-63 characters of ``a-z 0-9 . _ -``, starting with a letter or digit.
    """
    if not isinstance(agency, str) or not AGENCY_RE.match(agency):
        raise InputError(f"agency name {agency!r} is invalid: want 1-63 of a-z 0-9 . _ - starting with a-z or 0-9")
    return agency


def check_record_id(record_id: object) -> str:
    """Return ``record_id`` if it is a valid record id, else raise :class:`InputError`.

    Record ids are non-empty strings of at most 256 UTF-8 bytes with no control characters.
    """
    if not isinstance(record_id, str):
        raise InputError(f"record id must be a string, got {type(record_id).__name__}")
    size = len(record_id.encode("utf-8", "surrogatepass"))
    if not 0 < size <= MAX_ID_BYTES:
        raise InputError(f"record id must be 1-{MAX_ID_BYTES} UTF-8 bytes, got {size}")
    if _CONTROL_RE.search(record_id):
        raise InputError("record id must not contain control characters")
    try:
        record_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError("record id is not valid Unicode (lone surrogate)") from exc
    return record_id


def check_new_record_id(record_id: object) -> str:
    """:func:`check_record_id`, and for a record entering now (every entry point: the API, ``seal``, the
    pull sources) no C1 control (U+0080-U+009F) or bidirectional control (U+202A-U+202E, U+2066-U+2069)
    either. Proofs sealed before this rule still verify: the proof format keeps the older rule."""
    record_id = check_record_id(record_id)
    found = _SPOOFING_RE.search(record_id)
    if found:
        raise InputError(f"record id must not contain U+{ord(found[0]):04X} (C1 and bidirectional controls change "
                         f"how an id is shown)")
    return record_id


def content_sha256(content: Any) -> bytes:
    """SHA-256 of a JSON value's RFC 8785 (JCS) canonical bytes.

    Precondition (checked): ``content`` keeps the rules of :mod:`pipelines.core.jsontext`
    (safe integers, finite numbers, bounded depth, valid Unicode), whatever it was read from.
    """
    check_value(content)
    try:
        canonical = rfc8785.dumps(content)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InputError(f"content cannot be canonicalised (RFC 8785): {exc}") from exc
    return hashlib.sha256(canonical).digest()


def parse_sha256_hex(value: object) -> bytes:
    """Bytes of a 64-digit hex SHA-256 (either case), else :class:`InputError`."""
    if not isinstance(value, str) or len(value) != 64:
        raise InputError("sha256 must be 64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise InputError("sha256 must be 64 hex digits") from exc


def leaf_data(agency: str, record_id: str, digest: bytes, salt: bytes) -> bytes:
    """The leaf bytes for one record (format ``anchorpipe.leaf/1``).

    ``u16be-length-prefixed(format) || lp(utf8 agency) || lp(utf8 id) ||
    content sha256 (32 bytes) || salt (32 bytes)``. Preconditions (checked):
    a 32-byte digest and a 32-byte salt.
    """
    if len(digest) != HASH_SIZE:
        raise ValueError(f"content digest is {len(digest)} bytes, want {HASH_SIZE}")
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt is {len(salt)} bytes, want {SALT_SIZE}")
    return lp(LEAF_FORMAT) + lp(agency.encode()) + lp(record_id.encode()) + digest + salt


def record_leaf_hash(agency: str, record_id: str, digest: bytes, salt: bytes) -> bytes:
    """RFC 9162 leaf hash of a record's commitment."""
    return leaf_hash(leaf_data(agency, record_id, digest, salt))

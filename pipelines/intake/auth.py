"""API keys: agencies submit and read their own records; auditors read the agencies they are granted.

A key is shown once, when created; the state keeps only its SHA-256, with the
principal it stands for, when it was made, and when it expires (if ever). A key
is named in listings by its id (the first 12 hex digits of that digest), never
by itself. Rotating a principal's key mints a new one and lets the old ones
expire after a grace period, so systems can move over without an outage.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.commitment import check_agency
from pipelines.errors import InputError
from pipelines.state import now_ms

if TYPE_CHECKING:
    from pipelines.state import KeyState

KEY_PREFIX = "ap_"
KEY_ID_DIGITS = 12


@dataclass(frozen=True)
class Principal:
    kind: str  # "agency" or "auditor"
    name: str
    agencies: tuple[str, ...]

    def can_read(self, agency: str) -> bool:
        return agency in self.agencies


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as listings show it: never the key itself."""

    id: str
    kind: str
    name: str
    agencies: tuple[str, ...]
    created_ms: int
    expires_ms: int | None

    def expired(self, at_ms: int) -> bool:
        return self.expires_ms is not None and self.expires_ms <= at_ms


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(digest: str, doc: dict[str, Any]) -> KeyInfo:
    return KeyInfo(digest[:KEY_ID_DIGITS], doc["kind"], doc["name"], tuple(doc["agencies"]),
                   int(doc.get("created", 0)), doc.get("expires"))


def _create(state: KeyState, principal: Principal, expires_in_s: float | None) -> str:
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    now = now_ms()
    state.put_key(_digest(token), {"kind": principal.kind, "name": principal.name,
                                   "agencies": list(principal.agencies), "created": now,
                                   "expires": None if expires_in_s is None else now + int(expires_in_s * 1000)})
    return token


def _principal_keys(state: KeyState, kind: str, name: str) -> dict[str, dict[str, Any]]:
    return {d: doc for d, doc in state.keys().items() if (doc["kind"], doc["name"]) == (kind, name)}


def add_agency(state: KeyState, name: str, expires_in_s: float | None = None) -> str:
    """Create agency ``name`` and its first key; return the key (shown once, never stored).

    An agency that exists is refused: a second key is made only on purpose, by :func:`rotate`.
    """
    check_agency(name)
    if name in state.agencies():
        raise InputError(f"agency {name!r} exists; 'anchorpipe agency rotate {name}' makes it a new key")
    state.add_agency(name)
    return _create(state, Principal("agency", name, (name,)), expires_in_s)


def add_auditor(state: KeyState, name: str, agencies: list[str], expires_in_s: float | None = None) -> str:
    """Create a read-only key for auditor ``name`` over ``agencies`` (which must exist)."""
    if not name or len(name) > 128:
        raise InputError("auditor name must be 1-128 characters")
    if not agencies:
        raise InputError("grant the auditor at least one agency (--agency)")
    if _principal_keys(state, "auditor", name):
        raise InputError(f"auditor {name!r} exists; 'anchorpipe auditor rotate {name}' makes it a new key")
    known = state.agencies()
    unknown = [a for a in agencies if a not in known]
    if unknown:
        raise InputError(f"unknown agencies: {', '.join(unknown)}")
    return _create(state, Principal("auditor", name, tuple(agencies)), expires_in_s)


def rotate(state: KeyState, kind: str, name: str, grace_s: float, expires_in_s: float | None = None) -> str:
    """A new key for an existing agency or auditor; its current keys expire ``grace_s`` from now."""
    current = _principal_keys(state, kind, name)
    if current:
        agencies = tuple(next(iter(current.values()))["agencies"])
    elif kind == "agency" and name in state.agencies():
        agencies = (name,)  # every key was revoked (a leak): the agency gets a fresh one
    else:
        raise InputError(f"no {kind} {name!r} with a key")
    token = _create(state, Principal(kind, name, agencies), expires_in_s)
    until = now_ms() + int(grace_s * 1000)
    for digest, doc in current.items():
        if doc.get("expires") is None or doc["expires"] > until:
            state.put_key(digest, {**doc, "expires": until})
    return token


def list_keys(state: KeyState) -> list[KeyInfo]:
    """Every stored key (expired ones too, until revoked), by principal, then age."""
    return sorted((_info(d, doc) for d, doc in state.keys().items()), key=lambda k: (k.kind, k.name, k.created_ms))


def revoke(state: KeyState, key_id: str) -> KeyInfo:
    """Delete the key whose id is ``key_id`` (as listed); it stops working at once."""
    if len(key_id) < 8:
        raise InputError("give at least 8 hex digits of the key id (see 'anchorpipe key list')")
    matches = {d: doc for d, doc in state.keys().items() if d.startswith(key_id.lower())}
    if len(matches) != 1:
        raise InputError(f"key id {key_id!r} matches {len(matches)} keys, want exactly one")
    ((digest, doc),) = matches.items()
    state.delete_key(digest)
    return _info(digest, doc)


def authenticate(state: KeyState, token: str) -> Principal | None:
    """The principal holding ``token``, or None (unknown, revoked or expired)."""
    doc = state.get_key(_digest(token))
    if doc is None or (doc.get("expires") is not None and doc["expires"] <= now_ms()):
        return None
    return Principal(doc["kind"], doc["name"], tuple(doc["agencies"]))

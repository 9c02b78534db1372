"""API keys: agencies submit and read their own records; auditors read the agencies they are granted.

A key is shown once, when created; the state keeps only its SHA-256.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.core.commitment import check_agency
from pipelines.errors import InputError

if TYPE_CHECKING:
    from pipelines.state.redis import RedisState as State

KEY_PREFIX = "ap_"


@dataclass(frozen=True)
class Principal:
    kind: str  # "agency" or "auditor"
    name: str
    agencies: tuple[str, ...]

    def can_read(self, agency: str) -> bool:
        return agency in self.agencies


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _create(state: State, principal: Principal) -> str:
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    state.put_key(_digest(token), {"kind": principal.kind, "name": principal.name,
                                   "agencies": list(principal.agencies)})
    return token


def add_agency(state: State, name: str) -> str:
    """Create a key for agency ``name``; return the key (shown once, never stored)."""
    check_agency(name)
    state.add_agency(name)
    return _create(state, Principal("agency", name, (name,)))


def add_auditor(state: State, name: str, agencies: list[str]) -> str:
    """Create a read-only key for auditor ``name`` over ``agencies`` (which must exist)."""
    if not name or len(name) > 128:
        raise InputError("auditor name must be 1-128 characters")
    if not agencies:
        raise InputError("grant the auditor at least one agency (--agency)")
    known = state.agencies()
    unknown = [a for a in agencies if a not in known]
    if unknown:
        raise InputError(f"unknown agencies: {', '.join(unknown)}")
    return _create(state, Principal("auditor", name, tuple(agencies)))


def authenticate(state: State, token: str) -> Principal | None:
    """The principal holding ``token``, or None."""
    doc = state.get_key(_digest(token))
    if doc is None:
        return None
    return Principal(doc["kind"], doc["name"], tuple(doc["agencies"]))

"""Agencies and API keys in PostgreSQL (part of :class:`~pipelines.state.postgres.PostgresState`):
``agencies`` lists the agencies, ``api_keys`` maps the SHA-256 of a key to its principal."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from pipelines.state import now_ms


class KeysInPostgres:
    """Mixed into PostgresState, whose ``tx`` (one transaction) it uses."""

    tx: Callable[[], AbstractContextManager[Any]]

    def add_agency(self, name: str) -> None:
        with self.tx() as conn:
            conn.execute("INSERT INTO agencies (name, created_ms) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (name, now_ms()))

    def agencies(self) -> set[str]:
        with self.tx() as conn:
            return {r[0] for r in conn.execute("SELECT name FROM agencies").fetchall()}

    def put_key(self, digest: str, principal: dict[str, Any]) -> None:
        """Store an API key's principal under the key's digest (never the key itself)."""
        with self.tx() as conn:
            conn.execute("INSERT INTO api_keys (digest, principal) VALUES (%s, %s) "
                         "ON CONFLICT (digest) DO UPDATE SET principal = excluded.principal",
                         (digest, json.dumps(principal)))

    def get_key(self, digest: str) -> dict[str, Any] | None:
        with self.tx() as conn:
            row = conn.execute("SELECT principal FROM api_keys WHERE digest = %s", (digest,)).fetchone()
        return None if row is None else dict(row[0])

    def keys(self) -> dict[str, dict[str, Any]]:
        """Every stored key's digest and principal."""
        with self.tx() as conn:
            return {d: dict(p) for d, p in conn.execute("SELECT digest, principal FROM api_keys").fetchall()}

    def delete_key(self, digest: str) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM api_keys WHERE digest = %s", (digest,))

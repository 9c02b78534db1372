"""Pull-source state in PostgreSQL (part of :class:`~pipelines.state.postgres.PostgresState`).

``sources`` holds each source's cursor, failures, next run time, last error,
last success and run lock (holder token and expiry, in the server's clock);
``source_units`` the units fully read; ``quarantine`` the items set aside.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from pipelines.state import now_ms

#: The server's clock in ms: every worker's lock expiry is judged by one clock.
DB_NOW = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
_HOLDS = f"name = %(name)s AND lock_token = %(token)s AND lock_until > {DB_NOW}"


class SourcesInPostgres:
    """Mixed into PostgresState, whose ``tx`` (one transaction) it uses."""

    tx: Callable[[], AbstractContextManager[Any]]
    emit: Callable[..., None]  # WebhooksInPostgres.emit

    def source_status(self, name: str) -> dict[str, str]:
        """A source's cursor, failures, next run time (ms), last error and last success, as text."""
        with self.tx() as conn:
            cur = conn.execute("SELECT cursor, failures, next_at, last_error, last_ok FROM sources WHERE name = %s",
                               (name,))
            row, names = cur.fetchone(), [c.name for c in cur.description or ()]
        return {} if row is None else {k: str(v) for k, v in zip(names, row, strict=True) if v is not None}

    def source_cursor(self, name: str) -> str | None:
        with self.tx() as conn:
            row = conn.execute("SELECT cursor FROM sources WHERE name = %s", (name,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def lock_source(self, name: str, token: str, ttl_ms: int) -> bool:
        """Take a source's run lock for ``ttl_ms`` unless another run holds it."""
        with self.tx() as conn:
            conn.execute("INSERT INTO sources (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
            row = conn.execute(f"UPDATE sources SET lock_token = %(token)s, lock_until = {DB_NOW} + %(ttl)s "
                               f"WHERE name = %(name)s AND (lock_token IS NULL OR lock_until <= {DB_NOW}) RETURNING 1",
                               {"name": name, "token": token, "ttl": ttl_ms}).fetchone()
        return row is not None

    def renew_source_lock(self, name: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock if ``token`` still holds it; False if it expired and was lost."""
        with self.tx() as conn:
            row = conn.execute(f"UPDATE sources SET lock_until = {DB_NOW} + %(ttl)s WHERE {_HOLDS} RETURNING 1",
                               {"name": name, "token": token, "ttl": ttl_ms}).fetchone()
        return row is not None

    def release_source_lock(self, name: str, token: str) -> None:
        with self.tx() as conn:
            conn.execute("UPDATE sources SET lock_token = NULL, lock_until = NULL WHERE name = %s AND lock_token = %s",
                         (name, token))

    def commit_source_page(self, name: str, token: str, cursor: str | None, finished: list[str]) -> bool:
        """Store the cursor past a page and the units it finished, in one transaction, only while ``token``
        holds the run lock (the pull's commit point); False, and nothing stored, if the lock was lost."""
        with self.tx() as conn:
            row = conn.execute(f"UPDATE sources SET cursor = COALESCE(%(cursor)s, cursor) WHERE {_HOLDS} RETURNING 1",
                               {"name": name, "token": token, "cursor": cursor or None}).fetchone()
            if row is None:
                return False
            if finished:
                conn.execute("INSERT INTO source_units (source, unit, at_ms) SELECT %s, u, %s FROM unnest(%s::text[]) u "
                             "ON CONFLICT DO NOTHING", (name, now_ms(), finished))
        return True

    def source_unit_finished(self, name: str, unit: str) -> bool:
        with self.tx() as conn:
            return conn.execute("SELECT 1 FROM source_units WHERE source = %s AND unit = %s",
                                (name, unit)).fetchone() is not None

    def source_succeeded(self, name: str) -> None:
        with self.tx() as conn:
            conn.execute("INSERT INTO sources (name, last_ok) VALUES (%(name)s, %(now)s) ON CONFLICT (name) DO UPDATE "
                         "SET failures = 0, next_at = 0, last_ok = %(now)s, last_error = ''",
                         {"name": name, "now": now_ms()})

    def source_failed(self, name: str, error: str, backoff: Callable[[int], float]) -> int:
        """Count a failed run, wait ``backoff(failures)`` seconds before the next; return the failures."""
        with self.tx() as conn:
            (failures,) = conn.execute("INSERT INTO sources (name, failures) VALUES (%s, 1) ON CONFLICT (name) DO UPDATE "
                                       "SET failures = sources.failures + 1 RETURNING failures", (name,)).fetchone()
            conn.execute("UPDATE sources SET next_at = %s, last_error = %s WHERE name = %s",
                         (now_ms() + int(backoff(failures) * 1000), error.replace("\x00", ""), name))
        return int(failures)

    def quarantine(self, name: str, position: str, doc: dict[str, Any], agency: str | None = None) -> None:
        """Set an item aside; with ``agency``, its webhooks subscribed to ``records.quarantined`` hear of it
        (once per position, in the same transaction)."""
        with self.tx() as conn:
            new = conn.execute("INSERT INTO quarantine (source, position, doc) VALUES (%s, %s, %s) "
                               "ON CONFLICT (source, position) DO UPDATE SET doc = excluded.doc "
                               "RETURNING (xmax = 0)", (name, position, json.dumps(doc, default=str))).fetchone()[0]
            if agency and new:
                self.emit(conn, agency, "records.quarantined", {"agency": agency, "source": name,
                                                                 "position": position, "item": doc})

    def quarantined(self, name: str) -> list[dict[str, Any]]:
        with self.tx() as conn:
            rows = conn.execute("SELECT doc FROM quarantine WHERE source = %s ORDER BY position", (name,)).fetchall()
        return [json.loads(d) for (d,) in rows]

    def quarantine_size(self, name: str) -> int:
        with self.tx() as conn:
            return int(conn.execute("SELECT count(*) FROM quarantine WHERE source = %s", (name,)).fetchone()[0])

    def unquarantine(self, name: str, positions: list[str]) -> None:
        if positions:
            with self.tx() as conn:
                conn.execute("DELETE FROM quarantine WHERE source = %s AND position = ANY(%s)", (name, positions))

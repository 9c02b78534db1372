"""Webhook registrations and their outbox in PostgreSQL (part of :class:`~pipelines.state.postgres.PostgresState`).

Events are inserted in the transaction of the change they report (see ``emit_sql``),
one row per subscribed webhook, so none is lost or sent for a change that did not
commit. Deliveries claim due rows with ``FOR UPDATE SKIP LOCKED`` and a lease, so
several webhook workers never send the same event at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from pipelines.state import Delivery, Webhook, now_ms

#: The events an agency can subscribe to.
EVENTS = ("records.archived", "anchors.confirmed", "records.quarantined")
#: Inserts one event per webhook of %(agency)s subscribed to %(type)s; the payload is a SQL expression.
EMIT = ("INSERT INTO webhook_events (webhook_id, type, payload, created_ms) "
        "SELECT w.id, %(type)s, {payload}, %(now)s FROM webhooks w WHERE w.agency = %(agency)s AND %(type)s = ANY(w.events)")


class WebhooksInPostgres:
    """The webhook outbox (:class:`~pipelines.state.WebhookOutbox`) and its administration; mixed into PostgresState, whose ``tx`` (one transaction) it uses."""

    tx: Callable[[], AbstractContextManager[Any]]

    def add_webhook(self, agency: str, url: str, events: list[str], secret: str) -> int:
        with self.tx() as conn:
            return int(conn.execute("INSERT INTO webhooks (agency, url, events, secret, created_ms) VALUES "
                                    "(%s, %s, %s, %s, %s) RETURNING id",
                                    (agency, url, sorted(set(events)), secret, now_ms())).fetchone()[0])

    def webhooks(self, agency: str | None = None) -> list[Webhook]:
        with self.tx() as conn:
            rows = conn.execute("SELECT id, agency, url, events, secret FROM webhooks WHERE %s::text IS NULL OR "
                                "agency = %s ORDER BY id", (agency, agency)).fetchall()
        return [Webhook(i, a, u, list(e), s) for i, a, u, e, s in rows]

    def delete_webhook(self, agency: str, webhook_id: int) -> bool:
        with self.tx() as conn:
            return conn.execute("DELETE FROM webhooks WHERE id = %s AND agency = %s RETURNING 1",
                                (webhook_id, agency)).fetchone() is not None

    def emit(self, conn: Any, agency: str, type_: str, payload: dict[str, Any]) -> None:
        """Insert event ``type_`` for ``agency``'s subscribed webhooks, in the caller's transaction ``conn``."""
        conn.execute(EMIT.format(payload="%(payload)s::jsonb"),
                     {"type": type_, "agency": agency, "now": now_ms(), "payload": json.dumps(payload)})

    def claim_deliveries(self, now: int, lease_ms: int, per_delivery: int = 100, limit: int = 1000) -> list[Delivery]:
        """Due pending events, grouped by webhook (at most ``per_delivery`` each), leased for ``lease_ms``."""
        with self.tx() as conn:
            rows = conn.execute(
                "UPDATE webhook_events e SET next_try_ms = %s FROM (SELECT id FROM webhook_events WHERE state = "
                "'pending' AND next_try_ms <= %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) due "
                "WHERE e.id = due.id RETURNING e.id, e.webhook_id, e.type, e.payload, e.created_ms, e.attempts",
                (now + lease_ms, now, limit)).fetchall()
            hooks = {w.id: w for w in self._hooks(conn, sorted({r[1] for r in rows}))}
        grouped: dict[int, list[dict[str, Any]]] = {}
        for event_id, hook, type_, payload, created, attempts in sorted(rows):
            grouped.setdefault(hook, []).append({"id": event_id, "type": type_, "payload": payload,
                                                 "created_ms": created, "attempts": attempts})
        out = []
        for hook, events in grouped.items():
            for i in range(0, len(events), per_delivery):
                out.append(Delivery(hooks[hook], events[i:i + per_delivery], now + lease_ms))
        return out

    def renew(self, event_ids: list[int], lease: int, until: int) -> list[int]:
        """Extend a claim that is still ours (pending, with our lease) to ``until``; the ids still held (a
        slow run whose lease ran out finds that another worker took its events)."""
        with self.tx() as conn:
            return [r[0] for r in conn.execute(
                "UPDATE webhook_events SET next_try_ms = %s WHERE id = ANY(%s) AND state = 'pending' "
                "AND next_try_ms = %s RETURNING id", (until, event_ids, lease)).fetchall()]

    def _hooks(self, conn: Any, ids: list[int]) -> list[Webhook]:
        rows = conn.execute("SELECT id, agency, url, events, secret FROM webhooks WHERE id = ANY(%s)", (ids,))
        return [Webhook(i, a, u, list(e), s) for i, a, u, e, s in rows.fetchall()]

    def delivered(self, event_ids: list[int], lease: int) -> None:
        """Mark events delivered, those still held under ``lease`` (never one another worker has since)."""
        with self.tx() as conn:
            conn.execute("UPDATE webhook_events SET state = 'delivered', delivered_ms = %s, error = NULL "
                         "WHERE id = ANY(%s) AND state = 'pending' AND next_try_ms = %s", (now_ms(), event_ids, lease))

    def delivery_failed(self, event_ids: list[int], lease: int, error: str, next_try_ms: int, dead_after: int
                        ) -> int:
        """Count a failed attempt of events still held under ``lease``: retry at ``next_try_ms``, or
        dead-letter those past ``dead_after`` attempts; return how many went to the dead letters."""
        with self.tx() as conn:
            rows = conn.execute(
                "UPDATE webhook_events SET attempts = attempts + 1, error = %s, next_try_ms = %s, state = CASE "
                "WHEN attempts + 1 >= %s THEN 'dead' ELSE 'pending' END WHERE id = ANY(%s) AND state = 'pending' "
                "AND next_try_ms = %s RETURNING state", (error, next_try_ms, dead_after, event_ids, lease)).fetchall()
        return sum(1 for (s,) in rows if s == "dead")

    def webhook_events(self, state: str, agency: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        with self.tx() as conn:
            rows = conn.execute(
                "SELECT e.id, w.agency, w.url, e.type, e.attempts, e.error, e.created_ms FROM webhook_events e "
                "JOIN webhooks w ON w.id = e.webhook_id WHERE e.state = %s AND (%s::text IS NULL OR w.agency = %s) "
                "ORDER BY e.id LIMIT %s", (state, agency, agency, limit)).fetchall()
        keys = ("id", "agency", "url", "type", "attempts", "error", "created_ms")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def replay_webhooks(self, agency: str | None = None, event_ids: list[int] | None = None) -> int:
        """Send dead-lettered events again (all, ``agency``'s, or those ids); how many."""
        with self.tx() as conn:
            return len(conn.execute(
                "UPDATE webhook_events e SET state = 'pending', attempts = 0, next_try_ms = 0 FROM webhooks w "
                "WHERE w.id = e.webhook_id AND e.state = 'dead' AND (%s::text IS NULL OR w.agency = %s) "
                "AND (%s::bigint[] IS NULL OR e.id = ANY(%s)) RETURNING 1",
                (agency, agency, event_ids, event_ids)).fetchall())

"""Webhook deliveries: the outbox's due events, batched per webhook, signed per Standard Webhooks, POSTed.

Runs on its own queue (``webhooks``), so a slow or dead receiver never holds up
the pipeline: events wait in PostgreSQL (written with the change they report).
Each delivery is one POST of up to 100 events, signed with the webhook's secret
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` headers, the
``standardwebhooks`` library); a 2xx marks them delivered, anything else retries
them with exponential backoff and jitter (at most an hour), and after
``ANCHORPIPE_WEBHOOK_ATTEMPTS`` attempts they go to the dead letters, which
``anchorpipe webhook replay`` sends again.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook as Signer

from pipelines.ops import metrics
from pipelines.ops.logs import event
from pipelines.state import now_ms
from pipelines.state.postgres_webhooks import Delivery, WebhooksInPostgres


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_url(url: str, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook, or None: it must be http(s) with a host, and (unless allowed) not a
    loopback, private, link-local or reserved address, nor localhost."""
    import ipaddress

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "want an http(s) URL with a host"
    if allow_private:
        return None
    host = parts.hostname.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "a webhook cannot point at this host's own addresses"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return f"a webhook cannot point at a {'loopback' if ip.is_loopback else 'private or reserved'} address"
    return None


def message(delivery: Delivery) -> tuple[str, bytes]:
    """The delivery's message id (the same for the same events, so a receiver can drop a repeat) and body."""
    ids = [e["id"] for e in delivery.events]
    body = {"type": "anchorpipe.events", "timestamp": datetime.now(UTC).isoformat(),
            "data": {"events": [{"id": e["id"], "type": e["type"], "created_ms": e["created_ms"],
                                 "data": e["payload"]} for e in delivery.events]}}
    return f"msg_{delivery.webhook.id}_{ids[0]}_{ids[-1]}_{len(ids)}", json.dumps(body).encode()


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


@dataclass
class Deliveries:
    state: WebhooksInPostgres
    attempts: int = 10
    timeout: float = 10.0
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))

    def deliver_due(self, now: int | None = None) -> int:
        """Send every due event; return how many were delivered."""
        now = now_ms() if now is None else now
        delivered = 0
        for d in self.state.claim_deliveries(now, lease_ms=int(self.timeout * 1000) * 3):
            delivered += self._send(d, now)
        return delivered

    def _send(self, d: Delivery, now: int) -> int:
        msg_id, body = message(d)
        stamp = datetime.now(UTC)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                   "webhook-signature": Signer(d.webhook.secret).sign(msg_id, stamp, body.decode()),
                   "content-type": "application/json"}
        ids = [e["id"] for e in d.events]
        try:
            resp = self.http.post(d.webhook.url, content=body, headers=headers, timeout=self.timeout)
            error = None if 200 <= resp.status_code < 300 else f"answered {resp.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        if error is None:
            self.state.delivered(ids)
            metrics.WEBHOOKS.labels("delivered").inc(len(ids))
            return len(ids)
        attempt = max(e["attempts"] for e in d.events) + 1
        delay = min(5.0 * 2 ** attempt, 3600.0) * random.uniform(0.5, 1.0)
        dead = self.state.delivery_failed(ids, error, now + int(delay * 1000), self.attempts)
        metrics.WEBHOOKS.labels("failed").inc(len(ids) - dead)
        metrics.WEBHOOKS.labels("dead").inc(dead)
        event("webhook_failed", f"webhook {d.webhook.id} at {where(d.webhook.url)}: {error}", level="warning",
              webhook=d.webhook.id, agency=d.webhook.agency, events=len(ids), attempt=attempt, dead=dead)
        return 0

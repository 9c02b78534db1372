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
import ipaddress
import json
import random
import re
import secrets
import socket
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


_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or \
        ip.is_unspecified


def check_url(url: str, allow_private: bool, *, resolve: bool = False) -> str | None:
    """Why ``url`` cannot be a webhook, or None: it must be http(s) with a host, and (unless allowed) not a
    loopback, private, link-local or reserved address, nor localhost, nor a number standing for one
    (``127.1``, ``2130706433``); with ``resolve`` (at each delivery), no address its name resolves to either."""
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
        if all(_NUMBER.fullmatch(label) for label in host.split(".")):  # 127.1, 2130706433, 0x7f.0.0.1
            return "write the host as a name or a full address, not as a number"
        ip = None
    if ip is not None and _internal(ip):
        return f"a webhook cannot point at a {'loopback' if ip.is_loopback else 'private or reserved'} address"
    if resolve and ip is None:
        try:
            found = {a[4][0] for a in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
        except OSError:
            return None  # it does not resolve: the delivery fails and is retried
        if any(_internal(ipaddress.ip_address(a.split("%")[0])) for a in found):
            return f"{host} resolves to a private or reserved address"
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
    allow_private: bool = False

    def deliver_due(self, now: int | None = None) -> int:
        """Send every due event; return how many were delivered."""
        now = now_ms() if now is None else now
        delivered = 0
        for d in self.state.claim_deliveries(now, lease_ms=int(self.timeout * 1000) * 3):
            delivered += self._send(d, now)
        return delivered

    def _send(self, d: Delivery, now: int) -> int:
        # Renew the claim just before sending: a run slowed by earlier receivers may have lost it to another
        # worker, which then sends these events; this one must not send them too.
        now = max(now, now_ms())
        lease = now + int(self.timeout * 2000)
        held = set(self.state.renew([e["id"] for e in d.events], d.lease, lease))
        d = Delivery(d.webhook, [e for e in d.events if e["id"] in held], lease)
        if not d.events:
            return 0
        msg_id, body = message(d)
        stamp = datetime.now(UTC)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                   "webhook-signature": Signer(d.webhook.secret).sign(msg_id, stamp, body.decode()),
                   "content-type": "application/json"}
        ids = [e["id"] for e in d.events]
        error = check_url(d.webhook.url, self.allow_private, resolve=True)  # at each delivery: DNS may change
        if error is None:
            try:
                resp = self.http.post(d.webhook.url, content=body, headers=headers, timeout=self.timeout)
                error = None if 200 <= resp.status_code < 300 else f"answered {resp.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
        if error is None:
            self.state.delivered(ids, d.lease)
            metrics.WEBHOOKS.labels("delivered").inc(len(ids))
            return len(ids)
        attempt = max(e["attempts"] for e in d.events) + 1
        delay = min(5.0 * 2 ** attempt, 3600.0) * random.uniform(0.5, 1.0)
        dead = self.state.delivery_failed(ids, d.lease, error, max(now, now_ms()) + int(delay * 1000), self.attempts)
        metrics.WEBHOOKS.labels("failed").inc(len(ids) - dead)
        metrics.WEBHOOKS.labels("dead").inc(dead)
        event("webhook_failed", f"webhook {d.webhook.id} at {where(d.webhook.url)}: {error}", level="warning",
              webhook=d.webhook.id, agency=d.webhook.agency, events=len(ids), attempt=attempt, dead=dead)
        return 0

"""Webhook deliveries: the outbox's due events, batched per webhook, signed per Standard Webhooks, POSTed.

Runs on its own queue (``webhooks``), so a slow or dead receiver never holds up
the pipeline: events wait in PostgreSQL (written with the change they report).
Each delivery is one POST of up to 100 events, signed with the webhook's secret
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` headers, the
``standardwebhooks`` library); a 2xx marks them delivered, anything else retries
them with exponential backoff and jitter (at most an hour), and after
``ANCHORPIPE_WEBHOOK_ATTEMPTS`` attempts they go to the dead letters, which
``anchorpipe webhook replay`` sends again.

A receiver is a stranger on the network: each delivery has one total deadline
(``ANCHORPIPE_WEBHOOK_TIMEOUT``: connect, send and the whole answer, however
slowly it trickles), at most :data:`MAX_ANSWER_BYTES` of its answer are read, and
each agency's deliveries take one slot, one after another, while other agencies'
go on beside them: a hung receiver delays its own agency only.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import random
import re
import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook as Signer

from pipelines.ops import metrics
from pipelines.ops.logs import event
from pipelines.state import Delivery, WebhookOutbox, now_ms


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")
#: The longest webhook URL taken (RFC 9110 recommends senders support at least 8,000 bytes; no receiver needs
#: more than this, and every delivery carries it).
MAX_URL_BYTES = 2048


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_REFUSED_V6 = [ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "fec0::/10", "2002::/16", "2001::/32", "::/96")]


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Not a globally routable address: loopback, private, carrier-grade NAT (100.64.0.0/10, where some clouds
    answer metadata), link-local, reserved, documentation, multicast...; an IPv6 address that carries an IPv4
    one (mapped, NAT64, 6to4, Teredo, IPv4-compatible) by that IPv4 address, and the transition ranges whose
    far end cannot be told (NAT64 local use, site-local, 6to4, Teredo) refused outright."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _REFUSED_V6[4] and int(ip) > 1:  # ::a.b.c.d (IPv4-compatible)
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _forbidden(embedded) or any(ip in n for n in _REFUSED_V6[1:4])
        if any(ip in n for n in _REFUSED_V6):
            return True
    return not ip.is_global or ip.is_multicast


def normal_host(host: str) -> str:
    """``host`` as DNS and the address parser read it: unbracketed, lower case, without a trailing dot, and
    internationalised names in their ASCII (IDNA) form; ValueError for a name IDNA refuses."""
    import idna

    host = host.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return idna.encode(host, uts46=True).decode("ascii") if host else host
    except idna.IDNAError as exc:
        raise ValueError(f"the host {host!r} is not a valid name: {exc}") from None


def check_url(url: str, allow_private: bool, *, resolve: bool = False) -> str | None:
    """Why ``url`` cannot be a webhook, or None: an http(s) URL of at most MAX_URL_BYTES with a host, and (unless
    allowed) a host that is a globally routable address, or a name (not localhost) that is not a number standing
    for one (``127.1``, ``2130706433``); with ``resolve`` (at each delivery), every address the name resolves to
    globally routable too. Hosts are compared as DNS reads them (case, trailing dot, IDNA)."""
    if len(url.encode()) > MAX_URL_BYTES:
        return f"a webhook URL is at most {MAX_URL_BYTES:,} bytes"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "want an http(s) URL with a host"
    try:  # as the sender will read it: httpx's own parser, and a port in range
        httpx.URL(url)
        parts.port  # noqa: B018 - raises ValueError out of range
    except (httpx.InvalidURL, ValueError) as exc:
        return f"not a URL the notifier can send to: {exc}"
    if allow_private:
        return None
    try:
        host = normal_host(parts.hostname)
    except ValueError as exc:
        return str(exc)
    if not host or host == "localhost" or host.endswith(".localhost"):
        return "a webhook cannot point at this host's own addresses"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if all(_NUMBER.fullmatch(label) for label in host.split(".")):  # 127.1, 2130706433, 0x7f.0.0.1
            return "write the host as a name or a full address, not as a number"
        ip = None
    if ip is not None and _forbidden(ip):
        return f"a webhook cannot point at a {'loopback' if ip.is_loopback else 'private or reserved'} address"
    if resolve and ip is None:
        try:
            found = {a[4][0] for a in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
        except OSError:
            return None  # it does not resolve: the delivery fails and is retried
        if any(_forbidden(ipaddress.ip_address(a.split("%")[0])) for a in found):
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
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


#: The most of a receiver's answer that is read (its status is what counts).
MAX_ANSWER_BYTES = 4096
#: Agencies whose deliveries go out at once, each agency one at a time.
AGENCY_SLOTS = 16


@dataclass
class Deliveries:
    state: WebhookOutbox
    attempts: int = 10
    timeout: float = 10.0
    transport: httpx.AsyncBaseTransport | None = None  # (tests: a receiver that fails on cue)
    allow_private: bool = False

    def deliver_due(self, now: int | None = None) -> int:
        """Send every due event; return how many were delivered."""
        now = now_ms() if now is None else now
        by_agency: dict[str, list[Delivery]] = {}
        for d in self.state.claim_deliveries(now, lease_ms=int(self.timeout * 1000) * 3):
            by_agency.setdefault(d.webhook.agency, []).append(d)
        return asyncio.run(self._deliver(list(by_agency.values()), now)) if by_agency else 0

    async def _deliver(self, agencies: list[list[Delivery]], now: int) -> int:
        slots = asyncio.Semaphore(AGENCY_SLOTS)
        # Threads of this run's own for the state's calls and name lookups: a lookup that hangs holds one of
        # them, never the event loop nor another agency's bookkeeping; the run does not wait for it at the end.
        self._threads = ThreadPoolExecutor(max_workers=AGENCY_SLOTS * 2, thread_name_prefix="webhooks")

        async def one_agency(deliveries: list[Delivery]) -> int:
            async with slots:
                return sum([await self._send(client, d, now) for d in deliveries])

        try:
            async with httpx.AsyncClient(transport=self.transport, follow_redirects=False) as client:
                return sum(await asyncio.gather(*(one_agency(ds) for ds in agencies)))
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def _send(self, client: httpx.AsyncClient, d: Delivery, now: int) -> int:
        # Renew the claim just before sending: a run slowed by earlier receivers may have lost it to another
        # worker, which then sends these events; this one must not send them too. The lease (twice the
        # deadline) outlasts the name lookup and the send, which the deadline ends together: no send of these
        # events is still running when another worker may take them.
        now = max(now, now_ms())
        lease = now + int(self.timeout * 2000)
        held = set(await self._call(self.state.renew, [e["id"] for e in d.events], d.lease, lease))
        d = Delivery(d.webhook, [e for e in d.events if e["id"] in held], lease)
        if not d.events:
            return 0
        ids = [e["id"] for e in d.events]
        started = time.monotonic()
        try:
            error = await self._attempt(client, d)
        except Exception as exc:  # one webhook's fault (a URL stored before a rule, say) is its own failed attempt
            error = f"{type(exc).__name__}: the notifier could not send to this URL"
        took = round(time.monotonic() - started, 3)
        if error is None:
            await self._call(self.state.delivered, ids, d.lease)
            metrics.WEBHOOKS.labels("delivered").inc(len(ids))
            # The receiver's host only: a URL's path or query may hold the receiver's own secret.
            event("webhook_delivered", f"webhook {d.webhook.id} of {d.webhook.agency}: {len(ids)} events delivered "
                  f"to {where(d.webhook.url)} in {took:.2f} s", webhook=d.webhook.id, agency=d.webhook.agency,
                  events=len(ids), status="delivered", seconds=took)
            return len(ids)
        attempt = max(e["attempts"] for e in d.events) + 1
        delay = min(5.0 * 2 ** attempt, 3600.0) * random.uniform(0.5, 1.0)
        dead = await self._call(self.state.delivery_failed, ids, d.lease, error,
                                max(now, now_ms()) + int(delay * 1000), self.attempts)
        metrics.WEBHOOKS.labels("failed").inc(len(ids) - dead)
        metrics.WEBHOOKS.labels("dead").inc(dead)
        event("webhook_failed", f"webhook {d.webhook.id} at {where(d.webhook.url)}: {error}", level="warning",
              webhook=d.webhook.id, agency=d.webhook.agency, events=len(ids), attempt=attempt, dead=dead,
              status="dead" if dead else "failed", seconds=took)
        return 0

    async def _attempt(self, client: httpx.AsyncClient, d: Delivery) -> str | None:
        """One signed POST of ``d``, its host checked again first (DNS may have changed since registration),
        both within the one deadline; why it failed, or None."""
        msg_id, body = message(d)
        stamp = datetime.now(UTC)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                   "webhook-signature": Signer(d.webhook.secret).sign(msg_id, stamp, body.decode()),
                   "content-type": "application/json"}
        try:
            async with asyncio.timeout(self.timeout):
                error = await self._call(partial(check_url, d.webhook.url, self.allow_private, resolve=True))
                return error or await self._post(client, d.webhook.url, body, headers)
        except TimeoutError:
            return f"no whole answer within {self.timeout:g} s"

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """POST (the caller holds the deadline), reading at most MAX_ANSWER_BYTES of the answer; why it failed, or
        None."""
        try:
            async with client.stream("POST", url, content=body, headers=headers, timeout=self.timeout) as resp:
                read = 0
                async for chunk in resp.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_ANSWER_BYTES:
                        break
                status = resp.status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if 200 <= status < 300 else f"answered {status}"

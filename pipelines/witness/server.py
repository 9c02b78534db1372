"""The witness's HTTP service: C2SP tlog-witness ``POST /add-checkpoint``, with request size and rate limits.

Run by ``anchorpipe witness serve`` (uvicorn, one process: requests are checked and
recorded one at a time on its event loop, and the state's transaction makes even
several processes on one file safe). ``GET /`` says who the witness is and which
logs it witnesses; ``GET /healthz`` answers once its state is readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipelines.core.cosignature import Cosigner
from pipelines.core.note import Verifier, split_note
from pipelines.core.checkpoint import Checkpoint
from pipelines.core.witness import MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE, AddCheckpoint, Held, Refused, \
    check_extends, open_request, parse_request
from pipelines.errors import StorageError
from pipelines.ops.logs import event
from pipelines.witness.state import WitnessState


@dataclass
class Witness:
    """Cosigns the checkpoints of ``logs`` (origin -> the log's verifier keys) that extend what it holds."""

    cosigner: Cosigner
    logs: Mapping[str, Sequence[Verifier]]
    state: WitnessState
    clock: Callable[[], float] = time.time

    def add_checkpoint(self, body: bytes) -> str:
        """The cosignature line for an ``add-checkpoint`` body; :class:`Refused` with the spec's status."""
        req, cp = self.open(body)
        return self.add(req, cp)

    def open(self, body: bytes) -> tuple[AddCheckpoint, Checkpoint]:
        """The request and its checkpoint, signed by a log this witness knows; :class:`Refused` otherwise."""
        req = parse_request(body)
        return req, open_request(req, self.logs)

    def add(self, req: AddCheckpoint, cp: Checkpoint) -> str:
        """Cosign ``cp`` if it extends what is held (see :meth:`open`)."""
        try:
            self.state.advance(cp, req.note, lambda held: check_extends(req, cp, held))
        except Refused as exc:
            # Evidence only of what proves the log misbehaved: two checkpoints it signed, of one size, with two
            # roots (a failed consistency proof proves nothing: anyone can attach a made-up one).
            if exc.evidence and self.state.keep_fork(cp.origin, req.note, str(exc), exc.held_note):
                event("witness_refused", f"{cp.origin}: {exc}", level="warning", origin=cp.origin, size=cp.size)
            raise
        return self.cosigner.cosign(split_note(req.note)[0], int(self.clock()))

    def held(self, origin: str) -> Held | None:
        return self.state.held(origin)


@dataclass
class RateLimit:
    """A token bucket per client address: ``rate`` requests a second, bursts of ``burst`` (rate 0: none)."""

    rate: float
    burst: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def wait(self, client: str, now: float) -> float:
        """0 if the request may go now (and it is counted), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > 100_000:  # forget idle clients rather than grow without bound
            self.buckets = {c: b for c, b in self.buckets.items() if now - b[1] < 60}
        return 0.0


def create_app(witness: Witness, rate: float = 50.0, burst: float = 100.0) -> Starlette:
    limit = RateLimit(rate, burst)

    def limited(who: str) -> Response | None:
        wait = limit.wait(who, time.monotonic())
        return PlainTextResponse("rate limited\n", 429, headers={"Retry-After": str(max(1, round(wait)))}) \
            if wait else None

    async def add_checkpoint(request: Request) -> Response:
        refused = limited("client " + (request.client.host if request.client else "-"))
        if refused:
            return refused
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
            return PlainTextResponse(f"request body over {MAX_REQUEST_BYTES} bytes\n", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse(f"request body over {MAX_REQUEST_BYTES} bytes\n", 413)
        try:
            req, cp = witness.open(body)
            # Per log too, once the log's signature is verified (so only logs this witness knows have a bucket):
            # many addresses cannot make it write one log's state more often than this.
            refused = limited("log " + cp.origin)
            if refused:
                return refused
            line = witness.add(req, cp)
        except Refused as exc:
            if exc.status == 409 and exc.size is not None:
                return PlainTextResponse(f"{exc.size}\n", 409, media_type=SIZE_CONTENT_TYPE)
            return PlainTextResponse(f"{exc}\n", exc.status)
        except StorageError as exc:
            event("witness_error", f"witness state: {exc}", level="error")
            return PlainTextResponse("witness state unavailable\n", 503)
        return PlainTextResponse(line, 200)

    async def about(_: Request) -> Response:
        logs = "".join(f"log {origin} {' '.join(v.text() for v in keys)}\n" for origin, keys in witness.logs.items())
        return PlainTextResponse(f"witness {witness.cosigner.verifier().text()}\n{logs}")

    async def healthz(_: Request) -> Response:
        try:
            for origin in witness.logs:
                witness.held(origin)
        except Exception:
            return PlainTextResponse("state unreadable\n", 503)
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
                             Route("/", about), Route("/healthz", healthz)])

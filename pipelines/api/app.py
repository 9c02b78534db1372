"""The intake HTTP API (ASGI, FastAPI). Run: ``uvicorn pipelines.api.app:app`` (see the Procfile).

POST /v1/records answers 202 only once every record of the request is stored
(committed in PostgreSQL); a rejected request stores nothing. Parsing, RFC 8785
canonicalisation and state calls run in worker threads, never on the event
loop, so health checks answer while large requests are processed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import sys
import time
from http import HTTPStatus
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from starlette.concurrency import run_in_threadpool

from pipelines.archive.directory import fetch_proof, read_proof
from pipelines.config import Settings
from pipelines.core.commitment import check_agency, record_leaf_hash
from pipelines.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, AnchorpipeError, ConflictRecord, InputError, RateLimited, RecordError
from pipelines.intake.auth import Principal, authenticate
from pipelines.intake.records import parse_body
from pipelines.api.schema import AUTH, GET_RESPONSES, PROBLEM_TYPE, SUBMIT_BODY, SUBMIT_RESPONSES, \
    WEBHOOK_RESPONSES, RecordStatus, Submitted, WebhookIn, WebhookOut
from pipelines.intake.submit import store_records
from pipelines.api.metrics import StateCollector
from pipelines.api.readiness import Readiness
from pipelines.ops import metrics
from pipelines.ops.logs import configure as configure_logging
from pipelines.ops.monitoring import report_exception
from pipelines.runtime import Runtime, runtime
from pipelines.stages import QUEUES
from pipelines.core.proof import Proof
from pipelines.state import Accepted
from pipelines.stages.webhooks import check_url, new_secret

#: Threads that read proofs from the archive for GET /v1/records (apart from those that accept records).
ARCHIVE_READERS = 8
#: The browser proof checker, one self-contained page built by `make web/dist/verify.html`
#: (docs/browser-checker.md), served at GET /verify.
CHECKER_PAGE = Path(__file__).resolve().parents[2] / "web" / "dist" / "verify.html"
#: The API's HTML reference (Redoc, from docs/openapi.json), built beside it and served at GET /docs.
REFERENCE_PAGE = CHECKER_PAGE.with_name("api.html")


def create_app(cfg: Settings | None = None, *, check_state: bool = True) -> FastAPI:
    """The API for ``cfg`` (default: the process's settings, from the environment).

    It refuses to start (ConfigError) when Sentry is configured but cannot start, or on a
    database at another schema or one that could lose a commit; ``check_state=False``
    skips those (to build the OpenAPI document alone).
    """
    rt = Runtime(cfg) if cfg is not None else runtime()
    configure_logging(rt.cfg)
    if check_state:
        rt.check_start(on_wait=lambda why: print(f"anchorpipe web: {why}", file=sys.stderr, flush=True))
    app = FastAPI(title="anchorpipe intake", version="1", description=API_DESCRIPTION, docs_url=None, redoc_url=None)

    @app.exception_handler(AnchorpipeError)
    async def _anchorpipe_error(_: Request, exc: AnchorpipeError) -> JSONResponse:
        if exc.transient:
            return problem(503, "storage unavailable, retry", headers={"Retry-After": "1"})
        if isinstance(exc, InputError):
            return problem(400, str(exc))
        report_exception(exc)  # a fault of the deployment: its details are for operators, not clients
        return problem(500, "internal error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, whichever of its routes answered
            methods = {m for r in app.routes if isinstance(r, Route) and r.methods
                       and r.matches(request.scope)[0] != Match.NONE for m in r.methods}
            headers["Allow"] = ", ".join(sorted(methods))
        return problem(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return problem(422, f"the request is not valid: {where}")

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(SmallBodies, paths=frozenset({"/v1/webhooks"}))
    if rt.failure_limiter is not None:
        app.add_middleware(RefusalLimit, limiter=rt.failure_limiter)

    app.include_router(_records_routes(rt))
    app.include_router(_webhook_routes(rt))
    app.include_router(_health_routes(rt))
    app.include_router(_checker_routes())
    return app


API_DESCRIPTION = """Agencies submit records and read their status and proofs; auditors read what they are granted.

Authenticate with `Authorization: Bearer <API key>` (`anchorpipe agency add` and `anchorpipe auditor add` make
keys). Every error is an RFC 9457 problem details object (`application/problem+json`): `type`, `title`,
`status`, `detail`, and for some problems extension members (`errors` and `problems` for invalid records, `id`
for a conflicting record). Within `/v1` changes are backwards-compatible only: new members, new optional
parameters, new endpoints.
"""


def problem(status: int, detail: str, *, type_: str = "about:blank", title: str | None = None,
            headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
    """An RFC 9457 problem details answer."""
    body = {"type": type_, "title": title or HTTPStatus(status).phrase, "status": status, "detail": detail,
            **extensions}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_TYPE)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error answer under ``application/problem+json`` alone."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in doc["paths"].values():
            for operation in path.values():
                for code, answer in operation.get("responses", {}).items():
                    content = answer.get("content", {})
                    if code[0] in "45" and "application/json" in content:
                        schema = content.pop("application/json")["schema"]
                        content.setdefault(PROBLEM_TYPE, {})["schema"] = schema
                    if code == "422" and "Problem" not in str(content):  # FastAPI's own validation answer
                        answer["content"] = {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        doc["components"]["schemas"].pop("HTTPValidationError", None)
        doc["components"]["schemas"].pop("ValidationError", None)
        # Auth is declared (clients and the HTML reference show it); operations do not repeat it, as every
        # route but /healthz and /readyz needs a key (API_DESCRIPTION).
        doc["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer",
                                                           "description": "an agency's or an auditor's API key"}}
        app.openapi_schema = doc
    return app.openapi_schema


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, built from the code alone (no service is reached)."""
    cfg = Settings(database_url="postgresql://127.0.0.1:1/none", redis_url="redis://127.0.0.1:1/0",
                   archive="/nonexistent")
    return create_app(cfg, check_state=False).openapi()


def _checker_routes() -> APIRouter:
    """GET /verify: the browser proof checker, a static page (no key needed: it holds no data, and it checks
    proofs in the auditor's browser, sending nothing back)."""
    router = APIRouter()

    @router.get("/verify", include_in_schema=False)
    def checker() -> Response:
        return _static_page(CHECKER_PAGE, "the browser proof checker", "docs/browser-checker.md", _checker_csp)

    @router.get("/docs", include_in_schema=False)
    def reference() -> Response:
        """The API's HTML reference (the same contract as /openapi.json and docs/openapi.json)."""
        return _static_page(REFERENCE_PAGE, "the API reference", "docs/client.md", _reference_csp)

    return router


def _static_page(page: Path, what: str, doc: str, csp: Callable[[bytes], str]) -> Response:
    """A page built by `make` (read at each request: one built after the API started is served), with a
    Content-Security-Policy header that forbids every request the page does not need and any framing."""
    try:
        html = page.read_bytes()
    except OSError:
        return problem(404, f"{what} was not built ({page} is missing): run `make web/dist/verify.html` ({doc})")
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer", "Content-Security-Policy": csp(html),
                             "X-Frame-Options": "DENY"})


_META_CSP = re.compile(rb'<meta http-equiv="Content-Security-Policy" content="([^"]*)"')
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def _checker_csp(html: bytes) -> str:
    """The checker's own policy (its meta tag: its one script and style by hash, no request at all)."""
    found = _META_CSP.search(html)
    return (found[1].decode() if found else "default-src 'none'") + "; frame-ancestors 'none'"


def _reference_csp(html: bytes) -> str:
    """Redoc's page: its inline scripts by hash, the styles and search worker it makes at run time; no request."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m[1]).digest()).decode()}'"
                      for m in _INLINE_SCRIPT.finditer(html))
    return (f"default-src 'none'; script-src {hashes} blob:; worker-src blob:; style-src 'unsafe-inline'; "
            "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def _principal_dependency(rt: Runtime) -> Any:
    def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        found = authenticate(rt.state, token.strip()) if scheme.lower() == "bearer" and token else None
        if found is None:
            raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return found

    return principal


#: Answers that count against a client's ANCHORPIPE_FAILURE_LIMIT (a 404 does not: agencies look up ids).
REFUSALS = frozenset({400, 401, 403, 413, 422})


class RefusalLimit:
    """ASGI middleware: a client (its address, and the key it presents, by digest) whose requests were refused
    ANCHORPIPE_FAILURE_LIMIT times in ten seconds is answered 429 with Retry-After, before its body is read,
    until the window ends. Health and metrics are never limited."""

    def __init__(self, app: Any, limiter: Any) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ("/healthz", "/readyz", "/metrics"):
            return await self.app(scope, receive, send)
        who = [f"addr:{scope['client'][0] if scope.get('client') else '-'}"]
        auth = dict(scope["headers"]).get(b"authorization", b"")
        if auth:
            who.append(f"key:{hashlib.sha256(auth).hexdigest()[:32]}")
        wait = await run_in_threadpool(self.limiter.blocked, who, time.time())
        if wait:
            return await problem(429, "too many refused requests from this client: wait and fix them",
                                 type_="/problems/too-many-refused", headers={"Retry-After": str(wait)})(
                scope, receive, send)
        status: list[int] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] in REFUSALS:
            await run_in_threadpool(self.limiter.refused, who, time.time())


#: Bodies of the routes that take a small JSON document (a webhook's URL and events): read at most this much.
SMALL_BODY_BYTES = 16 << 10


class SmallBodies:
    """ASGI middleware: a POST to one of ``paths`` is answered 413 when its body is over ``limit`` bytes (by its
    Content-Length, or as it streams in), before FastAPI reads it whole to validate it."""

    def __init__(self, app: Any, paths: frozenset[str], limit: int = SMALL_BODY_BYTES) -> None:
        self.app, self.paths, self.limit = app, paths, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await problem(413, f"the body of {scope['path']} is at most {self.limit:,} bytes")(
                scope, receive, send)
        chunks, held, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            held += len(chunks[-1])
            more = message.get("more_body", False)
            if held > self.limit:
                return await problem(413, f"the body of {scope['path']} is at most {self.limit:,} bytes")(
                    scope, receive, send)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> dict[str, Any]:  # the body once, then what the client sends (its disconnect)
            return pending.pop() if pending else await receive()

        return await self.app(scope, replay, send)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit:
        raise HTTPException(413, f"body of {declared} bytes exceeds {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body exceeds {limit} bytes")
    return bytes(body)


def _receipts(agency: str, stored: list[Accepted]) -> dict[str, Any]:
    new = sum(not s.duplicate for s in stored)
    metrics.ACCEPTED.labels(agency).inc(new)
    metrics.DUPLICATES.labels(agency).inc(len(stored) - new)
    receipts = [
        {
            "id": s.id,
            "leaf_hash": record_leaf_hash(agency, s.id, s.content_sha256, s.salt).hex(),
            "status": "duplicate" if s.duplicate else "accepted",
            "proof_url": f"/v1/records/{quote(s.id, safe='')}",
        }
        for s in stored
    ]
    return {"agency": agency, "accepted": new, "duplicates": len(stored) - new, "receipts": receipts}


def _records_routes(rt: Runtime) -> APIRouter:
    router = APIRouter()
    principal = _principal_dependency(rt)
    cfg = rt.cfg

    @router.post("/v1/records", status_code=202, response_model=Submitted, responses=SUBMIT_RESPONSES,
                 openapi_extra=SUBMIT_BODY)
    async def submit(request: Request, who: Principal = Depends(principal)) -> Any:
        """Submit one record, a JSON array of records, or NDJSON (Content-Type: application/x-ndjson)."""
        if who.kind != "agency":
            raise HTTPException(403, "auditor keys cannot submit records")
        body = await _read_body(request, cfg.max_body_bytes)
        return await run_in_threadpool(_accept, rt, who.name, body, request.headers.get("content-type", ""))

    archive_reads = ThreadPoolExecutor(max_workers=ARCHIVE_READERS, thread_name_prefix="archive-read")

    @router.get("/v1/records/{record_id:path}", response_model=RecordStatus, responses=GET_RESPONSES)
    async def get_record(record_id: str, agency: str | None = None,
                         who: Principal = Depends(principal)) -> dict[str, Any]:
        """A record's status, and its proof once archived. An auditor granted several agencies names one
        (?agency=); an auditor of one agency, and an agency itself, need not."""
        agency = _readable_agency(who, agency)
        doc = await run_in_threadpool(_record_status, rt, agency, record_id)
        if doc["status"] == "archived":
            # The archive is read on a pool of its own, within a budget: a slow or hung S3 answers 503
            # here and never takes the threads that accept records.
            loop = asyncio.get_running_loop()
            try:
                proof = await asyncio.wait_for(loop.run_in_executor(
                    archive_reads, _read_archived, rt, doc.pop("location"), doc.pop("upgrade"), agency, record_id),
                    cfg.archive_read_timeout)
            except TimeoutError:
                return problem(503, "the archive is slow to answer, retry",  # type: ignore[return-value]
                               headers={"Retry-After": "5"})
            doc["proof"] = proof.model_dump(mode="json")
        doc.pop("location", None)
        doc.pop("upgrade", None)
        return doc

    return router



def _readable_agency(who: Principal, agency: str | None) -> str:
    """The agency a read is of: the one named, the auditor's only one, or the agency itself (HTTP 422 when it
    must be named or is malformed, 404 when this key may not read it: the same answer as a missing record)."""
    if agency is None and who.kind == "auditor" and len(who.agencies) != 1:
        raise HTTPException(422, f"name the agency with ?agency= (this key may read {', '.join(who.agencies)})")
    agency = agency or (who.agencies[0] if who.kind == "auditor" else who.name)
    try:
        check_agency(agency)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None
    if not who.can_read(agency):
        raise HTTPException(404, "no such record")
    return agency


def _accept(rt: Runtime, agency: str, body: bytes, content_type: str) -> JSONResponse | dict[str, Any]:
    """Store a request's records (all or none) and answer with their receipts, or the problem that refused them."""
    try:
        records = parse_body(body, content_type, rt.cfg.max_records_per_request)
        if rt.rate_limiter is not None:
            rt.rate_limiter.take(agency, len(records), time.time())
        return _receipts(agency, store_records(rt.state, agency, records))
    except RecordError as exc:
        problems = [{"index": p.position, "field": p.field, "message": p.message} for p in exc.problems[:100]]
        return problem(422, f"{len(exc.problems)} problem(s) in the request's records; nothing was stored",
                       type_="/problems/invalid-records", title="Invalid records", errors=len(exc.problems),
                       problems=problems)
    except ConflictRecord as exc:
        return problem(409, str(exc), type_="/problems/conflicting-record", title="Conflicting record",
                       id=exc.record_id)
    except RateLimited as exc:
        if exc.whole:  # this request alone is over the limit: waiting will not help, smaller ones will
            return problem(429, str(exc), type_="/problems/request-over-rate-limit",
                           title="Request over the rate limit", headers={"Retry-After": str(exc.retry_after)})
        return problem(429, f"{exc}; retry after {exc.retry_after} s", type_="/problems/rate-limited",
                       headers={"Retry-After": str(exc.retry_after)})


def _webhook_routes(rt: Runtime) -> APIRouter:
    """An agency registers the URLs its events go to (signed per Standard Webhooks: docs/webhooks.md)."""
    router = APIRouter()
    principal = _principal_dependency(rt)

    def agency_of(who: Principal) -> str:
        if who.kind != "agency":
            raise HTTPException(403, "auditor keys cannot register webhooks")
        return who.name

    @router.post("/v1/webhooks", status_code=201, response_model=WebhookOut, responses=WEBHOOK_RESPONSES)
    async def add_webhook(body: WebhookIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Register a URL for events; the answer holds its signing secret, shown this once."""
        agency = agency_of(who)
        why = check_url(body.url, rt.cfg.webhook_allow_private) or (None if body.events else "name an event")
        if why:
            raise HTTPException(422, why)
        secret = new_secret()
        hook = await run_in_threadpool(rt.state.add_webhook, agency, body.url, list(body.events), secret)
        return {"id": hook, "url": body.url, "events": sorted(set(body.events)), "secret": secret}

    @router.get("/v1/webhooks", response_model=list[WebhookOut], responses=AUTH)
    async def list_webhooks(who: Principal = Depends(principal)) -> list[dict[str, Any]]:
        """The agency's webhooks (without their secrets)."""
        hooks = await run_in_threadpool(rt.state.webhooks, agency_of(who))
        return [{"id": h.id, "url": h.url, "events": h.events} for h in hooks]

    @router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses={**AUTH, 404: GET_RESPONSES[404]})
    async def delete_webhook(webhook_id: int, who: Principal = Depends(principal)) -> Response:
        """Stop a webhook (its undelivered events go with it)."""
        if not await run_in_threadpool(rt.state.delete_webhook, agency_of(who), webhook_id):
            raise HTTPException(404, "no such webhook")
        return Response(status_code=204)

    return router


def _record_status(rt: Runtime, agency: str, record_id: str) -> dict[str, Any]:
    found = rt.state.record(agency, record_id)
    if found is None:
        raise HTTPException(404, "no such record")
    batch = rt.state.batch(found.batch_id) if found.batch_id else None
    stage = batch.state if batch else None
    status = {None: "pending", "claimed": "sealing"}.get(stage, stage)
    location = rt.state.proof_location(agency, record_id) if status == "archived" else None
    # Which anchors the record's newest proof carries, and which the operator seeks that are still to come.
    order = ("tlog", "witness", "tsa", "evm")
    have = (["tlog"] + [k for k in order[1:] if k in batch.ext_kinds]
            if batch and stage in ("anchored", "archived") else [])
    wanted = ["tlog", *sorted(rt.cfg.upgrade_kinds, key=order.index)]
    return {"agency": agency, "id": record_id, "status": status, "batch": found.batch_id, "location": location,
            "upgrade": batch.anchors_key if batch else None,
            "anchors": {"confirmed": have, "pending": [k for k in wanted if k not in have]}}


def _read_archived(rt: Runtime, location: tuple[str, int, int] | None, upgrade: str | None, agency: str,
                   record_id: str) -> Proof:
    """One ranged GET of the bundle PostgreSQL points at (and one of the anchors object of the batch's latest
    upgrade), or (batches imported from Redis) the index."""
    if location is not None:
        return read_proof(rt.archive, location, agency, record_id, upgrade)
    return fetch_proof(rt.archive, agency, record_id)


def _health_routes(rt: Runtime) -> APIRouter:
    router = APIRouter()
    # The API's own metrics only (workers serve theirs, each on its port): intake counters, the gauges read
    # from the shared state at scrape time, and this process's CPU and memory.
    registry = CollectorRegistry()
    for collector in (metrics.ACCEPTED, metrics.DUPLICATES, PROCESS_COLLECTOR, PLATFORM_COLLECTOR,
                      StateCollector(rt.state, lambda: rt.queues.lengths(QUEUES),
                                              rt.cfg.rounds)):
        registry.register(collector)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    readiness = Readiness(rt)

    @router.get("/readyz")
    async def readyz() -> Response:
        ok, checks = await readiness.check()
        status = checks.pop("status")
        return JSONResponse({"ready": ok, "status": status, "checks": checks, "time": time.time()},
                            status_code=200 if ok else 503)

    token = rt.cfg.metrics_token.get_secret_value().encode() if rt.cfg.metrics_token else None

    @router.get("/metrics", include_in_schema=False)
    def metrics_endpoint(authorization: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus metrics, for a scraper holding ANCHORPIPE_METRICS_TOKEN: they name agencies and volumes."""
        if token is None:
            raise HTTPException(404, "metrics are off on this listener (set ANCHORPIPE_METRICS_TOKEN)")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            raise HTTPException(401, "a metrics token is required", headers={"WWW-Authenticate": "Bearer"})
        data = generate_latest(registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return router


def __getattr__(name: str) -> Any:
    """``pipelines.api.app:app`` for uvicorn, built on first access from the environment."""
    if name == "app":
        global app
        try:
            app = create_app()
        except AnchorpipeError as exc:  # one line an operator can act on, not uvicorn's traceback
            print(f"anchorpipe web: cannot start: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_UNAVAILABLE if exc.transient else EXIT_CONFIG) from None
        return app
    raise AttributeError(name)

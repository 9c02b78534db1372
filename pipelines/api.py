"""The intake HTTP API (ASGI, FastAPI). Run: ``uvicorn pipelines.api:app`` (see the Procfile).

POST /v1/records answers 202 only once every record of the request is stored
in Redis (AOF); a rejected request stores nothing.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from pipelines import metrics
from pipelines.archive import fetch_proof
from pipelines.auth import Principal, authenticate
from pipelines.config import Settings, settings
from pipelines.core.commitment import check_agency, record_leaf_hash
from pipelines.errors import AnchorpipeError, InputError
from pipelines.intake import BodyError, parse_body, store_records
from pipelines.monitoring import init_sentry
from pipelines.stages import open_archive
from pipelines.state import ConflictRecord, State
from pipelines.tlog import CHECKPOINT


def create_app(cfg: Settings | None = None) -> FastAPI:
    cfg = cfg or settings()
    init_sentry(cfg)
    state = State.connect(cfg.redis_url)
    if not cfg.allow_volatile_redis:
        state.check_persistence()  # refuse to accept records that a restart would lose
    store = open_archive(cfg)
    log_store = open_archive(cfg, cfg.log_location)
    registry = CollectorRegistry()
    registry.register(metrics.StateCollector(state))
    app = FastAPI(title="anchorpipe intake", version="1")

    def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        found = authenticate(state, token.strip()) if scheme.lower() == "bearer" and token else None
        if found is None:
            raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return found

    @app.exception_handler(AnchorpipeError)
    async def _anchorpipe_error(_: Request, exc: AnchorpipeError) -> JSONResponse:
        if exc.transient:
            return JSONResponse({"detail": "storage unavailable, retry"}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.post("/v1/records", status_code=202)
    async def submit(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Submit one record, a JSON array of records, or NDJSON (Content-Type: application/x-ndjson)."""
        if who.kind != "agency":
            raise HTTPException(403, "auditor keys cannot submit records")
        declared = int(request.headers.get("content-length") or 0)
        if declared > cfg.max_body_bytes:
            raise HTTPException(413, f"body of {declared} bytes exceeds {cfg.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_body_bytes:
                raise HTTPException(413, f"body exceeds {cfg.max_body_bytes} bytes")
        try:
            records = parse_body(bytes(body), request.headers.get("content-type", ""), cfg.max_records_per_request)
        except BodyError as exc:
            detail = [{"index": p.index, "field": p.field, "message": p.message} for p in exc.problems[:100]]
            return JSONResponse({"detail": detail, "errors": len(exc.problems)}, status_code=422)
        try:
            stored = store_records(state, who.name, records)
        except ConflictRecord as exc:
            return JSONResponse({"detail": str(exc), "id": exc.record_id}, status_code=409)
        new = sum(not s.duplicate for s in stored)
        metrics.ACCEPTED.labels(who.name).inc(new)
        metrics.DUPLICATES.labels(who.name).inc(len(stored) - new)
        receipts = [
            {
                "id": s.id,
                "leaf_hash": record_leaf_hash(who.name, s.id, s.content_sha256, s.salt).hex(),
                "status": "duplicate" if s.duplicate else "accepted",
                "proof_url": f"/v1/records/{s.id}",
            }
            for s in stored
        ]
        return {"agency": who.name, "accepted": new, "duplicates": len(stored) - new, "receipts": receipts}

    @app.get("/v1/records/{record_id:path}")
    def get_record(record_id: str, agency: str | None = None, who: Principal = Depends(principal)) -> dict[str, Any]:
        """A record's status, and its proof once archived. Auditors name the agency (?agency=)."""
        agency = agency or who.name
        try:
            check_agency(agency)
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
        if not who.can_read(agency):
            raise HTTPException(404, "no such record")  # same answer as a missing one: reveal nothing
        found = state.record(agency, record_id)
        if found is None:
            raise HTTPException(404, "no such record")
        _, batch_id = found
        stage = state.batch(batch_id).get("state") if batch_id else None
        status = {None: "pending", "claimed": "sealing"}.get(stage, stage)
        doc: dict[str, Any] = {"agency": agency, "id": record_id, "status": status, "batch": batch_id}
        if status == "archived":
            doc["proof"] = fetch_proof(store, agency, record_id).model_dump(mode="json")
        return doc

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        checks: dict[str, Any] = {}
        try:
            state.r.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
            checks["redis"] = f"error: {type(exc).__name__}"
        try:
            checks["checkpoint"] = "present" if log_store.get(CHECKPOINT) else "absent"
            checks["archive"] = "ok"
        except AnchorpipeError as exc:
            checks["archive"] = f"error: {exc}"
        age = state.checkpoint_age()
        checks["checkpoint_age_seconds"] = age
        waiting = checks["redis"] == "ok" and bool(state.in_stage("sealed"))
        stale = waiting and (age is None or age > cfg.reconcile_after)
        checks["anchoring"] = "stalled" if stale else "ok"
        ok = checks["redis"] == "ok" and checks["archive"] == "ok" and not stale
        return JSONResponse({"ready": ok, "checks": checks, "time": time.time()}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        data = generate_latest(DEFAULT_REGISTRY) + generate_latest(registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return app


def __getattr__(name: str) -> Any:
    """``pipelines.api:app`` for uvicorn, built on first access from the environment."""
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)

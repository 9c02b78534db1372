"""A hung S3 must not take the API down: /readyz answers within a second naming the archive, reading a proof
answers 503 within its budget, and records are still accepted at full speed meanwhile."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from pipelines.config import Settings
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState
from tests.conftest import sql


class Blackhole:
    """A TCP server that accepts connections and never answers (an S3 endpoint that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.conns: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:  # the hung clients then fail fast instead of waiting out their timeouts
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def hung_s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    hole = Blackhole()
    yield hole.url
    hole.close()


def test_a_hung_archive_costs_intake_nothing(db, clean_redis, hung_s3):
    cfg = Settings(database_url=db, redis_url=clean_redis, archive="s3://bucket/a", s3_endpoint=hung_s3,
                   archive_read_timeout=1.0)
    state = PostgresState.connect(db)
    key = add_agency(state, "agency-a")
    state.accept("agency-a", [("old", b"\x01" * 32, b"\x02" * 32)])  # an archived record, to be read from S3
    sql(db, "INSERT INTO batches (id, agency, state, sealed_at, size, created_ms, updated_ms, bundle, offsets) "
            "VALUES ('b1', 'agency-a', 'archived', 't', 1, 1, 1, 'proofs/agency-a/b1.ndjson', '{0,100}')")
    sql(db, "UPDATE records SET batch_id = 'b1', leaf = 0 WHERE id = 'old'")
    app = create_app(cfg)
    headers = {"Authorization": f"Bearer {key}"}
    timings: dict[str, list[float]] = {"get": [], "post": []}
    statuses: dict[str, list[int]] = {"get": [], "post": []}

    async def scenario() -> dict:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=60) as client:
            async def timed(kind: str, call) -> None:
                t = time.perf_counter()
                resp = await call
                timings[kind].append(time.perf_counter() - t)
                statuses[kind].append(resp.status_code)

            gets = [timed("get", client.get("/v1/records/old", headers=headers)) for _ in range(60)]
            posts = [timed("post", client.post("/v1/records", headers={**headers, "Content-Type": "application/json"},
                                               content=json.dumps([{"id": f"n{k}-{i}", "content": i}
                                                                   for i in range(100)])))
                     for k in range(5)]
            await asyncio.gather(*gets, *posts)
            polls = []  # a load balancer's probe every half second while S3 stays hung
            for _ in range(16):
                t = time.perf_counter()
                ready = await client.get("/readyz")
                polls.append((time.perf_counter() - t, ready.status_code, ready.json()["checks"]))
                await asyncio.sleep(0.5)
            return {"ready": ready.json(), "status": ready.status_code, "seconds": max(p[0] for p in polls),
                    "polls": polls}

    result = asyncio.run(scenario())
    # Generous bounds, far below the 30 s and more a hung S3 costs a caller without the budgets.
    assert set(statuses["post"]) == {202} and max(timings["post"]) < 10, timings["post"]
    assert set(statuses["get"]) == {503} and max(timings["get"]) < 15  # the budget (1 s), queued 8 at a time
    assert result["status"] == 503 and result["seconds"] < 3, result["polls"]  # its budget 0.9 s, generously
    # Every answer blames the archive, never the database, however long the hang: one S3 probe at a time.
    assert all(status == 503 and checks["archive"].startswith("error") and checks["database"] == "ok"
               for _, status, checks in result["polls"]), result["polls"]
    assert result["ready"]["checks"]["archive"].startswith("error") and result["ready"]["checks"]["database"] == "ok"

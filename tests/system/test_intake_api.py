"""The intake API against a real PostgreSQL: acceptance, idempotency, isolation, rejections."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency, add_auditor
from pipelines.config import Settings
from pipelines.core.commitment import content_sha256, record_leaf_hash
from pipelines.errors import ConfigError
from pipelines.errors import PersistenceError
from pipelines.state.postgres import PostgresState as State
from tests.conftest import sql


METRICS_TOKEN = "scrape-" + "t" * 20


@pytest.fixture
def env(db, clean_redis, tmp_path):
    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), max_body_bytes=2_000_000,
                   max_records_per_request=20_000, metrics_token=METRICS_TOKEN)
    state = State.connect(db)
    keys = {"a": add_agency(state, "agency-a"), "b": add_agency(state, "agency-b")}
    keys["auditor"] = add_auditor(state, "audit-office", ["agency-a"])
    return TestClient(create_app(cfg)), keys, state


def post(client, key, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/records", content=data, headers={"Authorization": f"Bearer {key}",
                                                             "Content-Type": content_type})


def stored(state: State, agency: str) -> dict:
    """Each stored record of ``agency`` as ``digest:salt:accepted ms`` (hex), read from the database."""
    rows = sql(state.url, "SELECT id, content_sha256, salt, accepted_ms FROM records WHERE agency = %s", (agency,))
    return {rid: f"{bytes(d).hex()}:{bytes(s).hex()}:{ms}" for rid, d, s, ms in rows}


def test_one_record_array_and_ndjson_are_accepted(env):
    client, keys, state = env
    r1 = post(client, keys["a"], {"id": "one", "content": {"x": 1}})
    r2 = post(client, keys["a"], [{"id": "two", "content": [1, 2]}, {"id": "three", "sha256": "ab" * 32}])
    r3 = post(client, keys["a"], '{"id": "four", "content": "x"}\n\n{"id": "five", "content": null}\n',
              "application/x-ndjson")
    assert [r.status_code for r in (r1, r2, r3)] == [202, 202, 202]
    assert r3.json()["accepted"] == 2 and r3.json()["receipts"][1]["proof_url"] == "/v1/records/five"
    assert sorted(stored(state, "agency-a")) == ["five", "four", "one", "three", "two"]
    assert state.pending_depth() == 5
    value = stored(state, "agency-a")["one"]
    digest, salt, _ = value.split(":")
    assert digest == content_sha256({"x": 1}).hex()
    leaf = record_leaf_hash("agency-a", "one", bytes.fromhex(digest), bytes.fromhex(salt)).hex()
    assert r1.json()["receipts"][0]["leaf_hash"] == leaf


def test_ten_thousand_records_in_one_request(env):
    client, keys, state = env
    body = "\n".join(json.dumps({"id": f"r{i}", "sha256": f"{i:064x}"}) for i in range(10_000))
    resp = post(client, keys["a"], body, "application/x-ndjson")
    assert resp.status_code == 202 and resp.json()["accepted"] == 10_000
    assert len(stored(state, "agency-a")) == 10_000 and state.pending_depth() == 10_000


def test_same_record_again_returns_the_same_receipt(env):
    client, keys, state = env
    first = post(client, keys["a"], {"id": "r", "content": {"v": 1}}).json()["receipts"][0]
    again = post(client, keys["a"], [{"id": "r", "content": {"v": 1}}, {"id": "s", "content": 2}]).json()
    assert again["receipts"][0]["leaf_hash"] == first["leaf_hash"]
    assert again["receipts"][0]["status"] == "duplicate" and again["duplicates"] == 1
    assert state.pending_depth() == 2  # r once, s once


def test_conflicting_content_is_409_and_stores_nothing_of_the_request(env):
    client, keys, state = env
    post(client, keys["a"], {"id": "r", "content": {"v": 1}})
    before = stored(state, "agency-a")
    resp = post(client, keys["a"], [{"id": "new", "content": 1}, {"id": "r", "content": {"v": 2}}])
    assert resp.status_code == 409 and resp.json()["id"] == "r"
    assert stored(state, "agency-a") == before and state.pending_depth() == 1


def test_malformed_records_are_422_with_index_and_field(env):
    client, keys, state = env
    resp = post(client, keys["a"], [{"id": "ok", "content": 1}, {"id": 7, "content": 1}, {"id": "x"},
                                    {"id": "y", "sha256": "nothex"}, {"id": "ok", "content": 2}])
    assert resp.status_code == 422
    got = {(d["index"], d["field"]) for d in resp.json()["problems"]}
    assert got == {(1, "id"), (2, "content"), (3, "sha256"), (4, "id")}
    assert stored(state, "agency-a") == {} and state.pending_depth() == 0
    assert post(client, keys["a"], b"{nope").status_code == 422
    assert post(client, keys["a"], b"[]").status_code == 422


def test_oversized_bodies_are_413(env):
    client, keys, state = env
    body = "\n".join(json.dumps({"id": f"r{i}", "content": "x" * 100}) for i in range(20_000))
    assert post(client, keys["a"], body, "application/x-ndjson").status_code == 413
    assert state.pending_depth() == 0


def test_keys_agencies_and_auditors(env):
    client, keys, state = env
    post(client, keys["a"], {"id": "secret", "content": {"ssn": "123"}})
    assert client.post("/v1/records", json={"id": "x", "content": 1}).status_code == 401
    assert post(client, "ap_not-a-key-at-all-xxxxxxxxxxxxxxxx", {"id": "x", "content": 1}).status_code == 401
    # Agency B can neither read A's record nor reach it by naming A.
    hb = {"Authorization": f"Bearer {keys['b']}"}
    assert client.get("/v1/records/secret", headers=hb).status_code == 404
    assert client.get("/v1/records/secret", params={"agency": "agency-a"}, headers=hb).status_code == 404
    # B submitting the same id writes only into B's namespace; A's record is untouched.
    a_before = stored(state, "agency-a")
    assert post(client, keys["b"], {"id": "secret", "content": {"ssn": "999"}}).status_code == 202
    assert stored(state, "agency-a") == a_before
    # The auditor reads A (granted), not B, and cannot submit.
    hx = {"Authorization": f"Bearer {keys['auditor']}"}
    resp = client.get("/v1/records/secret", params={"agency": "agency-a"}, headers=hx)
    assert resp.status_code == 200 and resp.json()["status"] == "pending"
    assert client.get("/v1/records/secret", headers=hx).json()["agency"] == "agency-a"  # its only agency
    wide = add_auditor(state, "court", ["agency-a", "agency-b"])
    resp = client.get("/v1/records/secret", headers={"Authorization": f"Bearer {wide}"})
    assert resp.status_code == 422 and "?agency=" in resp.json()["detail"]
    assert client.get("/v1/records/secret", params={"agency": "agency-b"}, headers=hx).status_code == 404
    assert post(client, keys["auditor"], {"id": "z", "content": 1}).status_code == 403
    # Keys are stored only as hashes.
    dump = json.dumps(sql(state.url, "SELECT digest, principal::text FROM api_keys"))
    assert all(k not in dump for k in keys.values())


def test_health_readiness_and_metrics(env):
    client, keys, state = env
    post(client, keys["a"], [{"id": f"m{i}", "content": i} for i in range(3)])
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    assert client.get("/metrics").status_code == 401  # agency names and volumes are not for everyone
    assert client.get("/metrics", headers={"Authorization": f"Bearer {keys['a']}"}).status_code == 401
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'anchorpipe_records_accepted_total{agency="agency-a"}' in text
    assert "anchorpipe_pending_records 3.0" in text
    assert 'anchorpipe_oldest_pending_seconds{agency="agency-a"}' in text
    assert "anchorpipe_records_sealed" not in text and "process_cpu_seconds_total" in text  # its own only


def test_a_database_that_could_lose_commits_is_refused(db, clean_redis, tmp_path):
    sql(db, f"ALTER DATABASE {db.rsplit('/', 1)[1]} SET synchronous_commit = off")
    with pytest.raises(PersistenceError, match="synchronous_commit=off"):
        create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "a")))
    create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "a"), allow_volatile_state=True))


def test_a_database_at_another_schema_is_refused_with_the_command_that_fixes_it(db, clean_redis, tmp_path):
    sql(db, "UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(ConfigError, match="revision 0000.*anchorpipe db upgrade"):
        create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "a")))


def test_settings_errors_name_the_variable(monkeypatch):
    from pipelines.config import load_settings

    monkeypatch.delenv("ANCHORPIPE_REDIS_URL", raising=False)
    monkeypatch.setenv("ANCHORPIPE_DATABASE_URL", "mysql://db/x")
    monkeypatch.setenv("ANCHORPIPE_ARCHIVE", "/tmp/x")
    monkeypatch.setenv("ANCHORPIPE_BATCH_MAX", "zero")
    with pytest.raises(ConfigError) as err:
        load_settings()
    for name in ("ANCHORPIPE_REDIS_URL", "ANCHORPIPE_BATCH_MAX", "ANCHORPIPE_DATABASE_URL: Value error, want a postgresql"):
        assert name in str(err.value)
    assert "mysql://db/x" not in str(err.value)  # a URL may hold a password


def test_readiness_names_stuck_work_degraded_and_unready_past_its_budget(env, clean_redis, tmp_path):
    """A dead sequencer leaves batches waiting: reported with their age, the answer degraded while intake stays
    ready; with ANCHORPIPE_UNREADY_AFTER set, not ready once a stage waits longer."""
    client, keys, state = env
    assert client.get("/readyz").json()["checks"]["stuck"] == {} and client.get("/readyz").json()["status"] == "ok"
    sql(state.url, "INSERT INTO batches (id, agency, state, sealed_at, size, created_ms, updated_ms) "
        "VALUES ('waiting-batch', 'agency-a', 'sealed', '2026-01-01T00:00:00Z', 1, 1, 1)")
    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.json()["checks"]["stuck"]["sealed"] > 1e9
    assert resp.json()["status"] == "degraded" and resp.json()["ready"] is True
    strict = TestClient(create_app(Settings(database_url=state.url, redis_url=clean_redis,
                                            archive=str(tmp_path / "archive"), unready_after=60)))
    resp = strict.get("/readyz")
    assert resp.status_code == 503 and resp.json()["status"] == "not ready"
    assert resp.json()["checks"]["database"] == "ok" and resp.json()["checks"]["stuck"]["sealed"] > 60
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'anchorpipe_oldest_batch_seconds{stage="sealed"} 1.7' in metrics  # seconds since 1970, about


def test_readiness_reports_a_database_that_went_away_instead_of_failing(clean_redis, tmp_path):
    from pipelines.demo.services import postgres_server
    from pipelines.state.schema import upgrade

    with postgres_server(tmp_path) as url:
        upgrade(url)
        client = TestClient(create_app(Settings(database_url=url, redis_url=clean_redis, archive=str(tmp_path / "a"))))
        assert client.get("/readyz").status_code == 200
    resp = client.get("/readyz")  # the server is gone: every state call fails
    assert resp.status_code == 503
    assert resp.json()["ready"] is False and resp.json()["checks"]["database"].startswith("error")


def test_a_read_only_database_is_an_outage_503_with_retry_after_and_not_ready(env, clean_redis, tmp_path):
    """What a standby gives after a failover: writes refused. Intake answers 503 with Retry-After (the client
    retries), readiness fails on the database, and nothing was stored."""
    client, keys, state = env
    assert post(client, keys["a"], [{"id": "before", "content": 1}]).status_code == 202
    name = state.url.rsplit("/", 1)[1]
    sql(state.url, f"ALTER DATABASE {name} SET default_transaction_read_only = on")  # new sessions only
    try:  # an API process started now (its connections all new) meets a read-only server
        standby = TestClient(create_app(Settings(database_url=state.url, redis_url=clean_redis,
                                                 archive=str(tmp_path / "archive"))))
        refused = [post(standby, keys["a"], [{"id": "during", "content": 2}]) for _ in range(3)]
        assert all(r.status_code == 503 and r.headers["Retry-After"] for r in refused), [r.text for r in refused]
        assert refused[-1].headers["Content-Type"].startswith("application/problem+json")
        ready = standby.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "error: StateError"
    finally:
        writable = state.url + ("&" if "?" in state.url else "?") + "options=-c%20default_transaction_read_only%3Doff"
        sql(writable, f"ALTER DATABASE {name} SET default_transaction_read_only = off")
    assert sorted(stored(state, "agency-a")) == ["before"]
    assert post(client, keys["a"], [{"id": "after", "content": 3}]).status_code == 202


def test_health_answers_while_a_large_submission_is_parsed(db, clean_redis, tmp_path):
    """Parsing and canonicalising a big body runs off the event loop: /healthz is not stalled by it."""
    import asyncio

    import httpx

    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), max_records_per_request=50_000)
    key = add_agency(State.connect(db), "agency-a")
    app = create_app(cfg)
    body = "\n".join(json.dumps({"id": f"r{i}", "content": {"n": i, "s": "x" * 50}}) for i in range(40_000))
    state = State.connect(db)
    stored_when_healthy: list[int] = []

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as client:
            async def submit() -> None:
                resp = await client.post("/v1/records", content=body, headers={
                    "Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"})
                assert resp.status_code == 202

            async def health() -> None:
                await asyncio.sleep(0.05)  # the submission is being parsed by now
                assert (await client.get("/healthz")).status_code == 200
                stored_when_healthy.append(len(stored(state, "agency-a")))

            await asyncio.gather(submit(), health())

    asyncio.run(scenario())
    # On a blocked event loop /healthz could answer only after the whole request was parsed and stored.
    assert stored_when_healthy[0] < 40_000
    assert len(stored(state, "agency-a")) == 40_000


def test_without_a_metrics_token_the_api_serves_no_metrics(db, clean_redis, tmp_path):
    client = TestClient(create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path))))
    resp = client.get("/metrics")
    assert resp.status_code == 404 and "ANCHORPIPE_METRICS_TOKEN" in resp.json()["detail"]
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]




def test_a_client_refused_too_often_is_answered_429_unread(db, clean_redis, tmp_path):
    """Refusals (401, 422...) count per client address and per key presented: past ANCHORPIPE_FAILURE_LIMIT in
    ten seconds, every request of that client is answered 429 with Retry-After, its body never read."""
    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), failure_limit=5)
    state = State.connect(db)
    key = add_agency(state, "agency-a")
    client = TestClient(create_app(cfg))
    answers = [post(client, "ap_" + "x" * 43, {"id": "a", "content": 1}).status_code for _ in range(8)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}, answers
    blocked = post(client, key, b"[" * (8 << 20))  # even with a good key: the address is blocked, the body unread
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["Retry-After"]) <= 10
    assert blocked.headers["content-type"] == "application/problem+json"
    assert client.get("/healthz").status_code == 200  # health is never limited
    assert sql(state.url, "SELECT count(*) FROM records") == [(0,)]

"""Upgrading from the version that kept its state in Redis: `anchorpipe db import-redis` copies it all."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
import redis

from pipelines.config import Settings
from pipelines.core.commitment import content_sha256
from pipelines.errors import InputError
from pipelines.stages.batches import Pipeline
from pipelines.state.postgres import PostgresState
from pipelines.state.redis_import import import_redis
from pipelines.ledger.tlog import TransparencyLog
from tests.conftest import sql
from tests.support.faults import FaultyStore
from tests.unit.ledger.test_tlog import SIGNER

SEP = "\x1f"


def old_state(r: redis.Redis) -> dict[str, str]:
    """Write state as the earlier version did: an archived batch of 3, one claimed batch of 2, 2 pending."""
    values = {}
    for i in range(7):
        rid = f"r{i}"
        values[rid] = f"{content_sha256(rid).hex()}:{secrets.token_hex(32)}:{1_700_000_000_000 + i}"
        r.hset("ap:rec:dept-a", rid, values[rid])
    for batch, state, ids in (("20260101T000000Z-aaaaaaaa", "archived", ["r0", "r1", "r2"]),
                              ("20260101T000001Z-bbbbbbbb", "claimed", ["r3", "r4"])):
        r.hset(f"ap:batch:{batch}", mapping={"state": state, "sealed_at": "2026-01-01T00:00:00Z",
                                             "size": len(ids), "created": 1, "updated": 2})
        for rid in ids:
            r.rpush(f"ap:batch:{batch}:members", f"dept-a{SEP}{rid}{SEP}{values[rid]}")
            r.hset("ap:recbatch:dept-a", rid, batch)
    for rid in ("r5", "r6"):
        r.rpush("ap:pending:dept-a", f"{values[rid].rsplit(':', 1)[1]}{SEP}{rid}")
    r.sadd("ap:agencies", "dept-a")
    r.hset("ap:keys", "ab" * 32, json.dumps({"kind": "agency", "name": "dept-a", "agencies": ["dept-a"],
                                             "created": 1, "expires": None}))
    r.hset("ap:src:permits", mapping={"cursor": "c-41", "failures": 0, "next_at": 0, "last_error": ""})
    r.hset("ap:src:permits:finished", "a.jsonl", 5)
    r.hset("ap:src:permits:quarantine", "a.jsonl:3", json.dumps({"reason": "bad", "item": "x"}))
    r.rpush("ap:deadletter", json.dumps({"task": "archive", "args": [["b"]], "error": "e", "at": 9}))
    r.set("ap:archived_records", 3)
    return values


def test_everything_is_copied_and_the_pipeline_goes_on(db, clean_redis):
    r = redis.Redis.from_url(clean_redis, decode_responses=True)
    values = old_state(r)
    state = PostgresState.connect(db)
    done = import_redis(clean_redis, state)
    assert (done.records, done.pending, done.batches, done.keys, done.sources) == (7, 2, 2, 1, 1)
    assert state.record("dept-a", "r1").batch_id == "20260101T000000Z-aaaaaaaa"
    assert state.record("dept-a", "r4").salt.hex() == values["r4"].split(":")[1]
    assert state.pending_agencies() == ["dept-a"] and state.pending_depth() == 2
    assert state.get_key("ab" * 32)["name"] == "dept-a" and state.agencies() == {"dept-a"}
    assert state.source_cursor("permits") == "c-41" and state.source_unit_finished("permits", "a.jsonl")
    assert state.quarantine_size("permits") == 1 and state.dead_letters()[0]["task"] == "archive"
    assert state.archived_records() == 3
    # A record submitted again is a duplicate with its first salt: never a second proof.
    again = state.accept("dept-a", [("r0", content_sha256("r0"), secrets.token_bytes(32))])[0]
    assert again.duplicate and again.salt.hex() == values["r0"].split(":")[1]
    # The claimed batch and the pending records go on to be archived.
    cfg = Settings(database_url=db, redis_url=clean_redis, archive="memory", batch_interval=0.001)
    p = Pipeline(cfg, state, FaultyStore(), TransparencyLog.create(FaultyStore(), [SIGNER]))
    p.seal("20260101T000001Z-bbbbbbbb")
    sealed = ["20260101T000001Z-bbbbbbbb", *p.seal_ripe()]
    assert sorted(p.archive(p.anchor(sealed))) == sorted(sealed)
    assert state.archived_records() == 7


def test_a_database_that_holds_records_is_refused_and_left_alone(db, clean_redis):
    old_state(redis.Redis.from_url(clean_redis, decode_responses=True))
    state = PostgresState.connect(db)
    state.accept("dept-b", [("x", content_sha256("x"), secrets.token_bytes(32))])
    with pytest.raises(InputError, match="empty"):
        import_redis(clean_redis, state)
    assert sql(db, "SELECT count(*) FROM records") == [(1,)]


def test_the_command_reports_what_it_copied(db, clean_redis):
    old_state(redis.Redis.from_url(clean_redis, decode_responses=True))
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_REDIS_URL": clean_redis,
           "ANCHORPIPE_ARCHIVE": "/tmp/unused"}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "db", "import-redis", clean_redis], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("imported 7 records (2 pending), 2 batches, 1 agencies, 1 keys")


def test_the_api_finds_proofs_of_imported_batches_through_the_archive(db, clean_redis, tmp_path):
    from fastapi.testclient import TestClient

    from pipelines.archive import bundle
    from pipelines.api.app import create_app
    from pipelines.intake.auth import add_auditor
    from pipelines.storage import open_store
    from tests.unit.archive.test_layout import legacy_directory

    old_state(redis.Redis.from_url(clean_redis, decode_responses=True))
    state = PostgresState.connect(db)
    import_redis(clean_redis, state)
    archived = state.load_batch("20260101T000000Z-aaaaaaaa")  # as the earlier version archived it:
    store = open_store(str(tmp_path / "archive"))
    data, locations = bundle.build_bundle(archived, [])
    store.put_immutable(bundle.bundle_key("dept-a", archived.id), data)
    legacy_directory(store, [("dept-a", c.record_id, loc) for c, loc in zip(archived.commitments, locations, strict=True)])
    key = add_auditor(state, "audit-office", ["dept-a"])
    client = TestClient(create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"))))
    resp = client.get("/v1/records/r1", params={"agency": "dept-a"}, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200 and resp.json()["status"] == "archived"
    assert resp.json()["proof"]["record"]["id"] == "r1"

"""Sentry receives errors, and never keys, tokens or record content."""

from __future__ import annotations

import json
import time


import pytest
import sentry_sdk

from pipelines.config import Settings
from pipelines.demo.localstack import local_stack
from pipelines.ops.monitoring import init_sentry
from tests.conftest import sql
from tests.support.sentry_fake import FakeSentry

pytestmark = pytest.mark.system  # every test here runs the fake Sentry's HTTP server

API_KEY = "ap_" + "k" * 43
RECORD = json.dumps({"ssn": "-".join(["078", "05", "1120"])})  # built, so source context cannot show it


def _leaky(token: str, content: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}  # noqa: F841 - a local Sentry must not send
    raise RuntimeError(f"upload failed for key {token}")


def test_events_are_scrubbed(tmp_path):
    with FakeSentry() as fake:
        assert init_sentry(Settings(database_url="postgresql://x/y", redis_url="redis://x", archive=str(tmp_path), SENTRY_DSN=fake.dsn))
        try:
            _leaky(API_KEY, RECORD)
        except RuntimeError:
            sentry_sdk.capture_exception()
        sentry_sdk.flush()
        sentry_sdk.get_client().close()
    (event,) = fake.events()
    assert event["exception"]["values"][0]["type"] == "RuntimeError"
    raw = b"".join(fake.raw)
    assert API_KEY.encode() not in raw and b"078-05-1120" not in raw
    assert b"[redacted]" in raw


def test_a_failing_task_in_a_worker_child_reaches_sentry_scrubbed(tmp_path):
    with FakeSentry() as fake, local_stack(tmp_path, beat=False, workers={}) as stack:
        stack.env["SENTRY_DSN"] = fake.dsn
        stack.start_worker("sequencer", "anchor", 1)
        sql(stack.database_url, "INSERT INTO batches (id, agency, state, sealed_at, size, created_ms, updated_ms, "
            "root) VALUES ('bad-batch', 'a', 'sealed', '2026-11-28T12:00:00Z', 1, 1, 1, 'not-hex')")
        from celery import Celery

        client = Celery(broker=stack.redis_url)
        client.send_task("anchorpipe.anchor", args=[["bad-batch"]], queue="anchor")
        deadline = time.monotonic() + 60
        while not fake.events() and time.monotonic() < deadline:
            time.sleep(0.2)
    events = fake.events()
    assert events, "no event reached the fake Sentry"
    assert any(v["type"] == "ValueError" for e in events for v in e["exception"]["values"])
    raw = b"".join(fake.raw)
    assert stack.signer.text().encode() not in raw and b"PRIVATE+KEY" not in raw
    assert json.dumps(events)  # parsed as JSON


S3_SECRET = "s3-secret-" + "q" * 30
WEBHOOK_SECRET = "whsec_" + "w" * 32


def _secrets_absent(raw: bytes, *more: str) -> None:
    for secret in (API_KEY, "078-05-1120", S3_SECRET, WEBHOOK_SECRET, *more):
        assert secret.encode() not in raw, f"{secret[:12]}… reached Sentry"


def test_an_api_failure_reaches_sentry_without_the_key_the_body_or_the_salt(db, clean_redis, tmp_path, monkeypatch):
    """A request that fails inside the API (its table gone) is reported, with no header, body or query."""
    from fastapi.testclient import TestClient

    from pipelines.api.app import create_app
    from pipelines.intake.auth import add_agency
    from pipelines.state.postgres import PostgresState

    import base64
    import secrets

    drawn: list[bytes] = []
    real = secrets.token_bytes

    def recorded(n: int) -> bytes:  # the real salts, kept to look for them in what Sentry got
        drawn.append(real(n))
        return drawn[-1]

    monkeypatch.setattr("pipelines.intake.submit.secrets.token_bytes", recorded)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    key = add_agency(PostgresState.connect(db), "agency-a")
    with FakeSentry() as fake:
        cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), SENTRY_DSN=fake.dsn)
        client = TestClient(create_app(cfg), raise_server_exceptions=False)
        sql(db, "DROP TABLE records CASCADE")  # the next submission fails inside the state adapter
        body = json.dumps([{"id": "rec-1", "content": json.loads(RECORD)}])
        res = client.post(f"/v1/records?api_key={key}&secret={WEBHOOK_SECRET}", content=body,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                   "Cookie": f"session={key}"})
        assert res.status_code >= 500
        sentry_sdk.flush()
        sentry_sdk.get_client().close()
    assert fake.events(), "the failure did not reach Sentry"
    assert drawn, "no salt was drawn: the failure came too early to show anything"
    raw = b"".join(fake.raw)
    _secrets_absent(raw, key, *(s.hex() for s in drawn), *(base64.b64encode(s).decode() for s in drawn))


def test_the_monitor_alerts_sentry_scrubbed(tmp_path):
    """`anchorpipe monitor` raises its alerts to Sentry; a token in the webhook URL and the S3 secret stay out."""
    import os
    import subprocess
    import sys

    from pipelines.core.logentry import batch_entry
    from pipelines.core.note import Signer
    from pipelines.ledger.tlog import TransparencyLog
    from pipelines.storage.local import LocalStore

    signer = Signer.generate("sentry.example/log")
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [signer])
    log.append([("b-0", batch_entry("b-0", b"\x01" * 32, 1, "2026-11-30T00:00:00Z"))])
    (tmp_path / "log.vkey").write_text(signer.verifier().text() + "\n")
    with FakeSentry() as fake:
        env = {**os.environ, "SENTRY_DSN": fake.dsn, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        args = [sys.executable, "-m", "pipelines.cli", "monitor", str(tmp_path / "log"), "--log-vkey",
                str(tmp_path / "log.vkey"), "--state", str(tmp_path / "state"), "--once", "--stall", "0.2",
                "--webhook", f"http://127.0.0.1:9/alerts?token={WEBHOOK_SECRET}"]
        assert subprocess.run(args, env=env, capture_output=True, timeout=60).returncode == 0
        time.sleep(0.4)
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and "ALERT stall" in res.stderr, res.stderr
        deadline = time.monotonic() + 10
        while not fake.events() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert any("stall" in (e.get("message") or e.get("logentry", {}).get("message", "")) for e in fake.events())
    _secrets_absent(b"".join(fake.raw), signer.text())


def test_an_audit_sends_nothing_to_sentry(tmp_path):
    """`anchorpipe audit` reports to its reader, not to the operator's Sentry: a failing audit sends no event."""
    from click.testing import CliRunner

    from pipelines.cli import main

    with FakeSentry() as fake:
        res = CliRunner(env={"SENTRY_DSN": fake.dsn}).invoke(main, ["audit", str(tmp_path / "missing"),
                                                                     "--log-vkey", "x+0+AA=="])
        assert res.exit_code != 0
        time.sleep(0.3)
    assert fake.raw == []

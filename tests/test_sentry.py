"""Sentry receives errors, and never keys, tokens or record content."""

from __future__ import annotations

import json
import time


import sentry_sdk

from pipelines.config import Settings
from pipelines.demo.localstack import local_stack
from pipelines.ops.monitoring import init_sentry
from tests.conftest import sql
from tests.sentry_fake import FakeSentry

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

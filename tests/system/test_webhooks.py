"""Webhooks: events written with the change they report, delivered batched and signed per Standard Webhooks
to a receiver the tests run (verified with the standardwebhooks library), retried while it is down, dead-lettered
and replayed; registration through the API."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from pipelines.config import Settings
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency, add_auditor
from pipelines.ledger.tlog import TransparencyLog
from pipelines.stages.batches import Pipeline
from pipelines.state import now_ms
from pipelines.state.postgres import PostgresState as State
from pipelines.stages.webhooks import Deliveries, new_secret
from tests.support.faults import FaultyStore
from tests.system.test_stages import accept, run_all
from tests.unit.ledger.test_tlog import SIGNER


class Receiver:
    """An HTTP receiver: answers ``status`` (200, or 503 while "down"), and keeps what it got."""

    def __init__(self) -> None:
        self.status, self.got = 200, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.status == 200:
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/anchorpipe"

    def events(self, secret: str) -> list[dict]:
        """Every event received, each delivery's signature verified first."""
        out = []
        for headers, body in self.got:
            doc = Webhook(secret).verify(body, headers)
            out += doc["data"]["events"]
        return out


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def make_pipe(db, redis) -> Pipeline:
    cfg = Settings(database_url=db, redis_url=redis, archive="memory", batch_max=1000, batch_interval=0.001)
    log_store = FaultyStore()
    return Pipeline(cfg, State.connect(db), FaultyStore(), TransparencyLog.create(log_store, [SIGNER]),
                    log_store=log_store)


def test_archived_batches_reach_the_receiver_signed_and_batched(db, clean_redis, receiver, json_lines):
    pipe = make_pipe(db, clean_redis)
    secret = new_secret()
    pipe.state.add_webhook("agency-a", receiver.url + "/hook?token=receiver-own-secret",
                           ["records.archived", "anchors.confirmed"], secret)
    accept(pipe, "agency-a", 1500)
    accept(pipe, "agency-b", 10)  # another agency's batches: not this webhook's business
    archived = run_all(pipe)
    deliveries = Deliveries(pipe.state, allow_private=True)
    json_lines.start()
    assert deliveries.deliver_due() == 2 and len(receiver.got) == 1  # two batches' events, one POST
    (line,) = [x for x in json_lines() if x.get("event") == "webhook_delivered"]  # one INFO line per delivery
    assert (line["agency"], line["events"], line["status"], line["level"]) == ("agency-a", 2, "delivered", "INFO")
    assert line["seconds"] >= 0 and "receiver-own-secret" not in json.dumps(line) and secret not in json.dumps(line)
    events = receiver.events(secret)
    assert {e["type"] for e in events} == {"records.archived"}
    assert sorted(e["data"]["batch"] for e in events) == sorted(b for b in archived
                                                                 if pipe.state.batch(b).agency == "agency-a")
    ids = [i for e in events for i in e["data"]["ids"]]
    assert sorted(ids) == sorted(f"rec-{i}" for i in range(1500))
    assert deliveries.deliver_due() == 0  # delivered once
    with pytest.raises(WebhookVerificationError):  # a tampered body fails the receiver's check
        Webhook(secret).verify(receiver.got[0][1].replace(b"rec-1", b"rec-X"), receiver.got[0][0])
    # An upgrade's commit point emits anchors.confirmed in the same transaction.
    batch = events[0]["data"]["batch"]
    assert pipe.state.mark_upgraded(batch, 7, ["tsa"], False, f"proofs/agency-a/{batch}.u7.json")
    assert deliveries.deliver_due() == 1
    confirmed = receiver.events(secret)[-1]
    assert confirmed["type"] == "anchors.confirmed" and confirmed["data"]["anchors"] == ["tlog", "tsa"]


def test_a_receiver_down_for_a_while_gets_everything_later_and_dead_letters_replay(db, clean_redis, receiver):
    pipe = make_pipe(db, clean_redis)
    secret = new_secret()
    pipe.state.add_webhook("agency-a", receiver.url, ["records.archived", "records.quarantined"], secret)
    receiver.status = 503
    accept(pipe, "agency-a", 30)
    run_all(pipe)
    pipe.state.quarantine("feed", "page-1#3", {"reason": "bad id"}, agency="agency-a")
    pipe.state.quarantine("feed", "page-1#3", {"reason": "bad id"}, agency="agency-a")  # the same item: once
    deliveries = Deliveries(pipe.state, attempts=3, allow_private=True)
    now = now_ms()
    assert deliveries.deliver_due(now) == 0
    assert deliveries.deliver_due(now) == 0  # backing off: nothing is due yet
    receiver.status = 200  # back before the attempts ran out
    assert deliveries.deliver_due(now + 3_600_000) == 2
    assert sorted(e["type"] for e in receiver.events(secret)) == ["records.archived", "records.quarantined"]
    # Down for longer than every attempt: the events go to the dead letters; a replay delivers them.
    receiver.status = 503
    accept(pipe, "agency-a", 5, start=100)
    run_all(pipe)
    for k in range(1, 4):
        deliveries.deliver_due(now + k * 7_200_000)
    dead = pipe.state.webhook_events("dead", "agency-a")
    assert len(dead) == 1 and dead[0]["attempts"] == 3 and "503" in dead[0]["error"]
    receiver.status = 200
    assert deliveries.deliver_due(now + 99 * 3_600_000) == 0  # dead letters wait for people
    assert pipe.state.replay_webhooks("agency-a") == 1
    assert deliveries.deliver_due(now + 99 * 3_600_000) == 1
    assert [i for e in receiver.events(secret) if e["type"] == "records.archived" for i in e["data"]["ids"]][-5:] == \
        [f"rec-{i}" for i in range(100, 105)]
    assert pipe.state.webhook_events("dead") == []


def test_agencies_register_their_webhooks_through_the_api(db, clean_redis, tmp_path, receiver):
    state = State.connect(db)
    agency, other = add_agency(state, "agency-a"), add_agency(state, "agency-b")
    auditor = add_auditor(state, "audit-office", ["agency-a"])
    settings = {"database_url": db, "redis_url": clean_redis, "archive": str(tmp_path)}
    strict = TestClient(create_app(Settings(**settings)))
    for url in (receiver.url, "http://localhost:8080/x", "http://10.0.0.7/x", "http://[::1]/x",
                "http://169.254.169.254/latest/meta-data"):  # the operator's own network: refused by default
        refused = strict.post("/v1/webhooks", json={"url": url, "events": ["records.archived"]},
                              headers={"Authorization": f"Bearer {agency}"})
        detail = refused.json()["detail"]
        assert refused.status_code == 422 and ("address" in detail or "host" in detail), url
    client = TestClient(create_app(Settings(**settings, webhook_allow_private=True)))

    def call(method: str, key: str, path: str = "/v1/webhooks", **kw):
        return client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kw)

    made = call("POST", agency, json={"url": receiver.url, "events": ["records.archived"]})
    assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
    listed = call("GET", agency).json()
    assert listed == [{"id": made.json()["id"], "url": receiver.url, "events": ["records.archived"], "secret": None}]
    assert call("GET", other).json() == []  # agencies see only their own
    assert call("POST", auditor, json={"url": receiver.url, "events": ["records.archived"]}).status_code == 403
    bad = call("POST", agency, json={"url": "ftp://x", "events": ["records.archived"]})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert call("POST", agency, json={"url": receiver.url, "events": ["nonsense"]}).status_code == 422
    assert call("DELETE", other, f"/v1/webhooks/{made.json()['id']}").status_code == 404
    assert call("DELETE", agency, f"/v1/webhooks/{made.json()['id']}").status_code == 204
    assert call("GET", agency).json() == []
    assert json.dumps(listed).count("whsec_") == 0


def test_the_operator_lists_and_replays_dead_letters_with_the_cli(db, clean_redis, receiver):
    import os
    import subprocess
    import sys

    pipe = make_pipe(db, clean_redis)
    pipe.state.add_webhook("agency-a", receiver.url, ["records.archived"], new_secret())
    receiver.status = 503
    accept(pipe, "agency-a", 3)
    run_all(pipe)
    deliveries = Deliveries(pipe.state, attempts=1, allow_private=True)
    deliveries.deliver_due()
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_REDIS_URL": clean_redis,
           "ANCHORPIPE_ARCHIVE": "/nonexistent"}

    def cli(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "pipelines.cli", "webhook", *args], env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    dead = [json.loads(line) for line in cli("dead").splitlines()]
    assert len(dead) == 1 and dead[0]["agency"] == "agency-a" and "503" in dead[0]["error"]
    assert "whsec_" not in cli("list")
    assert cli("replay", "--agency", "agency-a").startswith("1 event to send again")
    receiver.status = 200
    assert deliveries.deliver_due() == 1 and cli("dead") == ""


def test_a_claim_lost_to_another_worker_is_not_sent_twice_and_private_addresses_are_refused(db, clean_redis, receiver):
    pipe = make_pipe(db, clean_redis)
    secret = new_secret()
    pipe.state.add_webhook("agency-a", receiver.url, ["records.archived"], secret)
    accept(pipe, "agency-a", 3)
    run_all(pipe)
    now = now_ms()
    slow = pipe.state.claim_deliveries(now, lease_ms=1_000)  # worker A claims, then stalls past its lease
    fast = Deliveries(pipe.state, allow_private=True)
    assert fast.deliver_due(now + 2_000) == 1  # worker B takes the events over and delivers them
    assert asyncio.run(fast._deliver([slow[:1]], now)) == 0  # A's claim is gone: it sends nothing
    assert len(receiver.got) == 1
    # Without ANCHORPIPE_WEBHOOK_ALLOW_PRIVATE a delivery to a private address is refused at each attempt.
    accept(pipe, "agency-a", 2, start=50)
    run_all(pipe)
    strict = Deliveries(pipe.state, attempts=1)
    assert strict.deliver_due() == 0 and len(receiver.got) == 1
    assert "private or reserved" in pipe.state.webhook_events("dead")[0]["error"] or \
        "loopback" in pipe.state.webhook_events("dead")[0]["error"]

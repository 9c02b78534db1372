"""Webhook receivers are strangers: the address filter allows only globally routable hosts (compared as DNS
reads them), a delivery has one total deadline however slowly a receiver answers, one agency's hung receiver
delays no other agency, a send still running is never sent again, and an answer is read only so far."""

from __future__ import annotations

import socketserver
import threading
import time

import pytest
from fastapi.testclient import TestClient

from pipelines.config import Settings
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState as State
from pipelines.stages.webhooks import Deliveries, new_secret
from tests.system.test_stages import accept, run_all
from tests.system.test_webhooks import Receiver, make_pipe


def test_the_webhook_route_refuses_a_huge_body_before_reading_it(db, clean_redis, tmp_path):
    state = State.connect(db)
    key = add_agency(state, "agency-a")
    client = TestClient(create_app(Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path))))
    auth = {"Authorization": f"Bearer {key}"}
    huge = client.post("/v1/webhooks", content=b'{"url": "https://example.com/' + b"a" * (80 << 20) + b'"}',
                       headers={**auth, "Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.headers["content-type"] == "application/problem+json"
    long = client.post("/v1/webhooks", json={"url": "https://example.com/" + "a" * 3000,
                                             "events": ["records.archived"]}, headers=auth)
    assert long.status_code == 422 and "at most" in long.json()["detail"]
    assert client.get("/v1/webhooks", headers=auth).json() == []


class Hostile(socketserver.ThreadingTCPServer):
    """A receiver that reads the request, then answers as ``mode`` says: ``drip`` (one byte every half
    second, forever), ``flood`` (200 with a 300 MB body it streams until the sender leaves)."""

    daemon_threads = allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        self.mode, self.posts, self.sent = mode, 0, 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += self.request.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(
                    b"content-length")][0])
                while len(body) < length:
                    body += self.request.recv(65536)
                outer.posts += 1
                try:
                    if outer.mode == "drip":
                        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 100:
                            self.request.sendall(bytes([byte]))
                            time.sleep(0.5)
                    else:
                        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 314572800\r\n\r\n")
                        for _ in range(300 * 16):
                            self.request.sendall(b"\0" * 65536)
                            outer.sent += 65536
                except OSError:
                    pass  # the sender gave up: as it should

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def hostile():
    servers: list[Hostile] = []

    def make(mode: str) -> Hostile:
        servers.append(Hostile(mode))
        return servers[-1]

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def test_a_dripping_receiver_is_cut_at_the_deadline_and_delays_no_other_agency(db, clean_redis, hostile):
    pipe = make_pipe(db, clean_redis)
    drip, good = hostile("drip"), Receiver()
    try:
        pipe.state.add_webhook("agency-a", drip.url, ["records.archived"], new_secret())
        pipe.state.add_webhook("agency-b", good.url, ["records.archived"], new_secret())
        accept(pipe, "agency-a", 3)
        accept(pipe, "agency-b", 3, start=100)
        run_all(pipe)
        first, second = Deliveries(pipe.state, timeout=2.0, allow_private=True), \
            Deliveries(pipe.state, timeout=2.0, allow_private=True)
        started = time.monotonic()
        done: list[int] = []
        runner = threading.Thread(target=lambda: done.append(first.deliver_due()))
        runner.start()
        while drip.posts == 0 and runner.is_alive():  # the first worker has claimed everything and is sending
            time.sleep(0.01)
        while runner.is_alive():  # another worker, ticking meanwhile: it must not send what the first holds
            second.deliver_due()
            time.sleep(0.2)
        took = time.monotonic() - started
        assert done == [1], done  # agency-b's delivery went through; agency-a's was cut
        assert len(good.got) == 1
        assert took < 2.0 + 2.0, f"the run took {took:.1f} s: the deadline did not hold"
        assert drip.posts == 1  # never sent again while its send was running
        waiting = pipe.state.webhook_events("pending", "agency-a")
        assert waiting and all("no whole answer within 2 s" in (e["error"] or "") for e in waiting), waiting
    finally:
        good.server.shutdown()


def test_a_flood_of_an_answer_is_read_only_so_far(db, clean_redis, hostile):
    pipe = make_pipe(db, clean_redis)
    flood = hostile("flood")
    pipe.state.add_webhook("agency-a", flood.url, ["records.archived"], new_secret())
    accept(pipe, "agency-a", 3)
    run_all(pipe)
    assert Deliveries(pipe.state, timeout=10.0, allow_private=True).deliver_due() == 1
    time.sleep(0.5)  # the receiver notices the sender left
    # The sender read its 4 KiB and left: the receiver got no further than the sockets' buffers hold.
    assert flood.sent < 32 << 20, f"the receiver sent {flood.sent / 2**20:.0f} MiB before the sender left"


def test_one_webhook_that_cannot_be_sent_to_fails_alone(db, clean_redis):
    """A URL stored before a rule existed (the sender's parser refuses it) is that webhook's failed attempt,
    counted towards its dead letters; every other agency's delivery goes through in the same run."""
    pipe = make_pipe(db, clean_redis)
    good = Receiver()
    try:
        pipe.state.add_webhook("agency-a", "http://ｅｘａｍｐｌｅ.com:99999/x", ["records.archived"], new_secret())
        pipe.state.add_webhook("agency-b", good.url, ["records.archived"], new_secret())
        accept(pipe, "agency-a", 2)
        accept(pipe, "agency-b", 2, start=100)
        run_all(pipe)
        assert Deliveries(pipe.state, attempts=1, allow_private=True).deliver_due() == 1
        assert len(good.got) == 1
        (dead,) = pipe.state.webhook_events("dead", "agency-a")
        assert dead["attempts"] == 1 and dead["error"]
    finally:
        good.server.shutdown()

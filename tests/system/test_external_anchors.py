"""External anchoring end to end against a real TSA (OpenSSL) and a real EVM node (anvil), with faults.

The stages run in-process on a real PostgreSQL; the TSA and anvil are real
processes spoken to over HTTP. Fault injection wraps the real adapters (a send
that fails once, a TSA that answers garbage) or drives the node (reorgs, mining
off, a restart).
"""

from __future__ import annotations

import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pipelines.archive import directory
from pipelines.config import Settings
from pipelines.core.policy import Policy
from pipelines.core.verify import NotAnchored, verify_proof
from pipelines.demo.services import fund
from pipelines.stages.external import ExternalAnchoring
from pipelines.ledger.evm import EvmChain
from pipelines.ledger.tlog import TransparencyLog
from pipelines.ledger.tsa import TsaClient
from pipelines.stages.batches import Pipeline
from pipelines.state.postgres import PostgresState as State
from tests.support.faults import Crash, FaultyStore
from tests.system.test_stages import accept, run_all
from tests.unit.ledger.test_tlog import SIGNER

CONFIRMATIONS = 3


def rpc(url: str, method: str, *params):
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10)
    doc = r.json()
    assert "error" not in doc, doc
    return doc["result"]


def new_chain(url: str) -> EvmChain:
    chain = EvmChain(url, "0x" + secrets.token_hex(32))  # a fresh account: its nonces are this test's alone
    fund(url, chain.address)
    return chain


def make_pipe(db, redis, tsas, evm, **settings) -> Pipeline:
    kinds = ["tlog"] + (["tsa"] if tsas else []) + (["evm"] if evm else [])
    cfg = Settings(database_url=db, redis_url=redis, archive="memory", batch_max=1000, batch_interval=0.001,
                   anchors=",".join(kinds), tsa_urls=",".join(t.url for t in tsas), evm_rpc_url="http://unused",
                   evm_key="0x" + "11" * 32, evm_confirmations=CONFIRMATIONS, external_interval=0.001,
                   **settings)
    store, log_store = FaultyStore(), FaultyStore()
    log = TransparencyLog.create(log_store, [SIGNER])
    state = State.connect(db)
    return Pipeline(cfg, state, store, log, log_store=log_store,
                    external=ExternalAnchoring(cfg, state, log.head, list(tsas), evm))


def policy(roots, blocks=None, **kw) -> Policy:
    return Policy.of([SIGNER.verifier()], tsa_roots=roots, evm_blocks=blocks or {}, **kw)


def mined_blocks(pipe: Pipeline) -> dict[int, set[str]]:
    """The chain id -> block hashes of every confirmed EVM receipt (what an auditor pins)."""
    import json

    out: dict[int, set[str]] = {}
    for rnd in pipe.state.rounds(limit=100):
        for t in rnd.targets:
            if t.target == "evm" and t.receipt:
                doc = json.loads(t.receipt)
                out.setdefault(doc["chain_id"], set()).add(doc["block_hash"])
    return out


def sent_nonces(pipe: Pipeline) -> list[int]:
    return sorted(tx["nonce"] for rnd in pipe.state.rounds(limit=100) for t in rnd.targets for tx in t.txs)


def test_proofs_are_upgraded_with_tsa_and_evm_receipts_that_verify_offline(db, clean_redis, tsa, evm_node):
    url, roots = tsa
    chain = new_chain(evm_node)
    pipe = make_pipe(db, clean_redis, [TsaClient(url, roots)], chain)
    accept(pipe, "agency-a", 1500)
    archived = run_all(pipe)
    first = directory.fetch_proof(pipe.store, "agency-a", "rec-7")
    assert [a.type for a in first.anchors] == ["tlog"]
    bundle_before = pipe.store.get(pipe.state.batch(first.batch.id).bundle)

    assert pipe.external_tick() == []  # opens the round: the TSA answers at once, the transaction is sent
    rnd = pipe.state.rounds()[0]
    assert {t.target: t.state for t in rnd.targets} == {f"tsa:{url}": "confirmed", "evm": "submitted"}
    rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS - 2))  # one short of the confirmations: not yet
    assert pipe.external_tick() == [] and pipe.state.rounds()[0].closed_ms is None
    rpc(evm_node, "anvil_mine", "0x1")
    due = pipe.external_tick()
    assert sorted(due) == sorted(archived)
    assert sorted(pipe.upgrade(due)) == sorted(archived)
    assert pipe.upgrade(due) == []  # idempotent: nothing more to add

    upgraded = directory.fetch_proof(pipe.store, "agency-a", "rec-7")
    assert [a.type for a in upgraded.anchors] == ["tlog", "tsa", "evm"]
    report = verify_proof(upgraded, policy(roots, mined_blocks(pipe), require=["tsa", "evm"]))
    assert {v.kind for v in report.anchors if v.verdict == "verified"} == {"tlog", "tsa", "evm"}
    assert all(v.time for v in report.anchors if v.kind != "tlog")
    # The first proof is still there and still valid; the database points at the new bundle.
    verify_proof(first, policy(roots))
    # The bundle is as it was written; the upgrade is one object beside it, which the state points at too.
    info = pipe.state.batch(first.batch.id)
    assert info.anchors_key == f"proofs/agency-a/{first.batch.id}.u{rnd.size}.json"
    assert pipe.store.get(info.bundle) == bundle_before
    location = pipe.state.proof_location("agency-a", "rec-7")
    assert directory.read_proof(pipe.store, location, "agency-a", "rec-7", info.anchors_key) == upgraded
    # Without the block pinned (or a node to ask), the EVM anchor proves nothing yet: the policy says no.
    with pytest.raises(NotAnchored, match="remains to be checked"):
        verify_proof(upgraded, policy(roots, require=["evm"]))
    verify_proof(upgraded, policy(roots, expression="tlog and (tsa or evm)"))
    assert sent_nonces(pipe) == [0]  # one transaction for the whole round


def ticked_until_closed(pipe: Pipeline, evm_node: str, timeout: float = 60) -> list[str]:
    """Tick the external stage (mining a block between ticks) until its open round closes; the batches it made due.
    A loaded machine may need several ticks where an idle one needs one."""
    deadline = time.monotonic() + timeout
    while True:
        due = pipe.external_tick()
        if due or not pipe.state.rounds(open_only=True):
            return due
        assert time.monotonic() < deadline, "the external round did not close"
        rpc(evm_node, "anvil_mine", "0x1")
        time.sleep(0.1)


def test_a_tsa_that_is_down_delays_only_its_own_anchor(db, clean_redis, tsa, evm_node):
    url, roots = tsa
    down = TsaClient("http://127.0.0.1:9/", roots, timeout=1)
    chain = new_chain(evm_node)
    pipe = make_pipe(db, clean_redis, [down], chain, external_deadline=0.2)
    accept(pipe, "agency-a", 10)
    archived = run_all(pipe)
    pipe.external_tick()
    rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS))
    due = ticked_until_closed(pipe, evm_node)
    target = next(t for t in pipe.state.rounds()[0].targets if t.target.startswith("tsa:"))
    assert target.state == "failed" and target.attempts >= 1 and "ConnectError" in target.error
    assert due == archived  # closed at the deadline with the chain's anchor
    pipe.upgrade(due)
    proof = directory.fetch_proof(pipe.store, "agency-a", "rec-3")
    assert [a.type for a in proof.anchors] == ["tlog", "evm"]
    # The TSA is back: the next round (the log grew) anchors both, and the batch gets its TSA receipt too.
    pipe.external.tsas[0] = TsaClient(url, roots)
    accept(pipe, "agency-a", 5, start=100)
    run_all(pipe)
    pipe.external_tick()
    rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS))
    due = ticked_until_closed(pipe, evm_node)
    assert set(archived) <= set(due)
    pipe.upgrade(due)
    proof = directory.fetch_proof(pipe.store, "agency-a", "rec-3")
    assert [a.type for a in proof.anchors] == ["tlog", "tsa", "evm"]
    verify_proof(proof, policy(roots, mined_blocks(pipe), require=["tsa", "evm"]))
    assert sent_nonces(pipe) == [0, 1]  # one transaction per round, none twice


class FakeTsa:
    """Fault injection: a TSA that answers what the test says (garbage, another checkpoint's token)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.body = b""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("answer", ["garbage", "another checkpoint"])
def test_a_tsa_answering_garbage_or_another_token_is_never_kept(db, clean_redis, tsa, answer):
    url, roots = tsa
    fake = FakeTsa()
    if answer == "garbage":
        fake.body = secrets.token_bytes(300)
    else:  # a genuine token of the real TSA, for something else
        import rfc3161_client

        req = rfc3161_client.TimestampRequestBuilder().data(b"other").hash_algorithm(
            rfc3161_client.HashAlgorithm.SHA256).build()
        fake.body = httpx.post(url, content=req.as_bytes(),
                               headers={"Content-Type": "application/timestamp-query"}).content
    pipe = make_pipe(db, clean_redis, [TsaClient(fake.url, roots)], None)
    accept(pipe, "agency-a", 10)
    run_all(pipe)
    assert pipe.external_tick() == []
    target = pipe.state.rounds()[0].targets[0]
    assert target.state == "pending" and target.receipt is None and target.attempts == 1
    assert ("not an RFC 3161" in target.error) if answer == "garbage" else ("nonce" in target.error
                                                                           or "imprint" in target.error)
    assert pipe.state.upgradable() == []
    fake.server.shutdown()


def test_a_reorg_that_drops_the_transaction_anchors_the_same_checkpoint_again(db, clean_redis, tsa, evm_node):
    chain = new_chain(evm_node)
    pipe = make_pipe(db, clean_redis, [], chain)
    accept(pipe, "agency-a", 10)
    archived = run_all(pipe)
    pipe.external_tick()
    tx = pipe.state.rounds()[0].targets[0].txs[0]
    block, _ = chain.mined(tx["hash"])
    rpc(evm_node, "anvil_reorg", 1, [])  # the block holding it is replaced by one without it
    assert chain.mined(tx["hash"]) is None
    pipe.external_tick()  # found unmined: the same signed bytes go out again
    assert chain.mined(tx["hash"]) is not None
    rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS))
    assert pipe.external_tick() and pipe.upgrade(archived) == archived
    assert sent_nonces(pipe) == [0] and len(pipe.state.rounds()[0].targets[0].txs) == 1


def test_a_stuck_transaction_is_replaced_with_the_same_nonce(db, clean_redis, evm_node):
    chain = new_chain(evm_node)
    pipe = make_pipe(db, clean_redis, [], chain, evm_replace_after=0.05)
    accept(pipe, "agency-a", 10)
    run_all(pipe)
    rpc(evm_node, "evm_setAutomine", False)
    try:
        pipe.external_tick()
        time.sleep(0.1)
        pipe.external_tick()
        txs = pipe.state.rounds()[0].targets[0].txs
        assert len(txs) == 2 and txs[0]["nonce"] == txs[1]["nonce"] and txs[1]["max_fee"] > txs[0]["max_fee"]
        rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS))
    finally:
        rpc(evm_node, "evm_setAutomine", True)
    assert pipe.external_tick()
    assert [chain.mined(t["hash"]) is not None for t in txs].count(True) == 1  # one anchor, not two


def test_a_crash_between_recording_and_sending_sends_the_same_transaction(db, clean_redis, evm_node, monkeypatch):
    chain = new_chain(evm_node)
    pipe = make_pipe(db, clean_redis, [], chain)
    accept(pipe, "agency-a", 10)
    run_all(pipe)

    def crash(raw):
        raise KeyboardInterrupt("killed after the commit point, before the send")

    monkeypatch.setattr(chain, "send", crash)
    with pytest.raises(KeyboardInterrupt):
        pipe.external_tick()
    monkeypatch.undo()
    tx = pipe.state.rounds()[0].targets[0].txs[0]
    assert chain.mined(tx["hash"]) is None  # recorded, never sent
    pipe.external_tick()
    rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS))
    assert pipe.external_tick()
    assert sent_nonces(pipe) == [0] and chain.mined(tx["hash"]) is not None


def test_a_nonce_taken_by_another_transaction_is_replaced_by_the_next(db, clean_redis, evm_node):
    chain = new_chain(evm_node)
    pipe = make_pipe(db, clean_redis, [], chain)
    accept(pipe, "agency-a", 10)
    run_all(pipe)
    rpc(evm_node, "evm_setAutomine", False)
    try:
        pipe.external_tick()
        ours = pipe.state.rounds()[0].targets[0].txs[0]
        other = chain.sign("not an anchor\n", ours["nonce"], bump=chain.sign("x\n", ours["nonce"]))
        other = chain.sign("someone else\n", ours["nonce"], bump=other)  # outbids ours for the same nonce
        chain.send(other.raw)
        rpc(evm_node, "anvil_mine", "0x1")
    finally:
        rpc(evm_node, "evm_setAutomine", True)
    assert chain.mined(ours["hash"]) is None and chain.mined(other.tx_hash) is not None
    pipe.external_tick()
    txs = pipe.state.rounds()[0].targets[0].txs
    assert [t["nonce"] for t in txs] == [0, 1]
    rpc(evm_node, "anvil_mine", hex(CONFIRMATIONS))
    assert pipe.external_tick()


def test_a_node_that_is_down_or_restarted_delays_the_anchor_and_loses_nothing(db, clean_redis, tmp_path):
    from pipelines.demo.services import anvil_command, child, free_port

    port = free_port()
    state_file = tmp_path / "chain.json"
    url = f"http://127.0.0.1:{port}"
    with child(anvil_command(port, state=state_file), port, tmp_path / "a.log"):
        chain = new_chain(url)
        pipe = make_pipe(db, clean_redis, [], chain)
        rpc(url, "evm_setAutomine", False)
        accept(pipe, "agency-a", 10)
        archived = run_all(pipe)
        pipe.external_tick()  # sent, waiting in the node's pool
    # The node is down: ticks fail and back off; sealing and archiving go on.
    accept(pipe, "agency-a", 10, start=50)
    assert run_all(pipe)
    pipe.external_tick()
    target = pipe.state.rounds()[0].targets[0]
    assert target.state == "submitted" and target.attempts == 1 and "EVM node" in target.error
    with child(anvil_command(port, state=state_file), port, tmp_path / "b.log"):  # back, without its pool
        fund(url, chain.address)
        pipe.state.update_target(target.size, "evm", "submitted", next_try_ms=0)
        pipe.external_tick()  # re-sends the recorded bytes
        rpc(url, "anvil_mine", hex(CONFIRMATIONS))
        due = pipe.external_tick() and pipe.state.upgradable()
        assert set(archived) <= set(due)
    assert sent_nonces(pipe) == [0]


def test_the_api_says_which_anchors_a_record_has_and_which_are_pending(db, clean_redis, tsa, tmp_path):
    from fastapi.testclient import TestClient

    from pipelines.api.app import create_app
    from pipelines.intake.auth import add_agency
    from pipelines.storage import open_store

    url, roots = tsa
    pipe = make_pipe(db, clean_redis, [TsaClient(url, roots)], None)
    pipe.cfg = pipe.cfg.model_copy(update={"archive": str(tmp_path / "archive")})
    pipe.external.cfg = pipe.cfg
    pipe.store = open_store(pipe.cfg.archive)
    key = add_agency(pipe.state, "agency-a")
    client = TestClient(create_app(pipe.cfg))
    accept(pipe, "agency-a", 3)

    def status() -> dict:
        resp = client.get("/v1/records/rec-1", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        return resp.json()

    assert status()["anchors"] == {"confirmed": [], "pending": ["tlog", "tsa"]}
    run_all(pipe)
    doc = status()
    assert doc["anchors"] == {"confirmed": ["tlog"], "pending": ["tsa"]}
    assert [a["type"] for a in doc["proof"]["anchors"]] == ["tlog"]
    pipe.upgrade(pipe.external_tick())
    doc = status()
    assert doc["anchors"] == {"confirmed": ["tlog", "tsa"], "pending": []}
    assert [a["type"] for a in doc["proof"]["anchors"]] == ["tlog", "tsa"]


def test_a_slow_tsa_times_out_and_is_retried_later(db, clean_redis, tsa):
    fake = FakeTsa(delay=2.0)
    pipe = make_pipe(db, clean_redis, [TsaClient(fake.url, tsa[1], timeout=0.3)], None)
    accept(pipe, "agency-a", 10)
    run_all(pipe)
    pipe.external_tick()
    target = pipe.state.rounds()[0].targets[0]
    assert target.state == "pending" and "Timeout" in target.error and target.next_try_ms > 0
    fake.server.shutdown()


def test_anchor_failures_reach_sentry_without_the_evm_key(db, clean_redis):
    import sentry_sdk
    from pydantic import SecretStr

    from pipelines.ops.monitoring import init_sentry
    from tests.support.sentry_fake import FakeSentry

    key = "0x" + secrets.token_hex(32)
    chain = EvmChain("http://127.0.0.1:9", key, timeout=1)  # nothing listens there
    pipe = make_pipe(db, clean_redis, [], chain)
    accept(pipe, "agency-a", 10)
    run_all(pipe)
    with FakeSentry() as fake:
        assert init_sentry(pipe.cfg.model_copy(update={"sentry_dsn": SecretStr(fake.dsn)}))
        try:
            pipe.external_tick()
            sentry_sdk.flush()
        finally:
            sentry_sdk.get_client().close()
    assert any("EVM node" in str(e) for e in fake.events())
    raw = b"".join(fake.raw)
    assert key.encode() not in raw and key[2:].encode() not in raw
    assert repr(chain).endswith(f"sender {chain.address})") and key[2:] not in repr(chain)


@pytest.mark.parametrize("mode", ["lost", "persisted"])
def test_an_upgrade_that_crashes_is_redone_and_loses_nothing(db, clean_redis, tsa, mode):
    url, roots = tsa
    pipe = make_pipe(db, clean_redis, [TsaClient(url, roots)], None)
    accept(pipe, "agency-a", 30)
    archived = run_all(pipe)
    accept(pipe, "agency-a", 30, start=100)
    archived += run_all(pipe)
    ids = [f"rec-{i}" for i in [*range(30), *range(100, 130)]]
    due = pipe.external_tick()
    assert due == archived
    pipe.store.fail("proofs/*.u*.json", mode, skip=1)  # the second batch's anchors object
    with pytest.raises(Crash):
        pipe.upgrade(due)
    assert pipe.state.batch(archived[1]).ext_kinds == ()  # not recorded: nothing points at half a job
    for rid in ids:  # every record still has a valid proof meanwhile
        assert directory.fetch_proof(pipe.store, "agency-a", rid).record.id == rid
    assert pipe.state.upgradable() == archived[1:]  # what the reconciler sends again
    assert pipe.upgrade(due) == archived[1:]
    for rid in ids:
        proof = directory.fetch_proof(pipe.store, "agency-a", rid)
        assert [a.type for a in proof.anchors] == ["tlog", "tsa"]
        verify_proof(proof, policy(roots, require=["tsa"]))
    assert pipe.state.batch(archived[1]).ext_kinds == ("tsa",)

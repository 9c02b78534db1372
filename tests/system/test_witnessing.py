"""The log's side of witnessing, with real witnesses (``anchorpipe witness serve`` processes) and a real
PostgreSQL: cosigning, quorum, upgrades that carry cosignatures, faults, and a split view caught."""

from __future__ import annotations

import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.archive import directory
from pipelines.config import Settings
from pipelines.core.cosignature import WitnessKey, verify_cosignatures
from pipelines.core.policy import Policy
from pipelines.core.verify import NotAnchored, verify_proof
from pipelines.core.cosignature import Cosigner
from pipelines.demo.services import child, free_port, witness_command, witness_server
from pipelines.errors import InputError
from pipelines.stages.external import ExternalAnchoring
from pipelines.ledger.tlog import LogReader, TransparencyLog
from pipelines.ledger.witness import WitnessClient, WitnessError
from pipelines.ops import metrics
from pipelines.stages.batches import Pipeline
from pipelines.state.postgres import PostgresState as State
from pipelines.storage import open_store
from pipelines.stages.witnessing import Witnessing, quorum_met
from tests.support.faults import FaultyStore
from tests.system.test_cli_seal_verify import run, write_records
from tests.system.test_stages import accept, run_all
from pipelines.core.note import Signer


#: A log per test: the witnesses below serve the whole module, and a log they saw cannot start over.
LOGS = {name: Signer.generate(f"test.example/{name}") for name in ("cosigned", "faults", "split")}


@pytest.fixture(scope="module")
def witnesses(tmp_path_factory):
    """Three witnesses of the module's logs, as processes."""
    folder = tmp_path_factory.mktemp("witnesses")
    vkeys = [s.verifier().text() for s in LOGS.values()]
    with witness_server(folder, "w1.example", vkeys) as w1, witness_server(folder, "w2.example", vkeys) as w2, \
            witness_server(folder, "w3.example", vkeys) as w3:
        yield [w1, w2, w3]


def keys(ws) -> list[WitnessKey]:
    return [WitnessKey.parse(w.vkey) for w in ws]


def make_pipe(db, redis, signer: Signer, entries: list[tuple[str, str]], quorum: int) -> tuple[Pipeline, Witnessing]:
    cfg = Settings(database_url=db, redis_url=redis, archive="memory", batch_max=1000, batch_interval=0.001,
                   external_interval=0.001, witnesses=",".join(f"{u} {v}" for u, v in entries),
                   witness_quorum=quorum, witness_timeout=1.0)
    store, log_store = FaultyStore(), FaultyStore()
    log = TransparencyLog.create(log_store, [signer])
    state = State.connect(db)
    pinned = [WitnessKey.parse(v) for _, v in entries]
    reader = LogReader(log_store, [signer.verifier()], signer.name)
    external = ExternalAnchoring(cfg, state, reader.cosigned, [], None,
                                 witnessed=lambda note: quorum_met(note, pinned, cfg.quorum))
    clients = [WitnessClient(u, WitnessKey.parse(v), cfg.witness_timeout) for u, v in entries]
    return Pipeline(cfg, state, store, log, log_store=log_store, external=external), Witnessing(reader, clients,
                                                                                                cfg.quorum)


def policy(ws, quorum=2, **kw) -> Policy:
    return Policy.of([LOGS["cosigned"].verifier()], witnesses=keys(ws), witness_quorum=quorum, **kw)


def test_checkpoints_are_cosigned_and_upgraded_proofs_verify_with_a_witness_quorum(db, clean_redis, witnesses):
    signer = LOGS["cosigned"]
    pipe, witnessing = make_pipe(db, clean_redis, signer, [(w.url, w.vkey) for w in witnesses], quorum=2)
    accept(pipe, "agency-a", 1200)
    archived = run_all(pipe)
    first = directory.fetch_proof(pipe.store, "agency-a", "rec-3")
    assert pipe.external_tick() == []  # nothing cosigned yet: no round
    head = witnessing.tick()
    assert head is not None and len(verify_cosignatures(head.note, keys(witnesses))) == 3
    assert witnessing.tick() is None  # the log did not grow: nothing to ask
    due = pipe.external_tick()  # a round with no external target closes at once, with the quorum
    assert sorted(due) == sorted(archived) and pipe.state.rounds()[0].kinds == ["witness"]
    assert sorted(pipe.upgrade(due)) == sorted(archived)
    upgraded = directory.fetch_proof(pipe.store, "agency-a", "rec-3")
    assert upgraded.anchors[0].checkpoint == head.note
    report = verify_proof(upgraded, policy(witnesses))
    witness = next(v for v in report.anchors if v.kind == "witness")
    assert witness.verdict == "verified" and "3 pinned witness" in witness.detail and witness.time
    verify_proof(upgraded, policy(witnesses, quorum=3))
    verify_proof(upgraded, Policy.of([signer.verifier()], expression="tlog and witness", witnesses=keys(witnesses)))
    # The first proof's checkpoint was never cosigned: consistent, and not valid under a witness quorum.
    with pytest.raises(NotAnchored, match="cosigned by 0 of the pinned witnesses"):
        verify_proof(first, policy(witnesses))
    verify_proof(first, Policy.of([signer.verifier()]))  # without witnesses pinned it is what it was
    # A witnessing process that restarts knows no sizes: each witness answers 409 with the size it holds, and
    # gets the proof from there.
    accept(pipe, "agency-a", 10, start=5000)
    run_all(pipe)
    fresh = Witnessing(witnessing.log, witnessing.witnesses, 2)
    again = fresh.tick()
    assert len(verify_cosignatures(again.note, keys(witnesses))) == 3
    assert fresh.known == {k.name: again.checkpoint.size for k in keys(witnesses)} and not fresh.backoff


class Slow(BaseHTTPRequestHandler):
    """A witness that answers after the log's timeout (fault injection)."""

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        time.sleep(3)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_dead_and_slow_witnesses_hold_up_nothing_and_a_quorum_comes_once_they_return(db, clean_redis, witnesses,
                                                                                   tmp_path):
    slow = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    dead_port = free_port()
    signer = LOGS["faults"]
    dead_args, dead_key = witness_command(tmp_path, "dead.example", [signer.verifier().text()], dead_port)
    slow_key = Cosigner.generate("slow.example").verifier().text()
    entries = [(witnesses[0].url, witnesses[0].vkey), (f"http://127.0.0.1:{dead_port}", dead_key),
               (f"http://127.0.0.1:{slow.server_port}", slow_key)]
    pinned = [WitnessKey.parse(v) for _, v in entries]
    pipe, witnessing = make_pipe(db, clean_redis, signer, entries, quorum=2)
    failures = metrics.WITNESS_FAILURES.labels("dead.example", "unavailable")._value.get()
    accept(pipe, "agency-a", 50)
    assert run_all(pipe)  # sealing, sequencing and archiving never wait for witnesses
    started = time.monotonic()
    head = witnessing.tick()
    assert time.monotonic() - started < 2.9  # the slow witness's answer is not waited for past the timeout
    assert head is not None and [c.witness for c in verify_cosignatures(head.note, pinned)] == [witnesses[0].name]
    assert metrics.WITNESS_FAILURES.labels("dead.example", "unavailable")._value.get() == failures + 1
    assert set(witnessing.backoff) == {"dead.example", "slow.example"}
    # The round goes on without the quorum, and gives the proofs nothing to add.
    assert pipe.external_tick() == [] and pipe.state.rounds()[0].kinds == []
    # While they back off, the next checkpoint goes to the live witness alone, at once.
    accept(pipe, "agency-a", 5, start=100)
    run_all(pipe)
    started = time.monotonic()
    assert len(verify_cosignatures(witnessing.tick().note, pinned)) == 1 and time.monotonic() - started < 1
    # The dead witness comes back; once its backoff is over it cosigns, and the quorum is there.
    with child(dead_args, dead_port, tmp_path / "dead.log"):
        accept(pipe, "agency-a", 5, start=200)
        run_all(pipe)
        witnessing.backoff = {name: (n, 0.0) for name, (n, _) in witnessing.backoff.items()}  # time passed
        head = witnessing.tick()
        assert sorted(c.witness for c in verify_cosignatures(head.note, pinned)) == ["dead.example",
                                                                                      witnesses[0].name]
        assert quorum_met(head.note, pinned, 2)
    slow.shutdown()


def test_a_witness_that_does_not_know_the_log_is_reported_as_refusing(db, clean_redis, tmp_path):
    other = Signer.generate("other.example/log")
    with witness_server(tmp_path, "stranger.example", [other.verifier().text()]) as w:
        pipe, witnessing = make_pipe(db, clean_redis, Signer.generate("test.example/unknown"), [(w.url, w.vkey)],
                                     quorum=1)
        before = metrics.WITNESS_FAILURES.labels("stranger.example", "refused")._value.get()
        accept(pipe, "agency-a", 5)
        run_all(pipe)
        head = witnessing.tick()
        assert head is not None and verify_cosignatures(head.note, keys([w])) == []
        assert metrics.WITNESS_FAILURES.labels("stranger.example", "refused")._value.get() == before + 1


def test_a_policy_asking_for_more_witnesses_than_pinned_is_refused():
    with pytest.raises(InputError, match="quorum of 3"):
        Policy.of([LOGS["split"].verifier()], witnesses=[], witness_quorum=3)
    with pytest.raises(InputError, match="pinned witness keys"):
        Policy.of([LOGS["split"].verifier()], require=["witness"])


@pytest.mark.system
def test_a_split_view_is_caught_by_witnesses_verify_and_log_consistency(tmp_path: Path, witnesses):
    """The operator signs a fork of its log: no witness cosigns it, a proof under it fails a quorum, and
    `log consistency` with the saved cosigned checkpoint shows both checkpoints as the evidence."""
    signer = LOGS["split"]
    (tmp_path / "log.key").write_text(signer.text() + "\n")
    (tmp_path / "log.vkey").write_text(signer.verifier().text() + "\n")
    (tmp_path / "witnesses.vkeys").write_text("".join(w.vkey + "\n" for w in witnesses))

    def seal(n: int, log: str) -> None:
        write_records(tmp_path / f"in{n}.jsonl", [{"id": f"r{n}-{i}", "content": {"n": n, "i": i}} for i in range(3)])
        res = run("seal", f"in{n}.jsonl", "--agency", "dept-x", "--out", f"out{n}", "--log", log, "--log-key",
                  "log.key", cwd=tmp_path)
        assert res.returncode == 0, res.stderr

    def witness(log: str):
        reader = LogReader(open_store(str(tmp_path / log)), [signer.verifier()], signer.name)
        clients = [WitnessClient(w.url, WitnessKey.parse(w.vkey), 2.0) for w in witnesses]
        return Witnessing(reader, clients, 2).tick()

    seal(1, "honest")
    shutil.copytree(tmp_path / "honest", tmp_path / "forked")  # the operator keeps a second copy at size 1
    seal(2, "honest")
    cosigned = witness("honest")
    assert len(verify_cosignatures(cosigned.note, keys(witnesses))) == 3
    res = run("log", "show", "honest", "--log-vkey", "log.vkey", "--witness", "witnesses.vkeys", "--save",
              "saved.cosigned", cwd=tmp_path)
    assert res.returncode == 0 and "cosigned by 3 of 3 pinned witnesses" in res.stdout
    assert (tmp_path / "saved.cosigned").read_text() == cosigned.note
    # The fork: other records at size 2, then size 3, signed by the same key. Every witness refuses it.
    seal(3, "forked")
    seal(4, "forked")
    forked = witness("forked")
    assert forked is not None and verify_cosignatures(forked.note, keys(witnesses)) == []
    # A proof under the fork verifies under the log key alone (that is the split view), not under a quorum.
    proof = next((tmp_path / "out4").glob("r4-0*.json")).name
    assert run("verify", f"out4/{proof}", "--log-vkey", "log.vkey", cwd=tmp_path).returncode == 0
    res = run("verify", f"out4/{proof}", "--log-vkey", "log.vkey", "--witness", "witnesses.vkeys",
              "--witness-quorum", "2", cwd=tmp_path)
    assert res.returncode == 3 and "cosigned by 0 of the pinned witnesses" in res.stderr
    res = run("verify", f"out4/{proof}", "--log-vkey", "log.vkey", "--witness", "witnesses.vkeys", "--policy",
              "tlog and witness", cwd=tmp_path)
    assert res.returncode == 3
    # The auditor's saved cosigned checkpoint against the forked log: a fork, with both checkpoints shown.
    res = run("log", "consistency", "forked", "saved.cosigned", "--log-vkey", "log.vkey", "--witness",
              "witnesses.vkeys", cwd=tmp_path)
    assert res.returncode == 1 and res.stdout.startswith("FORK")
    assert cosigned.note in res.stdout and (tmp_path / "forked" / "checkpoint").read_text() in res.stdout
    assert "cosigned by w1.example, w2.example, w3.example" in res.stdout
    assert "cosigned by no pinned witness" in res.stdout
    # Against the honest log it is consistent.
    res = run("log", "consistency", "honest", "saved.cosigned", "--log-vkey", "log.vkey", cwd=tmp_path)
    assert res.returncode == 0 and "consistent" in res.stdout


def test_a_witness_url_never_shows_its_credentials_path_or_query():
    key = Cosigner.generate("w.example").verifier()
    client = WitnessClient(f"http://user:s3cret-pw@127.0.0.1:{free_port()}/sub/path?token=t0ken", key, 0.5)
    with pytest.raises(WitnessError) as exc:
        client.add_checkpoint(0, [], "x\n1\n" + "A" * 43 + "=\n\n\u2014 x AAAA\n")
    for secret in ("s3cret-pw", "user", "t0ken", "/sub/path"):
        assert secret not in str(exc.value) and secret not in repr(client)
    assert exc.value.transient

"""The stages in-process against a real PostgreSQL, with fault-injecting stores for the archive and log."""

from __future__ import annotations

import secrets

import pytest

from pipelines.archive import directory
from pipelines.config import Settings
from pipelines.core.commitment import content_sha256
from pipelines.core.logentry import parse_batch_entry
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.stages.batches import Pipeline
from pipelines.state.postgres import PostgresState as State
from pipelines.ledger.tlog import TransparencyLog
from pipelines.storage import MAX_OBJECT_BYTES
from tests.conftest import sql
from tests.support.faults import Crash, FaultyStore
from tests.unit.ledger.test_tlog import SIGNER, audit


class CountingStore(FaultyStore):
    """Counts GETs, to check the auditor's lookup cost."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def copy(self) -> CountingStore:
        other = CountingStore()
        other.objects = dict(self.objects)
        return other

    def get_versioned(self, key, limit=MAX_OBJECT_BYTES):
        self.gets += 1
        return super().get_versioned(key, limit)

    def get(self, key, limit=MAX_OBJECT_BYTES):
        self.gets += 1
        return super().get(key, limit)

    def get_range(self, key, start, length):
        self.gets += 1
        return super().get_range(key, start, length)


@pytest.fixture
def pipe(db, clean_redis):
    cfg = Settings(database_url=db, redis_url=clean_redis, archive="memory", batch_max=1000, batch_interval=0.001)
    store, log_store = CountingStore(), FaultyStore()
    p = Pipeline(cfg, State.connect(db), store, TransparencyLog.create(log_store, [SIGNER]))
    p.log_store = log_store
    return p


def accept(p: Pipeline, agency: str, n: int, start: int = 0) -> None:
    records = [(f"rec-{i}", content_sha256({"i": i}), secrets.token_bytes(32)) for i in range(start, start + n)]
    p.state.accept(agency, records)


def run_all(p: Pipeline) -> list[str]:
    sealed = p.seal_ripe()
    anchored = p.anchor(sealed)
    return p.archive(anchored)


def log_batch_ids(p: Pipeline) -> list[str]:
    _, entries = audit(None, p.log_store.get)
    return [parse_batch_entry(e)[0] for e in entries]


def test_records_flow_to_verifiable_archived_proofs(pipe):
    accept(pipe, "agency-a", 2500)
    accept(pipe, "agency-b", 10)
    done = run_all(pipe)
    assert len(done) == 4  # batches of at most 1000, one agency each
    for b in done:  # so each bundle can be granted to its agency alone
        assert len({c.agency for c in pipe.state.load_batch(b).commitments}) == 1
    assert pipe.state.archived_records() == 2510
    assert sorted(log_batch_ids(pipe)) == sorted(done)
    for agency, i in [("agency-a", 0), ("agency-a", 2499), ("agency-b", 9)]:
        proof = directory.fetch_proof(pipe.store, agency, f"rec-{i}")
        verify_proof(proof, Policy.of([SIGNER.verifier()], ["tlog"]), content_sha256=content_sha256({"i": i}))


def test_lookups_cost_three_gets_for_an_auditor_and_one_for_the_api(pipe):
    accept(pipe, "agency-a", 50)
    run_all(pipe)
    pipe.store.gets = 0
    directory.fetch_proof(pipe.store, "agency-a", "rec-17")
    assert pipe.store.gets == 3  # the index's manifest, its newest run's page, the bundle's byte range
    pipe.store.gets = 0
    location = pipe.state.proof_location("agency-a", "rec-17")  # the API asks PostgreSQL where it is
    assert directory.read_proof(pipe.store, location, "agency-a", "rec-17").record.id == "rec-17"
    assert pipe.store.gets == 1


def test_puts_per_thousand_records_at_high_rates(db, clean_redis):
    cfg = Settings(database_url=db, redis_url=clean_redis, archive="memory", batch_max=10_000, batch_interval=0.001)
    store, log_store = FaultyStore(), FaultyStore()
    p = Pipeline(cfg, State.connect(db), store, TransparencyLog.create(log_store, [SIGNER]))
    accept(p, "agency-a", 10_000)
    before = len(store.writes) + len(log_store.writes)
    run_all(p)
    puts = len(store.writes) + len(log_store.writes) - before
    assert puts / 10 <= 2, f"{puts} PUTs for 10,000 records"


def test_every_stage_can_run_again_without_effect(pipe):
    accept(pipe, "agency-a", 30)
    sealed = pipe.seal_ripe()
    pipe.seal(sealed[0])  # again
    pipe.anchor(sealed)
    assert pipe.anchor(sealed) == []  # already anchored: nothing appended
    pipe.archive(sealed)
    assert pipe.archive(sealed) == []
    assert log_batch_ids(pipe) == sealed
    assert pipe.state.archived_records() == 30
    assert pipe.seal_ripe() == []  # nothing pending


@pytest.mark.parametrize("key,mode", [("proofs/*", "lost"), ("proofs/*", "persisted"), ("ids/*", "lost"),
                                      ("ids/*", "persisted")])
def test_archive_crashes_are_redriven_without_duplicates(pipe, key, mode):
    accept(pipe, "agency-a", 40)
    sealed = pipe.seal_ripe()
    pipe.anchor(sealed)
    pipe.store.fail(key, mode)
    with pytest.raises(Crash):
        pipe.archive(sealed)
    assert pipe.state.batch(sealed[0]).state == "anchored"
    assert pipe.archive(sealed) == sealed
    assert pipe.state.archived_records() == 40
    for i in range(40):
        assert directory.fetch_proof(pipe.store, "agency-a", f"rec-{i}").record.id == f"rec-{i}"


def test_anchor_crash_after_append_does_not_anchor_twice(pipe):
    accept(pipe, "agency-a", 20)
    sealed = pipe.seal_ripe()
    pipe.log_store.fail("checkpoint", "persisted")  # the append lands, the reply is lost
    with pytest.raises(Crash):
        pipe.anchor(sealed)
    assert pipe.anchor(sealed) == sealed
    assert log_batch_ids(pipe) == sealed


def test_claimed_batch_is_sealed_by_the_reconciler_path(pipe):
    accept(pipe, "agency-a", 5)
    pipe.state.claim("manual-batch", "agency-a", 1000, 0.0, "2026-11-28T12:00:00Z")  # a sealer died right after claiming
    pipe.cfg = pipe.cfg.model_copy(update={"stuck_after": 0.001})
    import time

    time.sleep(0.01)
    stuck = pipe.stuck()
    assert stuck["claimed"] == ["manual-batch"]
    pipe.seal("manual-batch")
    pipe.archive(pipe.anchor(["manual-batch"]))
    assert pipe.state.archived_records() == 5


def test_a_damaged_batch_is_dead_lettered_and_does_not_block_others(pipe):
    accept(pipe, "agency-a", 10)
    good = pipe.seal_ripe()
    sql(pipe.state.url, "INSERT INTO batches (id, agency, state, sealed_at, size, created_ms, updated_ms, root) "
        "VALUES ('damaged', 'agency-a', 'sealed', '2026-11-28T12:00:00Z', 1, 1, 1, 'not-hex')")
    assert pipe.anchor(good) == good
    assert pipe.state.batch("damaged").state == "failed"
    assert pipe.state.dead_letters()[0]["args"] == ["damaged"]
    assert "damaged" not in sum(pipe.stuck().values(), [])  # the reconciler leaves it to people
    assert pipe.archive(good) == good and pipe.state.archived_records() == 10
    # Once its cause is fixed, people put it back and the pipeline finishes it.
    sql(pipe.state.url, "UPDATE batches SET root = %s WHERE id = 'damaged'", ("ab" * 32,))
    assert pipe.state.redrive("damaged") == "sealed"
    assert "damaged" in pipe.stuck()["sealed"]
    assert pipe.anchor([]) == ["damaged"]
    pipe.state.dead_letter("archive", [["damaged", "never-archived"]], "a letter still open")
    assert pipe.state.clear_dead_letters() == 0  # 'damaged' is not archived yet: both letters stay
    sql(pipe.state.url, "UPDATE batches SET state = 'archived' WHERE id = 'damaged'")  # (it has no records)
    assert pipe.state.clear_dead_letters() == 1  # the damaged batch's own letter is resolved now
    assert [d["error"] for d in pipe.state.dead_letters()] == ["a letter still open"]
    assert pipe.state.clear_dead_letters(everything=True) == 1 and pipe.state.dead_letters() == []


def test_the_log_refuses_one_batch_id_with_two_entries(pipe):
    from pipelines.core.logentry import batch_entry
    from pipelines.errors import ConflictError

    a = batch_entry("b", b"\x01" * 32, 1, "2026-11-28T12:00:00Z")
    b = batch_entry("b", b"\x02" * 32, 1, "2026-11-28T12:00:00Z")
    with pytest.raises(ConflictError, match="twice"):
        pipe.ledger.append([("b", a), ("b", b)])
    assert pipe.ledger.append([("b", a), ("b", a)]) == {"b": 0}


def test_a_batch_whose_worker_died_is_stuck_at_once_and_a_working_one_is_not(pipe, monkeypatch):
    from pipelines.stages import batches as stages
    from pipelines.state import postgres

    accept(pipe, "agency-a", 5)
    pipe.state.claim("leased", "agency-a", 1000, 0.0, "2026-11-28T12:00:00Z")  # a sealer holds it now
    assert "leased" not in pipe.stuck()["claimed"]  # young, and its lease is live
    sql(pipe.state.url, "UPDATE batches SET lease_until = 1 WHERE id = 'leased'")  # its sealer died
    assert pipe.stuck()["claimed"] == ["leased"]
    monkeypatch.setattr(stages, "LEASE_MS", 300)
    monkeypatch.setattr(postgres, "LEASE_MS", 300)
    import time

    with pipe._held(["leased"]):  # a worker at work renews the lease every 100 ms
        time.sleep(0.6)
        assert pipe.state.expired_leases("claimed") == []
    time.sleep(0.5)  # ... and once it stops, the lease runs out
    assert pipe.state.expired_leases("claimed") == ["leased"]
    pipe.seal("leased")  # a stage change releases the lease
    assert pipe.state.expired_leases("sealed") == [] and "leased" not in pipe.stuck()["sealed"]


def test_a_stuck_stage_is_said_once_a_minute_naming_its_oldest_batch(pipe, caplog, monkeypatch):
    """The archiver dead: its oldest batch waits past the budget; the reconciler's pass says so in one WARNING,
    and not again until a minute has passed."""
    import logging

    from pipelines.stages import batches

    accept(pipe, "agency-a", 3)
    pipe.seal_ripe()
    pipe.anchor(pipe.state.in_stage("sealed"))  # anchored, never archived
    (batch_id,) = pipe.state.in_stage("anchored")
    pipe.warn_stuck()  # not yet past the budget: nothing
    sql(pipe.state.url, "UPDATE batches SET updated_ms = updated_ms - 60000 WHERE id = %s", (batch_id,))
    clock = [1000.0]
    monkeypatch.setattr(batches.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="anchorpipe"):
        pipe.warn_stuck()
        pipe.warn_stuck()
        clock[0] += 61
        pipe.warn_stuck()
    lines = [r for r in caplog.records if getattr(r, "event", None) == "stuck"]
    assert len(lines) == 2 and all(r.levelname == "WARNING" for r in lines)
    assert lines[0].stage == "archive" and lines[0].batch == batch_id and lines[0].seconds >= 60
    assert f"batch {batch_id}" in lines[0].getMessage() and "archive stage is stuck" in lines[0].getMessage()

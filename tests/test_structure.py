"""Structural defects found while giving pipelines/ its rooms, each pinned by a test."""

from __future__ import annotations

import json
import secrets
import threading
import time
import warnings

import pytest

from pipelines.archive import directory
from pipelines.config import Settings
from pipelines.core.commitment import content_sha256
from pipelines.core.note import Signer
from pipelines.runtime import Runtime
from pipelines.state.redis import RedisState
from tests.faults import FaultyStore


class ConcurrencyStore(FaultyStore):
    """Records how many directory shard merges run at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.active = self.peak = 0
        self.counter = threading.Lock()

    def get_versioned(self, key):
        with self.counter:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.002)  # a network round trip, so that overlapping merges overlap here too
            return super().get_versioned(key)
        finally:
            with self.counter:
                self.active -= 1


def test_directory_updates_run_a_bounded_number_of_merges_at_once():
    store = ConcurrencyStore()
    entries = [(f"agency-{a}", f"rec-{i}", (f"batch-{a}", i * 10, 9)) for a in range(12) for i in range(200)]
    written = directory.update_directory(store, entries)
    assert written == 12 * 16  # every shard of every agency was written ...
    assert 1 < store.peak <= directory.MAX_PARALLEL_SHARDS  # ... by a bounded pool, not a thread per shard
    for a, rid, loc in entries[::97]:
        shard = json.loads(store.get(directory.shard_key(a, rid)))
        assert tuple(shard["entries"][rid]) == loc


def _runtime(tmp_path, key_text: str) -> Runtime:
    key_file = tmp_path / "log.key"
    key_file.write_text(key_text)
    return Runtime(Settings(redis_url="redis://127.0.0.1:1/0", archive=str(tmp_path / "archive"),
                            log_key_file=str(key_file)))


def test_the_sequencer_closes_its_key_file(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log = _runtime(tmp_path, Signer.generate("example.gov/log").text() + "\n").sequencer
        assert log.head().checkpoint.size == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_the_sequencer_signs_with_every_key_of_a_rotation_file(tmp_path):
    old, new = Signer.generate("example.gov/log"), Signer.generate("example.gov/log")
    log = _runtime(tmp_path, f"{old.text()}\n{new.text()}\n").sequencer
    note = log.head().note
    for key in (old, new):  # a proof verifies under either pinned key while auditors move over
        from pipelines.core.checkpoint import open_checkpoint

        assert open_checkpoint(note, [key.verifier()], "example.gov/log").size == 0


def test_a_claim_with_an_orphan_entry_claims_the_rest_and_reports_it(clean_redis):
    state = RedisState.connect(clean_redis)
    state.accept("agency-a", [(f"r{i}", content_sha256(i), secrets.token_bytes(32)) for i in range(5)])
    state.r.lset("ap:pending:agency-a", 2, f"{int(time.time() * 1000)}\x1fnever-stored")
    claimed, orphans = state.claim("b1", "agency-a", 100, 0.0, "2026-11-29T00:00:00Z")
    assert claimed == 4 and len(orphans) == 1 and orphans[0].endswith("never-stored")
    assert state.pending_depth() == 0 and state.pending_agencies() == []
    assert [m.split("\x1f")[1] for m in state.r.lrange("ap:batch:b1:members", 0, -1)] == ["r0", "r1", "r3", "r4"]
    assert state.load_batch("b1").size == 4


def test_records_pending_in_the_old_single_list_are_moved_per_agency_and_sealed(clean_redis, tmp_path):
    """An upgrade keeps every record that an earlier version accepted but had not sealed yet."""
    state = RedisState.connect(clean_redis)
    state.accept("agency-a", [("a1", content_sha256(1), secrets.token_bytes(32))])
    ms = int(time.time() * 1000)
    for agency, rid in (("agency-a", "old-a"), ("agency-b", "old-b")):  # as the earlier version stored them
        state.r.hset(f"ap:rec:{agency}", rid, f"{content_sha256(rid).hex()}:{'00' * 32}:{ms}")
        state.r.rpush("ap:pending", f"{ms}\x1f{agency}\x1f{rid}")
    state.r.incrby("ap:pending_count", 0)
    assert state.upgrade_pending() == 2 and not state.r.exists("ap:pending")
    assert state.pending_depth() == 3 and state.pending_agencies() == ["agency-a", "agency-b"]
    claimed, _ = state.claim("b-a", "agency-a", 100, 0.0, "2026-11-29T00:00:00Z")
    assert claimed == 2 and state.upgrade_pending() == 0


@pytest.mark.parametrize("stage", ["sealed", "anchored", "archived"])
def test_advance_names_its_batch_without_slicing_key_names(clean_redis, stage):
    state = RedisState.connect(clean_redis)
    state.r.hset("ap:batch:x:y", mapping={"state": "claimed"})
    state.r.zadd("ap:stage:claimed", {"x:y": 1})
    assert state.advance("x:y", stage, archived_records=3)
    assert state.r.zscore("ap:stage:claimed", "x:y") is None
    assert (state.r.zscore(f"ap:stage:{stage}", "x:y") is not None) == (stage != "archived")


def test_the_redis_adapter_implements_the_whole_state_port(clean_redis):
    import inspect

    from pipelines.state import State

    state = RedisState.connect(clean_redis)
    assert isinstance(state, State)
    for name, member in inspect.getmembers(State, inspect.isfunction):
        if not name.startswith("_"):
            declared = list(inspect.signature(member).parameters)
            given = inspect.signature(getattr(RedisState, name)).parameters
            assert list(given)[:len(declared)] == declared, name  # the port's parameters, in order ...
            extra = list(given.values())[len(declared):]
            assert all(p.default is not p.empty for p in extra), name  # ... and only optional ones beyond

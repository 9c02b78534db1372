"""The PostgreSQL state adapter: claims that never overlap or wait, compare-and-swap stages, the whole port implemented, accepts that never deadlock."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from pipelines.storage import MAX_OBJECT_BYTES
from pipelines.core.commitment import content_sha256
from pipelines.state.postgres import PostgresState
from tests.conftest import sql
from tests.support.faults import FaultyStore


class ConcurrencyStore(FaultyStore):
    """Records how many directory shard merges run at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.active = self.peak = 0
        self.counter = threading.Lock()

    def get_versioned(self, key, limit=MAX_OBJECT_BYTES):
        with self.counter:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.002)  # a network round trip, so that overlapping merges overlap here too
            return super().get_versioned(key, limit)
        finally:
            with self.counter:
                self.active -= 1


def test_concurrent_claims_take_disjoint_records_and_never_wait(db):
    """Two sealers claiming the same agency at once: each batch gets its own records, none twice."""
    import threading

    state = PostgresState.connect(db)
    state.accept("agency-a", [(f"r{i:03}", content_sha256(i), secrets.token_bytes(32)) for i in range(300)])
    sizes: dict[str, int] = {}

    def claim(b: str) -> None:
        sizes[b] = state.claim(b, "agency-a", 100, 0.0, "2026-11-29T00:00:00Z")[0]

    threads = [threading.Thread(target=claim, args=(f"b{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sizes.values()) == [0, 100, 100, 100]
    leaves = [c.record_id for b, n in sizes.items() if n for c in state.load_batch(b).commitments]
    assert sorted(leaves) == [f"r{i:03}" for i in range(300)]  # every record in exactly one batch
    assert state.pending_depth() == 0 and state.pending_agencies() == []


def test_a_batch_is_claimed_oldest_first_and_only_when_ripe(db):
    state = PostgresState.connect(db)
    state.accept("agency-a", [(f"r{i}", content_sha256(i), secrets.token_bytes(32)) for i in range(3)])
    assert state.claim("b0", "agency-a", 10, 60.0, "2026-11-29T00:00:00Z") == (0, [])  # not full, not old
    assert state.pending_agencies() == ["agency-a"] and state.batch("b0") is None
    assert state.claim("b1", "agency-a", 2, 60.0, "2026-11-29T00:00:00Z") == (2, [])  # full
    assert [c.record_id for c in state.load_batch("b1").commitments] == ["r0", "r1"]
    assert state.claim("b2", "agency-a", 2, 0.0, "2026-11-29T00:00:00Z") == (1, [])  # old enough


@pytest.mark.parametrize("stage", ["sealed", "anchored", "archived"])
def test_advance_is_a_compare_and_swap_on_the_stage(db, stage):
    state = PostgresState.connect(db)
    sql(db, "INSERT INTO batches (id, agency, state, sealed_at, size, created_ms, updated_ms) "
        "VALUES ('x:y', 'a', 'claimed', 't', 3, 1, 1)")
    assert not state.advance("x:y", stage, expect="sealed")  # not in the expected stage: nothing changes
    assert state.advance("x:y", stage, archived_records=3)
    assert not state.advance("x:y", stage, archived_records=3)  # a re-run counts nothing twice
    assert state.in_stage("claimed") == []
    assert state.in_stage(stage) == ([] if stage == "archived" else ["x:y"])
    assert state.archived_records() == (3 if stage == "archived" else 0)
    assert not state.advance("x:y", "failed") if stage == "archived" else state.advance("x:y", "failed")


def test_the_postgres_adapter_implements_the_whole_state_port(db):
    import inspect

    from pipelines.state import State

    state = PostgresState.connect(db)
    assert isinstance(state, State)
    for name, member in inspect.getmembers(State, inspect.isfunction):
        if not name.startswith("_"):
            declared = list(inspect.signature(member).parameters)
            given = inspect.signature(getattr(PostgresState, name)).parameters
            assert list(given)[:len(declared)] == declared, name  # the port's parameters, in order ...
            extra = list(given.values())[len(declared):]
            assert all(p.default is not p.empty for p in extra), name  # ... and only optional ones beyond


def test_concurrent_accepts_of_overlapping_records_never_deadlock_and_agree(db):
    """Four callers accept the same ids in different orders at once: one salt per id, told to all."""
    import random
    import threading

    state = PostgresState.connect(db)
    ids = [f"r{i}" for i in range(2000)]
    results: list[dict[str, bytes]] = []
    errors: list[BaseException] = []

    def accept(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        try:
            got = state.accept("agency-a", [(rid, content_sha256(rid), secrets.token_bytes(32)) for rid in order])
            results.append({a.id: a.salt for a in got})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=accept, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert all(r == results[0] for r in results)  # every caller was told the one stored salt
    assert sql(db, "SELECT count(*) FROM records") == [(2000,)]

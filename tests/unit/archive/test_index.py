"""The archive index (an LSM on object storage): lookups in a fixed number of GETs, flat write cost per
round, compaction that loses nothing even when it races archive rounds."""

from __future__ import annotations

import json

import pytest

from pipelines.archive import index
from pipelines.errors import ConflictError
from tests.system.test_stages import CountingStore


class MeteredStore(CountingStore):
    """Counts GETs (as the stage tests do) and the bytes written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def _write(self, key, data, check):
        super()._write(key, data, check)
        self.written += len(data)


def rows(start: int, n: int, batch: str = "b") -> list[tuple[str, tuple[str, int, int]]]:
    return [(f"rec-{i}", (f"{batch}-{i // 1000}", i * 7, 6)) for i in range(start, start + n)]


@pytest.fixture
def small_levels(monkeypatch):
    """Level sizes scaled down 100×, so a few hundred thousand entries exercise every level."""
    monkeypatch.setattr(index, "L0_MAX_ENTRIES", 1_000)
    monkeypatch.setattr(index, "PAGE_ENTRIES", 64)


def fill(store: MeteredStore, rounds: int, per_round: int, start: int = 0) -> int:
    """Archive ``rounds`` rounds, compacting whenever a round says so (as the compact task does)."""
    for r in range(rounds):
        if index.add_round(store, "dept-a", rows(start + r * per_round, per_round)):
            index.compact(store, "dept-a")
    return start + rounds * per_round


def test_every_record_is_found_at_every_level_in_at_most_three_gets(small_levels):
    store = MeteredStore()
    end = fill(store, 303, 250)  # 75,750 entries: level 2, level 1 and level 0 all hold some
    manifest = json.loads(store.objects["ids/dept-a/manifest.json"])
    directory = json.loads(store.objects[manifest["directory"]])
    assert manifest["l0"] and directory["l1"]["n"] and directory["l2"]["n"] > 50_000
    worst = 0
    for i in range(0, end, 37):
        store.gets = 0
        assert index.lookup(store, "dept-a", f"rec-{i}") == (f"b-{i // 1000}", i * 7, 6)
        worst = max(worst, store.gets)
    assert worst <= 4  # 3, plus a Bloom filter's rare false positive; the bundle makes 4 (or 5)
    store.gets = 0
    assert index.lookup(store, "dept-a", "never-archived") is None and store.gets <= 4


def test_bytes_written_per_round_do_not_grow_with_history(small_levels):
    store = MeteredStore()
    for _ in range(3):
        index.add_round(store, "dept-a", rows(0, 250))  # (re-indexing the same records: same size)
    store.written = 0
    index.add_round(store, "dept-a", rows(10_000_000, 250))
    young = store.written
    fill(store, 400, 250, start=100)  # 100,000 entries of history
    index.compact(store, "dept-a")
    store.written = 0
    index.add_round(store, "dept-a", rows(20_000_000, 250))
    old = store.written
    assert old < 1.5 * young, (young, old)  # the round's run and a manifest bounded by level 0's size


def test_a_round_added_while_compaction_runs_is_kept(small_levels):
    store = MeteredStore()
    fill(store, 3, 250)
    raced = []

    def add_during_compaction(key: str) -> None:
        if key.startswith("ids/dept-a/dir/") and not raced:  # compaction wrote its runs, not yet the manifest
            raced.append(True)
            index.add_round(store, "dept-a", rows(5_000, 10))

    store.before_write = add_during_compaction
    assert index.compact(store, "dept-a")
    store.before_write = None
    assert raced and index.lookup(store, "dept-a", "rec-5003") == ("b-5", 5003 * 7, 6)
    assert index.lookup(store, "dept-a", "rec-1") == ("b-0", 7, 6)


def test_a_repeated_round_is_harmless_and_compaction_merges_it_away(small_levels):
    store = MeteredStore()
    index.add_round(store, "dept-a", rows(0, 100))
    index.add_round(store, "dept-a", rows(0, 100))  # an archive round retried after a crash
    assert index.compact(store, "dept-a") == {"l1": 100}
    assert index.lookup(store, "dept-a", "rec-42") == ("b-0", 42 * 7, 6)


def test_one_id_indexed_at_two_locations_stops_compaction_loudly(small_levels):
    store = MeteredStore()
    index.add_round(store, "dept-a", rows(0, 10))
    index.add_round(store, "dept-a", [("rec-3", ("another-batch", 0, 5))])
    with pytest.raises(ConflictError, match="rec-3"):
        index.compact(store, "dept-a")
    assert index.lookup(store, "dept-a", "rec-4") == ("b-0", 28, 6)  # the manifest is unchanged


def test_the_bloom_filter_has_no_false_negatives_and_few_false_positives():
    ids = [f"id-{i}" for i in range(5_000)]
    f = index.bloom(ids, len(ids))
    assert all(index.in_bloom(f, i) for i in ids)
    false = sum(index.in_bloom(f, f"other-{i}") for i in range(20_000))
    assert false < 20_000 * 0.005

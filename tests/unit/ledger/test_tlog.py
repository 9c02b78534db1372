"""The built-in log: tiles an outside auditor can read, crash safety, no forks."""

from __future__ import annotations

import base64
import threading

import pytest

from pipelines.core import merkle, tiles
from pipelines.core.checkpoint import open_checkpoint
from pipelines.core.logentry import batch_entry, parse_batch_entry
from pipelines.core.note import Signer
from pipelines.errors import ConflictError, VerificationError
from pipelines.ledger.tlog import CHECKPOINT, LogStateError, TransparencyLog
from pipelines.storage.local import LocalStore
from tests.support.faults import Crash, FaultyStore
from tests.support.reference import ReferenceTree

SIGNER = Signer.generate("test.example/log")


def items(start: int, count: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(start, start + count):
        bid = f"batch-{i:07d}"
        out.append((bid, batch_entry(bid, merkle.leaf_hash(b"%d" % i), i % 1000 + 1, "2026-11-28T12:00:00Z")))
    return out


def audit(objects: dict[str, bytes] | None, read) -> tuple[int, list[bytes]]:
    """An outside auditor's reading: knows only the C2SP specs and the verifier key.

    Reads the checkpoint, every level-0 tile and entry bundle, rebuilds the tree
    from the entries, and checks the root. Returns (size, entries).
    """
    note = read("checkpoint").decode()
    cp = open_checkpoint(note, [SIGNER.verifier()])
    entries, leaf_hashes = [], []
    for n in range(-(-cp.size // 256)):
        width = min(256, cp.size - n * 256)
        suffix = "" if width == 256 else f".p/{width}"
        index = "/".join(
            [f"x{int(g):03d}" for g in f"{n:,}".split(",")[:-1]] + [f"{int(f'{n:,}'.split(',')[-1]):03d}"]
        )
        bundle, pos = read(f"tile/entries/{index}{suffix}"), 0
        while pos < len(bundle):
            length = int.from_bytes(bundle[pos:pos + 2], "big")
            entries.append(bundle[pos + 2:pos + 2 + length])
            pos += 2 + length
        tile = read(f"tile/0/{index}{suffix}")
        leaf_hashes += [tile[i:i + 32] for i in range(0, len(tile), 32)]
    assert len(entries) == cp.size
    ref = ReferenceTree(entries)
    assert [merkle.leaf_hash(e) for e in entries] == leaf_hashes
    if cp.size:
        assert ref.mth(0, cp.size) == cp.root
    return cp.size, entries


@pytest.mark.parametrize("steps", [[255, 1, 1], [256, 65280, 4464]])
def test_auditor_recomputes_the_root_from_tiles_across_boundaries(steps):
    """Sizes 255, 256, 257 and 256, 65,536, 70,000."""
    store = FaultyStore()
    log = TransparencyLog.create(store, [SIGNER])
    done = 0
    for count in steps:
        log.append(items(done, count))
        done += count
        size, entries = audit(store.objects, store.objects.__getitem__)
        assert size == done and entries == [e for _, e in items(0, done)]
    # Level-1 tiles hold the roots of each 256-leaf subtree.
    if done >= 65536:
        level1 = store.objects["tile/1/000"]
        first = [merkle.leaf_hash(e) for _, e in items(0, 256)]
        assert level1[:32] == merkle.Tree(first).root
        assert "tile/2/000.p/1" in store.objects


def test_local_folder_log_is_readable_as_files(tmp_path):
    log = TransparencyLog.create(LocalStore(tmp_path), [SIGNER])
    log.append(items(0, 300))
    size, _ = audit(None, lambda key: (tmp_path / key).read_bytes())
    assert size == 300
    assert (tmp_path / "tile/0/001.p/44").exists() and (tmp_path / "tile/0/000").exists()


def test_append_is_idempotent_per_batch():
    store = FaultyStore()
    log = TransparencyLog.create(store, [SIGNER])
    first = log.append(items(0, 5))
    again = log.append(items(0, 5) + items(5, 1))
    assert again == {**first, "batch-0000005": 5}
    assert log.head().checkpoint.size == 6
    bid, _ = items(3, 1)[0]
    with pytest.raises(ConflictError, match="different entry"):
        log.append([(bid, batch_entry(bid, b"\x00" * 32, 1, "2026-11-28T12:00:00Z"))])


def test_receipts_verify_against_the_checkpoint():
    store = FaultyStore()
    log = TransparencyLog.create(store, [SIGNER])
    log.append(items(0, 40))
    head = log.head()
    receipts = log.receipts([bid for bid, _ in items(0, 40)], head)
    for bid, entry in items(0, 40):
        r = receipts[bid]
        assert (r.type, r.origin, r.checkpoint) == ("tlog", head.checkpoint.origin, head.note)
        merkle.verify_inclusion(r.index, head.checkpoint.size, merkle.leaf_hash(entry),
                                [bytes.fromhex(h) for h in r.path], head.checkpoint.root)


def test_consistency_between_any_two_checkpoints():
    store = FaultyStore()
    log = TransparencyLog.create(store, [SIGNER])
    seen = []
    for count in (1, 3, 250, 7, 600):
        log.append(items(sum(c for c in (1, 3, 250, 7, 600)[: len(seen)]), count))
        seen.append(log.head().checkpoint)
    head = log.head()
    for old in seen:
        proof = log.consistency(old, head)
        merkle.verify_consistency(old.size, head.checkpoint.size, proof, old.root, head.checkpoint.root)


def _checkpoints(store: FaultyStore):
    return [open_checkpoint(d.decode(), [SIGNER.verifier()]) for k, d in store.writes if k == CHECKPOINT]


def _assert_no_fork(store: FaultyStore, log: TransparencyLog) -> None:
    head = log.head()
    for cp in _checkpoints(store):
        if 0 < cp.size <= head.checkpoint.size:
            merkle.verify_consistency(cp.size, head.checkpoint.size, log.tree(head.checkpoint.size)
                                      .consistency_proof(cp.size), cp.root, head.checkpoint.root)


def _write_keys_of_one_append(base: FaultyStore, new: list) -> list[str]:
    probe = base.copy()
    TransparencyLog.open(probe, [SIGNER]).append(new)
    return [k for k, _ in probe.writes]


@pytest.mark.parametrize("mode", ["lost", "persisted"])
def test_every_write_of_a_sequencing_step_can_fail(mode):
    """sunlight's TestSequenceErrors: fail each write, restart, lose nothing, sign no fork."""
    base = FaultyStore()
    TransparencyLog.create(base, [SIGNER]).append(items(0, 254))
    new = items(254, 5)  # crosses a tile boundary: a full and a partial tile, a new level-1 tile
    keys = _write_keys_of_one_append(base, new)
    assert {CHECKPOINT, "tile/0/000", "tile/0/001.p/3", "tile/1/000.p/1", "tile/entries/000"} <= set(keys)
    for position, key in enumerate(keys):
        store = base.copy()
        store.fail(key, mode, skip=keys[:position].count(key))
        with pytest.raises(Crash):
            TransparencyLog.open(store, [SIGNER]).append(new)
        restarted = TransparencyLog.open(store, [SIGNER])  # refuses to run if inconsistent
        indices = restarted.append(new)
        assert sorted(indices.values()) == list(range(254, 259)), key
        size, entries = audit(store.objects, store.objects.__getitem__)
        assert size == 259 and entries == [e for _, e in items(0, 259)], key
        _assert_no_fork(store, restarted)


def test_a_racing_sequencer_between_read_and_stage_causes_no_fork():
    store = FaultyStore()
    a = TransparencyLog.create(store, [SIGNER])
    a.append(items(0, 10))
    b = TransparencyLog.open(store, [SIGNER])
    fired = []

    def race(key: str) -> None:
        if key.startswith("anchorpipe/sequenced/") and not fired:
            fired.append(key)
            store.before_write = None
            b.append(items(100, 3))  # B wins the position A was about to take
            store.before_write = race

    store.before_write = race
    got = a.append(items(10, 4))
    store.before_write = None
    assert fired and sorted(got.values()) == [13, 14, 15, 16]
    assert a.head().checkpoint.size == 17
    _assert_no_fork(store, a)


def test_two_sequencer_threads_on_one_folder_produce_no_fork(tmp_path):
    store = LocalStore(tmp_path)
    TransparencyLog.create(store, [SIGNER])
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def worker(start: int) -> None:
        try:
            log = TransparencyLog.open(LocalStore(tmp_path), [SIGNER])
            for i in range(15):
                results.append(log.append(items(start + i * 2, 2)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    indices = [i for r in results for i in r.values()]
    assert sorted(indices) == list(range(60))
    size, entries = audit(None, lambda key: (tmp_path / key).read_bytes())
    assert size == 60 and len({parse_batch_entry(e)[0] for e in entries}) == 60


def test_open_refuses_a_log_whose_tiles_disagree():
    store = FaultyStore()
    TransparencyLog.create(store, [SIGNER]).append(items(0, 20))
    tile = bytearray(store.objects["tile/0/000.p/20"])
    tile[5] ^= 1
    store.objects["tile/0/000.p/20"] = bytes(tile)
    with pytest.raises(LogStateError, match="the checkpoint says"):
        TransparencyLog.open(store, [SIGNER])


def test_open_refuses_a_checkpoint_signed_by_another_key():
    store = FaultyStore()
    TransparencyLog.create(store, [SIGNER]).append(items(0, 2))
    with pytest.raises(VerificationError, match="not signed by any trusted key"):
        TransparencyLog.open(store, [Signer.generate("test.example/log")])
    lines = store.objects[CHECKPOINT].decode().split("\n")
    lines[1] = "3"
    store.objects[CHECKPOINT] = "\n".join(lines).encode()
    with pytest.raises(VerificationError, match="does not verify"):
        TransparencyLog.open(store, [SIGNER])


def test_tile_paths_follow_the_spec():
    assert tiles.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tiles.tile_path(2, 5, 8) == "tile/2/005.p/8"
    assert tiles.entries_path(1000) == "tile/entries/x001/000"
    assert tiles.entries_path(0, 255) == "tile/entries/000.p/255"
    assert base64.b64decode(base64.b64encode(tiles.bundle([b"a", b""]))) == b"\x00\x01a\x00\x00"

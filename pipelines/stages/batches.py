"""The pipeline's stages: seal, anchor, archive, upgrade, reconcile. Each takes ids and may run again safely.

Celery tasks (workers/tasks.py) call these and publish the next stage's task
only after the state it refers to is committed. The stages speak to the state,
the archive's object store and a ledger, through their adapters' methods only.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from pipelines.archive import bundle, index
from pipelines.core import merkle
from pipelines.core.anchors import Anchor, TlogAnchor, parse_anchor
from pipelines.core.batch import SealedBatch, new_batch_id, now_timestamp
from pipelines.core.checkpoint import parse_checkpoint_text
from pipelines.core.logentry import BatchHead
from pipelines.core.note import split_note
from pipelines.errors import AnchorpipeError, ConflictError, InputError
from pipelines.ledger import Ledger
from pipelines.ledger.tlog import Head, LogReader
from pipelines.ops import faultpoints, metrics
from pipelines.ops.logs import event
from pipelines.ops.monitoring import report_exception, report_message
from pipelines.ops.redact import redact
from pipelines.state import LEASE_MS, STAGES, now_ms
from pipelines.storage import ObjectStore

if TYPE_CHECKING:
    from pipelines.config import Settings
    from pipelines.stages.external import ExternalAnchoring
    from pipelines.state import PipelineState

#: Errors a batch's own data can cause: they fail that batch alone. (ConflictError is not transient.)
_BATCH_FAULTS = (ConflictError, InputError, ValueError)
_T = TypeVar("_T")
_R = TypeVar("_R")
SEAL_BUDGET_S = 5.0


@dataclass(frozen=True)
class _Anchored:
    """An anchored batch ready to archive: its tree, receipts, and its records' accept times."""

    batch: SealedBatch
    anchors: list[Anchor]
    times: list[int]


def _batch_id(item: BatchHead | _Anchored) -> str:
    return item.id if isinstance(item, BatchHead) else item.batch.id


#: The stage each batch state waits for.
AWAITS = {"claimed": "seal", "sealed": "anchor", "anchored": "archive"}
#: A stuck stage is said again (WARNING) at most this often (seconds), by each process running the reconciler.
STUCK_WARNING_EVERY_S = 60.0


@dataclass
class Pipeline:
    cfg: Settings
    state: PipelineState
    store: ObjectStore
    ledger: Ledger | Callable[[], Ledger]  # a ledger, or how to open it (only the sequencer needs one)
    log_store: ObjectStore | None = None  # the log's tiles, read to re-issue receipts under a later checkpoint
    external: ExternalAnchoring | Callable[[], ExternalAnchoring] | None = None  # external rounds, if configured
    _warned: dict[str, float] = field(default_factory=dict)  # stage -> when (monotonic) it was last said stuck

    def _ledger(self) -> Ledger:
        if not hasattr(self.ledger, "anchor"):
            self.ledger = self.ledger()  # type: ignore[operator]
        return self.ledger  # type: ignore[return-value]

    def seal_ripe(self, sealed: list[str] | None = None) -> list[str]:
        """Claim and seal ripe batches, one agency per batch (full, or oldest record older than the interval).

        Agencies take turns, one batch each per pass, from a rotating start, so
        one agency's backlog never holds up another's records. Sealed batch ids
        are appended to ``sealed`` as they are sealed, so a caller can publish
        them even if a later claim fails.
        """
        sealed = [] if sealed is None else sealed
        deadline = time.monotonic() + SEAL_BUDGET_S
        agencies = self.state.pending_agencies()
        if agencies:
            start = secrets.randbelow(len(agencies))
            agencies = agencies[start:] + agencies[:start]
        while agencies and time.monotonic() < deadline:
            agencies = [a for a in agencies if time.monotonic() < deadline and self._seal_next(a, sealed)]
        return sealed

    def _seal_next(self, agency: str, sealed: list[str]) -> bool:
        """Claim and seal one ripe batch of ``agency``; False when none is ripe."""
        sealed_at = now_timestamp()
        batch_id = new_batch_id(sealed_at)
        claimed, orphans = self.state.claim(batch_id, agency, self.cfg.batch_max, self.cfg.batch_interval, sealed_at)
        if orphans:
            self.state.dead_letter("claim", orphans, "pending entries with no stored record")
            report_message(f"{len(orphans)} pending entries had no stored record; dead-lettered")
        if not claimed:
            return bool(orphans)
        # Commit point: the batch's members, salts and seal time are fixed in the state.
        faultpoints.reached("seal.claimed")
        self.seal(batch_id)
        sealed.append(batch_id)
        return True

    def reseal(self, batch_ids: list[str]) -> None:
        """Seal claimed batches a crashed sealer left behind; a batch whose own data is bad fails alone."""
        for b in batch_ids:
            try:
                self.seal(b)
            except _BATCH_FAULTS as exc:
                self._fail(b, "seal", exc)

    def seal(self, batch_id: str) -> None:
        """Compute a claimed batch's root and mark it sealed (a no-op once it is past that)."""
        info = self.state.batch(batch_id)
        if info is None or info.state != "claimed":
            return
        t = time.perf_counter()
        batch = self.state.load_batch(batch_id)
        if self.state.advance(batch_id, "sealed", expect="claimed", root=batch.root.hex()):
            metrics.SEALED.inc(batch.size)
            metrics.BATCH_SIZE.observe(batch.size)
            event("sealed", f"sealed batch {batch_id}", batch=batch_id, agency=batch.commitments[0].agency,
                  records=batch.size, seconds=round(time.perf_counter() - t, 3))
        metrics.STAGE_SECONDS.labels("seal").observe(time.perf_counter() - t)

    def anchor(self, batch_ids: list[str]) -> list[str]:
        """Anchor the given and every other sealed batch in the ledger; return those now anchored."""
        t = time.perf_counter()
        heads = []
        for b in dict.fromkeys(batch_ids + self.state.in_stage("sealed")):
            info = self.state.batch(b)
            if info is None or info.state != "sealed":
                continue
            try:
                head = BatchHead(b, bytes.fromhex(info.root or ""), info.size, info.sealed_at)
                head.entry()  # checks the head's fields
            except (KeyError, ValueError) as exc:  # a damaged batch must not hold the others back
                self._fail(b, "anchor", exc)
                continue
            heads.append(head)
        ledger = self._ledger() if heads else None  # a ledger that cannot open is no batch's fault
        with self._held([h.id for h in heads]):
            receipts = self._each_alone_on_failure("anchor", heads, lambda hs: ledger.anchor(hs))  # type: ignore[union-attr]
        if receipts:
            faultpoints.reached("anchor.appended")
        sizes = {h.id: h.size for h in heads}
        for b, receipt in receipts.items():
            if self.state.advance(b, "anchored", expect="sealed", anchor=receipt.model_dump_json(),
                                  log_index=receipt.index):
                metrics.BATCHES_ANCHORED.inc()
                event("anchored", f"anchored batch {b} in the log", batch=b, records=sizes.get(b),
                      batches_in_checkpoint=len(receipts), seconds=round(time.perf_counter() - t, 3))
        metrics.STAGE_SECONDS.labels("anchor").observe(time.perf_counter() - t)
        return list(receipts)

    def archive(self, batch_ids: list[str], compact_due: list[str] | None = None) -> list[str]:
        """Archive every proof of the given anchored batches; return those now archived. Agencies whose
        index is due for compaction are appended to ``compact_due``."""
        t = time.perf_counter()
        ready = []
        for b in dict.fromkeys(batch_ids):
            info = self.state.batch(b)
            if info is None or info.state != "anchored":
                continue
            try:
                batch, times = self.state.load_batch_with_times(b)
                ready.append(_Anchored(batch, [parse_anchor(info.anchor or "")], times))
            except (KeyError, ValueError) as exc:
                self._fail(b, "archive", exc)
        due: set[str] = set()
        with self._held([a.batch.id for a in ready]):
            done = self._each_alone_on_failure("archive", ready, lambda items: self._archive_round(items, due))
        if compact_due is not None:
            compact_due += sorted(due)
        # Commit point: every proof is archived and findable; only then is the batch done.
        now = now_ms()
        for b, (times, key, offsets) in done.items():
            if self.state.advance(b, "archived", archived_records=len(times), expect="anchored", bundle=key,
                                  offsets=offsets):
                for ms in times:
                    metrics.ACCEPT_TO_ARCHIVED.observe((now - ms) / 1000)
                metrics.ARCHIVED.inc(len(times))
                event("archived", f"archived batch {b}", batch=b, agency=key.split("/")[1], records=len(times),
                      bytes=offsets[-1], oldest_wait_seconds=round((now - min(times)) / 1000, 3) if times else 0,
                      seconds=round(time.perf_counter() - t, 3))
        metrics.STAGE_SECONDS.labels("archive").observe(time.perf_counter() - t)
        return list(done)

    def _archive_round(self, ready: list[_Anchored], due: set[str]) -> dict[str, tuple[list[int], str, list[int]]]:
        """Write the bundles, then one index run per agency, of ``ready``; return each batch's accept times,
        bundle key and the byte offset of each leaf's proof in it (with the bundle's size last)."""
        entries: dict[str, list[tuple[str, bundle.Location]]] = {}
        out = {}
        for a in ready:
            key, locations, size = bundle.write_batch(self.store, a.batch, a.anchors)
            for c, loc in zip(a.batch.commitments, locations, strict=True):
                entries.setdefault(c.agency, []).append((c.record_id, loc))
            out[a.batch.id] = (a.times, key, [loc[1] for loc in locations] + [size])
        faultpoints.reached("archive.bundled")
        for agency, rows in entries.items():
            if index.add_round(self.store, agency, rows):
                due.add(agency)
        faultpoints.reached("archive.indexed")
        return out

    def external_tick(self) -> list[str]:
        """Move the external anchoring round on (pipelines.stages.external); when one closed, the batches it gives
        more anchors, for :meth:`upgrade`."""
        if self.external is None:
            return []
        if not hasattr(self.external, "tick"):
            self.external = self.external()  # type: ignore[operator]
        closed = self.external.tick()  # type: ignore[union-attr]
        return self.state.upgradable() if closed else []

    def upgrade(self, batch_ids: list[str]) -> list[str]:
        """Upgrade the proofs of archived batches under the newest closed external round covering them: the
        log receipt under the round's checkpoint (its path read from the tiles) plus the round's external
        receipts, written once as the batch's anchors object beside its bundle (which stays as it is), then
        recorded. Idempotent; return those done."""
        t = time.perf_counter()
        if self.log_store is None:
            raise InputError("upgrading proofs needs the log's store")
        reader = LogReader(self.log_store, [])
        todo = {b: found for b in dict.fromkeys(batch_ids) if (found := self.state.upgrade_for(b)) is not None}
        paths: dict[str, TlogAnchor] = {}
        for size in {rnd.size for _, rnd in todo.values()}:  # the log's tiles read once per round
            rnd = next(r for _, r in todo.values() if r.size == size)
            cp = parse_checkpoint_text(split_note(rnd.note)[0])
            paths.update(reader.receipts([b for b, (_, r) in todo.items() if r.size == size], Head(cp, rnd.note, "")))
        done = []
        for b, (info, rnd) in todo.items():
            receipts = sorted((parse_anchor(tg.receipt) for tg in rnd.targets if tg.receipt),
                              key=lambda r: ("tlog", "tsa", "evm").index(r.type))
            cp = parse_checkpoint_text(split_note(rnd.note)[0])
            tlog = paths[b]
            # Never archive a receipt that does not verify: the batch's entry is at its index under the root.
            head = BatchHead(b, bytes.fromhex(info.root or ""), info.size, info.sealed_at)
            merkle.verify_inclusion(tlog.index, cp.size, merkle.leaf_hash(head.entry()),
                                    [bytes.fromhex(h) for h in tlog.path], cp.root)
            key = bundle.anchors_key(info.agency, b, rnd.size)
            self.store.put_immutable(key, bundle.anchors_document(b, [tlog, *receipts]))
            faultpoints.reached("upgrade.written")
            kinds = sorted(set(rnd.kinds))  # the confirmed external kinds, and "witness" if it had the quorum
            # Commit point: the batch's proofs are upgraded; readers that go by the state now use the object.
            if self.state.mark_upgraded(b, rnd.size, kinds, set(kinds) >= self.cfg.upgrade_kinds, key):
                metrics.UPGRADED.inc(info.size)
                done.append(b)
                event("upgraded", f"upgraded batch {b} with {', '.join(kinds)}", batch=b, records=info.size,
                      log_size=rnd.size, kinds=kinds, seconds=round(time.perf_counter() - t, 3))
        metrics.STAGE_SECONDS.labels("upgrade").observe(time.perf_counter() - t)
        return done

    def compact(self, agency: str) -> dict[str, int]:
        """Compact ``agency``'s archive index (merge its level-0 runs); see :mod:`pipelines.archive.index`."""
        t = time.perf_counter()
        stats = index.compact(self.store, agency)
        metrics.STAGE_SECONDS.labels("compact").observe(time.perf_counter() - t)
        if stats:
            event("compacted", f"compacted the archive index of {agency}", agency=agency,
                  merged=stats, seconds=round(time.perf_counter() - t, 3))
        return stats

    def _each_alone_on_failure(self, stage: str, items: list[_T], run: Callable[[list[_T]], dict[str, _R]]
                               ) -> dict[str, _R]:
        """``run(items)`` as one round; on an error that a batch's own data can cause (a conflict, bad
        input), each item alone, so only the batch at fault is dead-lettered (once) and the others go
        on. Everything else (transient, or a fault of the whole deployment) propagates untouched."""
        if not items:
            return {}
        try:
            return run(items)
        except _BATCH_FAULTS as exc:
            if len(items) == 1:
                self._fail(_batch_id(items[0]), stage, exc)
                return {}
        out: dict[str, _R] = {}
        for item in items:
            try:
                out.update(run([item]))
            except _BATCH_FAULTS as exc:
                self._fail(_batch_id(item), stage, exc)
        return out

    def _fail(self, batch_id: str, stage: str, exc: Exception) -> None:
        """Dead-letter one batch (a permanent error), report it, and let the rest of the work go on.

        The batch leaves its stage (state ``failed``), so the reconciler never re-sends it;
        ``anchorpipe dead-letters redrive`` puts it back once its cause is fixed.
        """
        if self.state.fail_batch(batch_id, stage, redact(f"{type(exc).__name__}: {exc}")):
            metrics.DEAD_LETTERS.labels(stage).inc()
            report_exception(exc)

    def warn_stuck(self) -> None:
        """One WARNING line a minute for each stage whose oldest batch has waited past ``stuck_after``, naming
        the batch: re-driving did not move it (a dead archiver, say)."""
        now, clock = now_ms(), time.monotonic()
        for state, (batch_id, since) in self.state.oldest_batches().items():
            waited = (now - since) / 1000
            if waited > self.cfg.stuck_after and clock - self._warned.get(state, -STUCK_WARNING_EVERY_S) >= \
                    STUCK_WARNING_EVERY_S:
                self._warned[state] = clock
                event("stuck", f"the {AWAITS[state]} stage is stuck: batch {batch_id} has waited {waited:.0f} s "
                      f"in state {state} (budget ANCHORPIPE_STUCK_AFTER={self.cfg.stuck_after:g} s); is a "
                      f"{AWAITS[state]} worker running?", level="warning", stage=AWAITS[state], batch=batch_id,
                      seconds=round(waited, 1))

    def stuck(self, everything: bool = False) -> dict[str, list[str]]:
        """Batches to send again, by stage: those whose worker died (its lease ran out) and those that
        stayed in one stage longer than 3/4 of ``stuck_after`` (a lost message; the reconciler runs every
        quarter of it, so each is sent again within ``stuck_after``); ``everything`` in flight after the
        broker lost its messages."""
        cutoff = None if everything else now_ms() - int(self.cfg.stuck_after * 750)
        return {s: list(dict.fromkeys(self.state.expired_leases(s) + self.state.in_stage(s, older_than_ms=cutoff)))
                for s in STAGES}

    @contextmanager
    def _held(self, batch_ids: list[str]) -> Iterator[None]:
        """Hold the batches' leases while the block runs (a thread renews them), so that if this worker
        dies its batches are taken up as soon as the lease runs out, not after ``stuck_after``."""
        if not batch_ids:
            yield
            return
        self.state.lease(batch_ids)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_MS / 3000):
                try:
                    self.state.lease(batch_ids)
                except AnchorpipeError:  # the stage's own calls meet the same fault and say so
                    pass

        renewer = threading.Thread(target=renew, name="lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()

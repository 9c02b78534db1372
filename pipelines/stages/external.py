"""External anchoring rounds: one log checkpoint at a time, to every configured TSA and chain.

A round opens when the log grew and ``ANCHORPIPE_EXTERNAL_INTERVAL`` passed since
the last one opened (and none is open): its checkpoint covers every batch
sequenced before it, so one transaction anchors them all. Each target then works
on it on every tick, independently (one failing never blocks another):

- a TSA (``tsa:<url>``) is asked for a token, with backoff on failure;
- the chain (``evm``) gets one signed transaction, recorded in the state before it
  is sent (a crash re-sends the same bytes, never a second transaction); it is
  re-sent while unmined (a node restart or a reorg dropped it), replaced at a
  higher fee with the same nonce once it waited ``ANCHORPIPE_EVM_REPLACE_AFTER``,
  and confirmed once ``ANCHORPIPE_EVM_CONFIRMATIONS`` blocks are on top of it.

The round closes when every target confirmed, or when every kind has one
confirmation and a minute passed, or at ``ANCHORPIPE_EXTERNAL_DEADLINE`` with
what confirmed; then the batches it covers are upgraded (pipelines.stages.batches).
Nothing here blocks sealing or archiving: proofs carry the log anchor meanwhile.

With witnesses configured (pipelines.stages.witnessing), a round anchors the newest
*cosigned* checkpoint, so upgraded proofs carry the cosignatures too, and a round
whose checkpoint reached the witness quorum counts ``witness`` among its kinds
(with witnesses and no external kind, rounds have no target and close at once:
they only bring the cosignatures to the proofs).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.note import split_note
from pipelines.errors import AnchorpipeError
from pipelines.ops import metrics
from pipelines.ops.logs import event
from pipelines.ops.monitoring import report_exception
from pipelines.ops.redact import redact
from pipelines.ledger import Chain, Signed, TimestampAuthority
from pipelines.state import Round, Target, now_ms

if TYPE_CHECKING:
    from pipelines.config import Settings
    from pipelines.ledger.tlog import Head
    from pipelines.state import AnchoringState

#: Once every kind has a confirmation, other targets (a second TSA) get this long before the round closes.
GRACE_MS = 60_000


def kind_of(target: str) -> str:
    return target.split(":", 1)[0]


@dataclass
class ExternalAnchoring:
    cfg: Settings
    state: AnchoringState
    head: Callable[[], Head | None]  # the checkpoint to anchor: the log's head, or its newest cosigned one
    tsas: list[TimestampAuthority]
    evm: Chain | None
    witnessed: Callable[[str], bool] = lambda note: False  # whether a checkpoint note has the witness quorum

    def targets(self) -> list[str]:
        return [f"tsa:{c.url}" for c in self.tsas] + (["evm"] if self.evm else [])

    def tick(self) -> bool:
        """Open a round if one is due, move every target of the open round on, close it when it is done.
        True when a round closed (its batches are then due for upgrade)."""
        rnd = self.state.open_round_now()
        if rnd is None:
            head = self.head()
            if head is None or head.checkpoint.size == 0 or not self.state.open_round(
                    head.checkpoint.size, head.note, self.targets(), int(self.cfg.external_interval * 1000)):
                return False
            rnd = self.state.open_round_now()
            if rnd is None:
                return False
            event("round_opened", f"anchoring log size {rnd.size} externally", size=rnd.size, targets=self.targets())
        for t in rnd.targets:
            if t.state in ("pending", "submitted") and now_ms() >= t.next_try_ms:
                try:
                    self._work(rnd, t)
                except AnchorpipeError as exc:
                    self._failed(rnd, t, exc)
        return self._maybe_close(rnd.size)

    def _maybe_close(self, size: int) -> bool:
        rounds = self.state.rounds(open_only=True)
        if not rounds or rounds[0].size != size:
            return False
        rnd = rounds[0]
        confirmed = {kind_of(t.target) for t in rnd.targets if t.state == "confirmed"}
        wanted = {kind_of(t.target) for t in rnd.targets}
        age = now_ms() - rnd.opened_ms
        if not (all(t.state == "confirmed" for t in rnd.targets)
                or (confirmed == wanted and age >= GRACE_MS)
                or (confirmed and age >= self.cfg.external_deadline * 1000)):
            return False
        if self.witnessed(rnd.note):
            confirmed.add("witness")
        if not self.state.close_round(rnd.size, sorted(confirmed)):
            return False
        for t in rnd.targets:
            if t.state != "confirmed":
                metrics.EXTERNAL_ANCHORS.labels(kind_of(t.target), "abandoned").inc()
        event("round_closed", f"log size {rnd.size} anchored: {', '.join(sorted(confirmed)) or 'nothing'}", size=rnd.size,
              kinds=sorted(confirmed), seconds=round(age / 1000, 3))
        return True

    def _work(self, rnd: Round, t: Target) -> None:
        if t.target.startswith("tsa:"):
            client = next((c for c in self.tsas if f"tsa:{c.url}" == t.target), None)
            if client is None:
                return  # a TSA removed from the settings since the round opened: the deadline closes it
            receipt = client.timestamp(rnd.note)
            self._confirmed(rnd, t, receipt.model_dump_json())
        elif self.evm is not None:
            self._work_evm(rnd, t, self.evm)

    def _confirmed(self, rnd: Round, t: Target, receipt: str) -> None:
        if self.state.update_target(rnd.size, t.target, t.state, state="confirmed", receipt=receipt, error=None):
            seconds = (now_ms() - rnd.opened_ms) / 1000
            metrics.EXTERNAL_ANCHORS.labels(kind_of(t.target), "confirmed").inc()
            metrics.EXTERNAL_CONFIRM_SECONDS.labels(kind_of(t.target)).observe(seconds)
            event("anchor_confirmed", f"{t.target} confirmed log size {rnd.size}", target=t.target, size=rnd.size,
                  seconds=round(seconds, 3))

    def _failed(self, rnd: Round, t: Target, exc: AnchorpipeError) -> None:
        """Back off (exponential, jittered, at most a minute) and say so; the round stays open."""
        attempts = t.attempts + 1
        delay = min(2.0 ** attempts, 60.0) * random.uniform(0.5, 1.0)
        error = redact(f"{type(exc).__name__}: {exc}")
        self.state.update_target(rnd.size, t.target, t.state, attempts=attempts, error=error,
                                 next_try_ms=now_ms() + int(delay * 1000))
        metrics.EXTERNAL_ANCHORS.labels(kind_of(t.target), "failed").inc()
        event("anchor_failed", f"{t.target}: {error}", level="warning", target=t.target, size=rnd.size,
              attempts=attempts, retry_in=round(delay, 1))
        if attempts == 1 or attempts % 20 == 0 or not exc.transient:
            report_exception(exc)

    def _work_evm(self, rnd: Round, t: Target, evm: Chain) -> None:
        text = split_note(rnd.note)[0]
        if t.state == "pending":
            signed = evm.sign(text, evm.next_nonce())
            # Commit point: the transaction is recorded before it is sent; whoever comes next sends these bytes.
            if self.state.update_target(rnd.size, t.target, "pending", state="submitted", txs=[_doc(signed)]):
                evm.send(signed.raw)
                metrics.EXTERNAL_ANCHORS.labels("evm", "sent").inc()
            return
        nonce = evm.next_nonce()  # read before the receipts: a nonce used after this is ours, found below
        for tx in reversed(t.txs):
            found = evm.mined(tx["hash"])
            if found is None:
                continue
            depth = evm.head() - found[0] + 1
            if depth >= self.cfg.evm_confirmations:
                self._confirmed(rnd, t, evm.receipt(tx["hash"], rnd.note, text).model_dump_json())
            else:
                self.state.update_target(rnd.size, t.target, "submitted",
                                         error=f"mined in block {found[0]}, {depth} of "
                                               f"{self.cfg.evm_confirmations} confirmations")
            return
        newest = t.txs[-1]  # none is mined (now): never yet, or a reorg or a node restart dropped it
        if nonce > newest["nonce"]:  # that nonce went to another transaction of this key: anchor at the next
            self._resign(rnd, t, evm, evm.sign(text, nonce), "its nonce was used by another transaction")
        elif now_ms() - newest["sent_ms"] > self.cfg.evm_replace_after * 1000:
            self._resign(rnd, t, evm, evm.sign(text, newest["nonce"], bump=_signed(newest)),
                         f"unmined after {self.cfg.evm_replace_after:.0f} s: replaced at a higher fee, same nonce")
        else:
            evm.send(bytes.fromhex(newest["raw"]))  # harmless when the node has it; back in the pool if not

    def _resign(self, rnd: Round, t: Target, evm: Chain, signed: Signed, why: str) -> None:
        if self.state.update_target(rnd.size, t.target, "submitted", txs=[*t.txs, _doc(signed)], error=why):
            evm.send(signed.raw)
            metrics.EXTERNAL_ANCHORS.labels("evm", "replaced").inc()
            event("anchor_replaced", f"evm transaction for log size {rnd.size}: {why}", level="warning",
                  size=rnd.size, nonce=signed.nonce, tx=signed.tx_hash)


def _doc(s: Signed) -> dict[str, Any]:
    return {"raw": s.raw.hex(), "hash": s.tx_hash, "nonce": s.nonce, "max_fee": s.max_fee, "tip": s.tip,
            "sent_ms": now_ms()}


def _signed(doc: dict[str, Any]) -> Signed:
    return Signed(bytes.fromhex(doc["raw"]), doc["hash"], doc["nonce"], doc["max_fee"], doc["tip"])



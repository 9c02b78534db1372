"""Witnessing: each new log checkpoint goes to every configured witness (C2SP tlog-witness), and is
published with the cosignatures it got.

Runs on its own tick (the ``witness`` queue), beside the log, never in its way:
the sequencer publishes checkpoints as before, and this stage follows the
newest. Each tick asks every witness not backing off, all at once, each with
``ANCHORPIPE_WITNESS_TIMEOUT``: a witness answering 409 gets the proof from the
size it holds, one that fails (down, slow, refusing) backs off (at most a
minute) and is counted and reported; then the checkpoint is published as
``anchorpipe/cosigned-checkpoint`` with whatever cosignatures came, and marked
as having reached the quorum (``ANCHORPIPE_WITNESS_QUORUM``) or not. External
anchoring rounds anchor that cosigned checkpoint, and upgraded proofs carry it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipelines.core.cosignature import WitnessKey, add_signature_lines, verify_cosignatures
from pipelines.errors import AnchorpipeError
from pipelines.ledger.tlog import Head, LogReader
from pipelines.ledger import Witness, WitnessConflict, WitnessError
from pipelines.ops import metrics
from pipelines.ops.logs import event
from pipelines.ops.monitoring import report_exception, report_message
from pipelines.ops.redact import redact


def quorum_met(note: str, witnesses: Sequence[WitnessKey], quorum: int) -> bool:
    """Whether ``note`` carries valid cosignatures by at least ``quorum`` of ``witnesses``."""
    try:
        return quorum > 0 and len(verify_cosignatures(note, witnesses)) >= quorum
    except AnchorpipeError:
        return False


@dataclass
class Witnessing:
    log: LogReader  # the log, read with its own verifier keys
    witnesses: list[Witness]
    quorum: int
    known: dict[str, int] = field(default_factory=dict)  # the size each witness holds, as last heard
    backoff: dict[str, tuple[int, float]] = field(default_factory=dict)  # failures in a row, next try (monotonic)

    def tick(self) -> Head | None:
        """Witness the log's newest checkpoint if it is newer than the one published; return it, cosigned."""
        head = self.log.head()
        published = self.log.cosigned()
        if head.checkpoint.size == 0 or (published and published.checkpoint.size >= head.checkpoint.size):
            return None
        due = [w for w in self.witnesses if self.backoff.get(w.name, (0, 0.0))[1] <= time.monotonic()]
        # Witnesses mostly hold the same size: each proof is read from the tiles once (a 409 reads its own).
        proofs = {old: self.log.consistency_proof(old, head) for old in {self.known.get(w.name, 0) for w in due}
                  if old <= head.checkpoint.size}
        lines: list[str | None] = []
        if due:
            with ThreadPoolExecutor(max_workers=len(due)) as pool:
                lines = list(pool.map(lambda w: self._ask(w, head, proofs), due))
        got = [line for line in lines if line]
        note = add_signature_lines(head.note, got)
        reached = len(got) >= self.quorum
        if not self.log.publish_cosigned(head, note):
            return None
        metrics.CHECKPOINTS_WITNESSED.labels("yes" if reached else "no").inc()
        metrics.WITNESSED_SIZE.set(head.checkpoint.size)
        event("checkpoint_witnessed", f"log size {head.checkpoint.size} cosigned by {len(got)} of "
              f"{len(self.witnesses)} witnesses ({'quorum' if reached else f'no quorum: {self.quorum} wanted'})",
              size=head.checkpoint.size, cosignatures=len(got), quorum=reached,
              level="info" if reached else "warning")
        return Head(head.checkpoint, note, "")

    def _ask(self, w: Witness, head: Head, proofs: dict[int, list[bytes]]) -> str | None:
        size = head.checkpoint.size
        for _ in range(3):
            old = self.known.get(w.name, 0)
            if old > size:
                self._failed(w, WitnessError(f"witness {w.name} holds size {old}, beyond the log's {size}: the log "
                                             "was reset or forked, or the witness saw another log of this origin"))
                return None
            started = time.perf_counter()
            try:
                proof = proofs[old] if old in proofs else self.log.consistency_proof(old, head)
                line = w.add_checkpoint(old, proof, head.note)
            except WitnessConflict as exc:
                if exc.size == old:  # same size, another root: the witness holds a checkpoint this log forked from
                    self._failed(w, WitnessError(f"witness {w.name} holds another root at size {old}: a fork"))
                    return None
                self.known[w.name] = exc.size  # retry with a proof from the size it holds
                continue
            except WitnessError as exc:
                self._failed(w, exc)
                return None
            except AnchorpipeError as exc:  # reading the log's tiles for the proof
                self._failed(w, WitnessError(str(exc), transient=exc.transient))
                return None
            metrics.WITNESS_SECONDS.labels(w.name).observe(time.perf_counter() - started)
            metrics.WITNESS_COSIGNED_SIZE.labels(w.name).set(size)
            self.known[w.name] = size
            self.backoff.pop(w.name, None)
            return line
        self._failed(w, WitnessError(f"witness {w.name} kept changing the size it holds"))
        return None

    def _failed(self, w: Witness, exc: WitnessError) -> None:
        attempts = self.backoff.get(w.name, (0, 0.0))[0] + 1
        delay = min(2.0 ** attempts, 60.0) * random.uniform(0.5, 1.0)
        self.backoff[w.name] = (attempts, time.monotonic() + delay)
        reason = "refused" if exc.status in (400, 403, 404, 409, 422) else "unavailable"
        metrics.WITNESS_FAILURES.labels(w.name, reason).inc()
        error = redact(str(exc))
        event("witness_failed", error, level="warning", witness=w.name, attempts=attempts, retry_in=round(delay, 1))
        if reason == "refused":  # the witness does not know this log, or says it forked: an operator must look
            report_message(f"witness {w.name} refused the log's checkpoint: {error}")
        elif attempts == 1 or attempts % 20 == 0:
            report_exception(exc)

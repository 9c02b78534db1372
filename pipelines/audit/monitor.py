"""``anchorpipe monitor``: follow a log, keep every checkpoint it shows, and raise an alert on a fork, a bad
signature, a lost witness quorum or a stall.

Each poll reads the log's checkpoint (and, with witnesses pinned, its newest
cosigned one), verifies the signature under the pinned key, and proves it
consistent with the last checkpoint the monitor kept (from its state folder, so
a restarted monitor carries on). Every new checkpoint is kept as a file: they
are the evidence. A checkpoint that does not extend the last one (a smaller
size, another root at the same size, a consistency proof that fails) is a
fork: the alert carries both checkpoints, each signed by the log's key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.audit.forks import Fork, check_saved
from pipelines.core.checkpoint import Checkpoint, open_checkpoint
from pipelines.core.cosignature import WitnessKey, verify_cosignatures
from pipelines.core.note import Verifier
from pipelines.errors import AnchorpipeError, LogStateError, VerificationError
from pipelines.ledger.tlog import LogReader

#: Alerts after which the monitor stops (the log can no longer be trusted); the others repeat while they last.
FATAL = ("fork", "bad-signature")


@dataclass(frozen=True)
class Alert:
    kind: str  # fork, bad-signature, no-quorum, stall, unreachable
    message: str
    evidence: str = ""

    def to_json(self, origin: str) -> dict[str, Any]:
        return {"kind": self.kind, "log": origin, "message": self.message, "evidence": self.evidence,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


@dataclass
class Monitor:
    reader: LogReader
    state: Path
    witnesses: list[WitnessKey] = field(default_factory=list)
    quorum: int = 0
    stall_after: float = 3600.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        (self.state / "checkpoints").mkdir(parents=True, exist_ok=True)

    def _load(self) -> dict[str, Any]:
        path = self.state / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, doc: dict[str, Any]) -> None:
        tmp = self.state / "state.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.state / "state.json")

    def keep(self, cp: Checkpoint, note: str, suffix: str = "") -> Path:
        """Keep a checkpoint seen, as evidence: one file per (size, root)."""
        path = self.state / "checkpoints" / f"{cp.size:012d}-{cp.root.hex()[:16]}{suffix}.note"
        if not path.exists():
            path.write_text(note)
        return path

    def poll(self) -> tuple[Checkpoint | None, list[Alert]]:
        """Check the log once; return its checkpoint (None if it could not be read) and the alerts raised."""
        doc = self._load()
        now = self.clock()
        try:
            head = self.reader.head()
        except VerificationError as exc:
            found = self.reader.store.get("checkpoint")
            return None, [Alert("bad-signature", f"the log's checkpoint does not verify under the pinned key: {exc}",
                                (found or b"").decode("utf-8", "replace"))]
        except (LogStateError, AnchorpipeError) as exc:
            return None, [Alert("unreachable", f"the log cannot be read: {exc}")]
        cp, alerts = head.checkpoint, []
        last = doc.get("last")
        kept = open_checkpoint(last, self.reader.verifiers) if last is not None else None
        if last is not None and kept is not None:
            try:
                forks = check_saved(self.reader, head, [("kept earlier", last)])[1]
            except (LogStateError, ValueError) as exc:  # the log's tiles cannot show it extends the kept one
                forks = [Fork(f"the log's checkpoint (size {cp.size}) does not extend it: {exc}",
                              ("kept earlier", last), ("served now", head.note))]
            if forks:
                return cp, [Alert("fork", f"{forks[0].what} (the one kept at size {kept.size})",
                                  forks[0].evidence())]
        self.keep(cp, head.note)
        grew = kept is None or cp.size != kept.size
        if grew:
            doc.update(last=head.note, changed=now, stalled=False)
        elif now - doc.get("changed", now) > self.stall_after and not doc.get("stalled"):
            alerts.append(Alert("stall", f"the log has stayed at size {cp.size} for "
                                         f"{now - doc['changed']:.0f} s (threshold {self.stall_after:.0f} s)"))
            doc["stalled"] = True
        if self.witnesses:
            alerts += self._witnessed(head.checkpoint)
        doc.setdefault("changed", now)
        self._save(doc)
        return cp, alerts

    def _witnessed(self, cp: Checkpoint) -> list[Alert]:
        cosigned = self.reader.cosigned()
        if cosigned is None:
            return [Alert("no-quorum", "the log publishes no cosigned checkpoint")]
        self.keep(cosigned.checkpoint, cosigned.note, ".cosigned")
        try:
            names = [c.witness for c in verify_cosignatures(cosigned.note, self.witnesses)]
        except VerificationError as exc:
            return [Alert("bad-signature", f"a pinned witness's cosignature does not verify: {exc}", cosigned.note)]
        if cosigned.checkpoint.size <= cp.size:
            try:
                self.reader.consistency(cosigned.checkpoint, self.reader.head())
            except VerificationError as exc:
                return [Alert("fork", f"the cosigned checkpoint and the log's disagree: {exc}", cosigned.note)]
        if len(names) < self.quorum:
            return [Alert("no-quorum", f"the newest cosigned checkpoint (size {cosigned.checkpoint.size}) has "
                                       f"{len(names)} of the {self.quorum} cosignatures required "
                                       f"({', '.join(names) or 'none'})")]
        return []


def monitor_for(reader_store: Any, log_keys: list[Verifier], state: Path, witnesses: list[WitnessKey],
                quorum: int | None, stall_after: float) -> Monitor:
    reader = LogReader(reader_store, log_keys, log_keys[0].name)
    need = (quorum or len(witnesses) // 2 + 1) if witnesses else 0
    return Monitor(reader, state, witnesses, need, stall_after)

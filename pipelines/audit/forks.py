"""Fork detection: checkpoints an auditor kept, held against the log's current one.

A log that shows two histories (a split view) signs two checkpoints that cannot both be true: two of one
size with different roots, or one that the log's newer checkpoint does not extend. Both are evidence only
when both verify under the log's pinned key, so a saved checkpoint that does not is refused, not reported.
Used by ``log consistency``, ``audit`` and ``monitor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from pipelines.core.checkpoint import Checkpoint, open_checkpoint
from pipelines.errors import VerificationError
from pipelines.ledger.tlog import Head, LogReader

#: Where the log's own checkpoint is said to come from in a fork's evidence.
CURRENT = "the log's current checkpoint"


@dataclass(frozen=True)
class Fork:
    """Two signed checkpoints of the log that cannot both be true: ``what`` says why; each side is
    (where it came from, its signed note)."""

    what: str
    first: tuple[str, str]
    second: tuple[str, str]

    def evidence(self) -> str:
        return "".join(f"--- {where}\n{note}" for where, note in (self.first, self.second))


@dataclass(frozen=True)
class Consistent:
    """A saved checkpoint the log's current one extends, with the checked consistency proof."""

    saved: str
    size: int
    proof: list[bytes]


def open_saved(reader: LogReader, saved: Sequence[tuple[str, str]]) -> dict[str, Checkpoint]:
    """Each saved (name, signed note), verified under the log's pinned keys; VerificationError naming the first
    that does not verify."""
    opened = {}
    for name, note in saved:
        try:
            opened[name] = open_checkpoint(note, reader.verifiers)
        except VerificationError as exc:
            raise VerificationError(f"{name}: {exc}", check=exc.check) from None
    return opened


def check_saved(reader: LogReader, head: Head, saved: Sequence[tuple[str, str]]
                ) -> tuple[list[Consistent], list[Fork]]:
    """Every saved checkpoint held against ``head`` (the log's current checkpoint, already verified) and
    against each other: the consistent ones with their proofs, and the forks found. A saved checkpoint
    not signed by the log's keys raises VerificationError naming it (it is no evidence of anything)."""
    notes = dict(saved)
    opened = open_saved(reader, saved)
    forks = [Fork(f"two checkpoints of size {a.size} with different roots", (na, notes[na]), (nb, notes[nb]))
             for (na, a), (nb, b) in combinations(opened.items(), 2)
             if a.origin == b.origin and a.size == b.size and a.root != b.root]
    consistent = []
    for name, old in opened.items():
        try:
            consistent.append(Consistent(name, old.size, reader.consistency(old, head)))
        except VerificationError as exc:
            forks.append(Fork(f"the log's checkpoint (size {head.checkpoint.size}) does not extend it: {exc}",
                              (name, notes[name]), (CURRENT, head.note)))
    return consistent, forks

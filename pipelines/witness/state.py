"""The witness's own state: per log, the latest checkpoint it cosigned, in an SQLite file.

Checking a request against the held checkpoint and recording the new one happen
in one ``BEGIN IMMEDIATE`` transaction (a compare-and-swap: no two requests, even
from two processes on the same file, interleave), committed with ``synchronous=FULL``
before the cosignature is made, so a crash at any moment never makes the witness
forget a size it cosigned. A refused checkpoint that proves the log forked (signed by
the log, of the size the witness holds, with another root) is kept as evidence with the
one it conflicts with: once each, at most :data:`MAX_FORKS` per log.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.core.checkpoint import Checkpoint
from pipelines.core.witness import Held, Refused
from pipelines.errors import StorageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY, origin TEXT NOT NULL, old INTEGER NOT NULL, note TEXT NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL);
"""


#: Fork evidence kept per log: enough to prove it, never a table that grows on anyone's say-so.
MAX_FORKS = 100


class WitnessState:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageError(f"witness state {self.path}: {exc}") from exc

    def held(self, origin: str) -> Held | None:
        row = self.db.execute("SELECT size, root FROM checkpoints WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else Held(row[0], bytes(row[1]))

    def advance(self, cp: Checkpoint, note: str, check: Callable[[Held | None], None]) -> None:
        """Run ``check`` on the held checkpoint of ``cp``'s log and, if it passes, record ``cp`` in its
        place, atomically and durably. ``check`` raises to refuse; nothing is changed then."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                try:
                    check(self.held(cp.origin))
                except Refused as exc:  # the held note, read in this transaction, for the evidence of a fork
                    row = self.db.execute("SELECT note FROM checkpoints WHERE origin = ?", (cp.origin,)).fetchone()
                    exc.held_note = row[0] if row else ""
                    raise
                self.db.execute(
                    "INSERT INTO checkpoints (origin, size, root, note, at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
                    "note = excluded.note, at = excluded.at",
                    (cp.origin, cp.size, cp.root, note, time.time()))
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"witness state {self.path}: {exc}", transient=True) from exc

    def keep_fork(self, origin: str, note: str, reason: str, held_note: str) -> bool:
        """Keep ``note`` (a checkpoint the log signed that conflicts with ``held_note``, the one held when it was
        refused) beside it, unless it is kept already or the log has MAX_FORKS; whether it was kept."""
        try:
            evidence = f"{reason}\n--- the checkpoint the witness cosigned at that size\n{held_note}"
            cur = self.db.execute(
                "INSERT INTO evidence (origin, old, note, reason, at) SELECT ?, 0, ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM evidence WHERE origin = ? AND note = ?) AND "
                "(SELECT count(*) FROM evidence WHERE origin = ?) < ?",
                (origin, note, evidence, time.time(), origin, note, origin, MAX_FORKS))
            return cur.rowcount == 1
        except sqlite3.Error as exc:
            raise StorageError(f"witness state {self.path}: {exc}", transient=True) from exc

    def evidence(self) -> list[tuple[str, int, str, str]]:
        rows = self.db.execute("SELECT origin, old, note, reason FROM evidence ORDER BY id").fetchall()
        return [tuple(r) for r in rows]

    def close(self) -> None:
        self.db.close()

"""External-anchoring state in PostgreSQL (part of :class:`~pipelines.state.postgres.PostgresState`).

``anchorings`` holds one row per round (the checkpoint every target anchors;
at most one open at a time, by a unique partial index), ``anchor_receipts`` each
target's progress on it, and ``batches`` (``log_index``, ``ext_size``,
``ext_kinds``, ``ext_done``) which external anchors each batch's newest proof
carries. Every change is a compare-and-swap: two workers running the same
round at once store one answer, and an EVM transaction is recorded before it is
sent, so a crash never signs a second one for the same round.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from pipelines.state import BatchInfo, Round, Target, now_ms
from pipelines.state.postgres_batches import BATCH_COLUMNS, batch_info


_UPGRADABLE = """
  b.state = 'archived' AND NOT b.ext_done AND b.log_index IS NOT NULL AND b.log_index < r.size
  AND (b.ext_kinds IS NULL OR (r.kinds @> b.ext_kinds AND NOT b.ext_kinds @> r.kinds))
"""


class AnchoringsInPostgres:
    """Mixed into PostgresState, whose ``tx`` (one transaction) it uses."""

    tx: Callable[[], AbstractContextManager[Any]]
    emit: Callable[..., None]  # WebhooksInPostgres.emit

    def open_round(self, size: int, note: str, targets: list[str], interval_ms: int) -> bool:
        """Open a round for the checkpoint of ``size`` if none is open, the last one is older than
        ``interval_ms`` and the log grew since; False if not (or another worker opened one first)."""
        now = now_ms()
        with self.tx() as conn:
            last = conn.execute("SELECT size, opened_ms, closed_ms FROM anchorings ORDER BY size DESC LIMIT 1"
                                ).fetchone()
            if last is not None and (last[2] is None or size <= last[0] or now - last[1] < interval_ms):
                return False
            if conn.execute("INSERT INTO anchorings (size, note, opened_ms) VALUES (%s, %s, %s) "
                            "ON CONFLICT DO NOTHING RETURNING 1", (size, note, now)).fetchone() is None:
                return False
            for t in targets:
                conn.execute("INSERT INTO anchor_receipts (size, target, state, updated_ms) "
                             "VALUES (%s, %s, 'pending', %s)", (size, t, now))
        return True

    def open_round_now(self) -> Round | None:
        """The open round with every target's progress; None when none is open."""
        rounds = self.rounds(open_only=True)
        return rounds[0] if rounds else None

    def rounds(self, limit: int = 1, open_only: bool = False) -> list[Round]:
        """The newest rounds, newest first."""
        with self.tx() as conn:
            rows = conn.execute("SELECT size, note, opened_ms, closed_ms, kinds FROM anchorings "
                                f"{'WHERE closed_ms IS NULL' if open_only else ''} ORDER BY size DESC LIMIT %s",
                                (limit,)).fetchall()
            out = []
            for size, note, opened, closed, kinds in rows:
                ts = conn.execute("SELECT size, target, state, receipt, txs, attempts, next_try_ms, error "
                                  "FROM anchor_receipts WHERE size = %s ORDER BY target", (size,)).fetchall()
                out.append(Round(size, note, opened, closed, list(kinds), [Target(*t) for t in ts]))
        return out

    def update_target(self, size: int, target: str, expect: str, **fields: Any) -> bool:
        """Compare-and-swap a target's fields (state, receipt, txs, attempts, next_try_ms, error) while it
        is in state ``expect``; stamps confirmed_ms when it becomes confirmed."""
        if "txs" in fields:
            fields["txs"] = json.dumps(fields["txs"])
        sets = ", ".join(f"{k} = %({k})s" for k in fields)
        extra = ", confirmed_ms = %(now)s" if fields.get("state") == "confirmed" else ""
        with self.tx() as conn:
            return conn.execute(f"UPDATE anchor_receipts SET {sets}, updated_ms = %(now)s{extra} "
                                "WHERE size = %(size)s AND target = %(target)s AND state = %(expect)s RETURNING 1",
                                {**fields, "now": now_ms(), "size": size, "target": target, "expect": expect}
                                ).fetchone() is not None

    def close_round(self, size: int, kinds: list[str]) -> bool:
        """Close the open round with the kinds that confirmed; targets still working give up on it."""
        now = now_ms()
        with self.tx() as conn:
            if conn.execute("UPDATE anchorings SET closed_ms = %s, kinds = %s WHERE size = %s AND closed_ms IS NULL "
                            "RETURNING 1", (now, sorted(kinds), size)).fetchone() is None:
                return False
            conn.execute("UPDATE anchor_receipts SET state = 'failed', updated_ms = %s WHERE size = %s AND state IN "
                         "('pending', 'submitted')", (now, size))
        return True

    def upgradable(self, limit: int = 1000, closed_before_ms: int | None = None) -> list[str]:
        """Archived batches that the newest closed round with confirmed anchors would give more anchors,
        in log order (``closed_before_ms``: only if that round closed before then: the reconciler's view)."""
        with self.tx() as conn:
            r = conn.execute("SELECT size, closed_ms FROM anchorings WHERE closed_ms IS NOT NULL "
                             "AND cardinality(kinds) > 0 ORDER BY size DESC LIMIT 1").fetchone()
            if r is None or (closed_before_ms is not None and r[1] > closed_before_ms):
                return []
            rows = conn.execute(f"SELECT b.id FROM batches b, anchorings r WHERE r.size = %s AND {_UPGRADABLE} "
                                "ORDER BY b.log_index LIMIT %s", (r[0], limit)).fetchall()
        return [row[0] for row in rows]

    def upgrade_for(self, batch_id: str) -> tuple[BatchInfo, Round] | None:
        """An archived batch and the newest closed round that gives it more anchors, with its confirmed
        receipts; None if there is nothing to do."""
        columns = ", ".join(f"b.{c.strip()}" for c in BATCH_COLUMNS.split(","))
        with self.tx() as conn:
            row = conn.execute(
                f"SELECT r.size, r.note, r.opened_ms, r.closed_ms, r.kinds, {columns} "
                f"FROM batches b, anchorings r WHERE b.id = %s AND r.closed_ms IS NOT NULL AND {_UPGRADABLE} "
                "ORDER BY r.size DESC LIMIT 1", (batch_id,)).fetchone()
            if row is None:
                return None
            size, note, opened, closed, kinds = row[:5]
            ts = conn.execute("SELECT size, target, state, receipt, txs, attempts, next_try_ms, error "
                              "FROM anchor_receipts WHERE size = %s AND state = 'confirmed' ORDER BY target",
                              (size,)).fetchall()
        return batch_info(row[5:]), Round(size, note, opened, closed, list(kinds), [Target(*t) for t in ts])

    def mark_upgraded(self, batch_id: str, size: int, kinds: list[str], done: bool, anchors_key: str) -> bool:
        """The commit point of an upgrade: the batch's proofs carry the anchors in ``anchors_key`` (round
        ``size``)."""
        with self.tx() as conn:
            row = conn.execute(
                "UPDATE batches SET ext_size = %s, ext_kinds = %s, ext_done = %s, anchors_key = %s "
                "WHERE id = %s AND state = 'archived' AND (ext_kinds IS NULL OR NOT ext_kinds @> %s) "
                "RETURNING agency, size",
                (size, sorted(kinds), done, anchors_key, batch_id, sorted(kinds))).fetchone()
            if row is None:
                return False
            # The webhooks' outbox, in the same transaction: the batch's proofs now carry these anchors.
            self.emit(conn, row[0], "anchors.confirmed", {"agency": row[0], "batch": batch_id, "records": row[1],
                                                           "anchors": ["tlog", *sorted(kinds)], "log_size": size,
                                                           "complete": done, "anchors_object": anchors_key})
            return True

    def oldest_unanchored(self) -> int | None:
        """When (ms) the oldest archived batch still waiting for external anchors was archived."""
        with self.tx() as conn:
            row = conn.execute("SELECT min(updated_ms) FROM batches WHERE state = 'archived' AND NOT ext_done"
                               ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def round_coverage(self) -> list[dict[str, Any]]:
        """Every closed round: its log size, kinds, open and close times (ms), and the batches and records it
        anchored first (those sequenced since the round before it)."""
        with self.tx() as conn:
            rows = conn.execute("""
                SELECT r.size, r.kinds, r.opened_ms, r.closed_ms, count(b.id), coalesce(sum(b.size), 0)
                  FROM anchorings r
                  LEFT JOIN batches b ON b.log_index < r.size AND b.log_index >= coalesce(
                       (SELECT max(p.size) FROM anchorings p WHERE p.size < r.size AND p.closed_ms IS NOT NULL
                           AND cardinality(p.kinds) > 0), 0)
                 WHERE r.closed_ms IS NOT NULL GROUP BY r.size ORDER BY r.size""").fetchall()
        return [{"size": size, "kinds": list(kinds), "opened_ms": opened, "closed_ms": closed, "batches": int(n),
                 "records": int(records)} for size, kinds, opened, closed, n, records in rows]

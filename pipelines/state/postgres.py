"""The pipeline's system of record in PostgreSQL: accepted records, the pending pool, batches, failures.

Tables (created by ``anchorpipe db upgrade``, see ``migrations/``):

- ``records``: one row per accepted (agency, id) with its content digest, salt,
  accept time, and once claimed its batch and leaf. Rows with no batch are the
  pending pool (a partial index keeps it small and ordered by age).
- ``batches``: a batch's agency, stage, seal time, size, root, log receipt, and
  once archived its bundle and each leaf's byte offset in it (the API's lookups).
- ``counters`` (archived records, last checkpoint), ``dead_letters``,
  ``agencies``, ``api_keys`` (:mod:`.postgres_keys`) and the pull sources'
  ``sources``, ``source_units``, ``quarantine`` (:mod:`.postgres_sources`), and the external
  anchoring rounds ``anchorings`` and ``anchor_receipts`` (:mod:`.postgres_anchorings`).

Every change is one transaction; claiming uses ``FOR UPDATE SKIP LOCKED`` so
sealers never wait on each other, and stage changes are compare-and-swap
updates on the batch's state. A connection error, a restart of the server or a
pool timeout raises a transient :class:`StateError` (the API answers 503);
nothing half-done is ever committed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pipelines.core.batch import Commitment, SealedBatch
from pipelines.errors import ConflictRecord, InputError, PersistenceError, StateError
from pipelines.state import LEASE_MS, STAGES, Accepted, BatchInfo, StoredRecord, now_ms
from pipelines.state.postgres_anchorings import AnchoringsInPostgres
from pipelines.state.postgres_batches import BATCH_COLUMNS, batch_info
from pipelines.state.postgres_keys import KeysInPostgres
from pipelines.state.postgres_sources import DB_NOW, SourcesInPostgres
from pipelines.state.postgres_webhooks import WebhooksInPostgres
from pipelines.state.schema import psycopg_url

#: Batch columns a stage may set besides its state.
BATCH_FIELDS = frozenset({"root", "anchor", "error", "bundle", "offsets", "log_index"})
#: Faults that heal: the server down or restarting, the pool exhausted, and a server that takes no writes (a
#: standby after a failover, until the clients reach the new primary).
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, psycopg.errors.ReadOnlySqlTransaction)

_ACCEPT = """
INSERT INTO records (agency, id, content_sha256, salt, accepted_ms)
SELECT %(agency)s, t.id, t.digest, t.salt, %(now)s
  FROM unnest(%(ids)s::text[], %(digests)s::bytea[], %(salts)s::bytea[]) AS t(id, digest, salt)
ON CONFLICT (agency, id) DO NOTHING
RETURNING id, content_sha256, salt
"""

# Agencies with pending records and the accept time of each one's oldest: a skip scan of the
# pending index (one probe per agency, however many records wait).
_OLDEST_PENDING = """
WITH RECURSIVE a(agency, ms) AS (
  (SELECT agency, accepted_ms FROM records WHERE batch_id IS NULL ORDER BY agency, accepted_ms LIMIT 1)
  UNION ALL
  SELECT n.agency, n.accepted_ms FROM a CROSS JOIN LATERAL (
    SELECT agency, accepted_ms FROM records
     WHERE batch_id IS NULL AND agency > a.agency ORDER BY agency, accepted_ms LIMIT 1) n
)
SELECT agency, ms FROM a
"""

_CLAIM = """
SELECT id, accepted_ms FROM records
 WHERE agency = %s AND batch_id IS NULL
 ORDER BY accepted_ms, id LIMIT %s
   FOR UPDATE SKIP LOCKED
"""

_SET_BATCH = """
UPDATE records r SET batch_id = %(batch)s, leaf = t.n - 1
  FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS t(id, n)
 WHERE r.agency = %(agency)s AND r.id = t.id
"""


#: A batch archived, for its agency's webhooks subscribed to it: the batch, its bundle and its records' ids.
ARCHIVED_EVENT = """
INSERT INTO webhook_events (webhook_id, type, payload, created_ms)
SELECT w.id, 'records.archived', jsonb_build_object('agency', b.agency, 'batch', b.id, 'records', b.size,
       'bundle', b.bundle, 'ids', (SELECT coalesce(jsonb_agg(r.id ORDER BY r.leaf), '[]') FROM records r
                                   WHERE r.batch_id = b.id)), %(now)s
FROM batches b JOIN webhooks w ON w.agency = b.agency AND 'records.archived' = ANY(w.events) WHERE b.id = %(id)s
"""


class PostgresState(KeysInPostgres, SourcesInPostgres, AnchoringsInPostgres, WebhooksInPostgres):
    """The pipeline's state in PostgreSQL; connection failures become a transient :class:`StateError`.

    One connection pool per process, opened on first use (a Celery worker forks
    its pool children after start-up; each child opens its own).
    """

    def __init__(self, url: str, *, max_connections: int = 10, wait: float = 5.0) -> None:
        self.url = psycopg_url(url)
        self.max_connections, self.wait = max_connections, wait
        self._pool: ConnectionPool | None = None
        self._pid = 0

    @classmethod
    def connect(cls, url: str, *, max_connections: int = 10, wait: float = 5.0) -> PostgresState:
        """``wait``: seconds a call waits for a connection (the server down, or every connection busy)
        before it raises a transient StateError."""
        return cls(url, max_connections=max_connections, wait=wait)

    def _connections(self) -> ConnectionPool:
        if self._pool is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._pool = ConnectionPool(self.url, min_size=1, max_size=self.max_connections, timeout=self.wait,
                                        check=ConnectionPool.check_connection, open=True,
                                        kwargs={"connect_timeout": 5}, name="anchorpipe-state")
        return self._pool

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self._connections().connection() as conn:
                yield conn
        except _TRANSIENT as exc:
            raise StateError(f"PostgreSQL failed: {type(exc).__name__}: {exc}".strip(), transient=True) from exc

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

    # -- health --------------------------------------------------------------------------

    def ping(self) -> None:
        """The server answers and takes writes (a read-only standby fails, transiently)."""
        with self.tx() as conn:
            (read_only,) = conn.execute("SELECT current_setting('transaction_read_only')").fetchone() or ("on",)
        if read_only == "on":
            raise StateError("PostgreSQL takes no writes (transaction_read_only is on: a standby?)", transient=True)

    def check_persistence(self) -> None:
        """Refuse a server that could lose a committed record in a crash (fsync or synchronous_commit off).

        Uses a connection of its own, not the pool: a worker checks before it forks."""
        try:
            with psycopg.connect(self.url, connect_timeout=10) as conn:
                settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                                             "('fsync', 'synchronous_commit', 'full_page_writes')").fetchall())
        except _TRANSIENT as exc:
            raise StateError(f"PostgreSQL failed: {exc}", transient=True) from exc
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            if settings.get(name) == "off":
                raise PersistenceError(f"PostgreSQL has {name}=off: records answered 202 could be lost in a "
                                       f"crash; set {name}=on")

    # -- records ---------------------------------------------------------------------------

    def accept(self, agency: str, records: list[tuple[str, bytes, bytes]]) -> list[Accepted]:
        """Store ``(id, content sha256, salt)`` records in one transaction; return their stored states.

        Idempotent per (agency, id): a record already stored with the same digest
        keeps its first salt and is marked duplicate. A stored id with another
        digest raises ConflictRecord and nothing of the call is stored. Rows are
        inserted in id order, so concurrent calls never deadlock.
        """
        if not records:
            return []
        rows = sorted(records, key=lambda r: r[0])
        params = {"agency": agency, "now": now_ms(), "ids": [r[0] for r in rows],
                  "digests": [r[1] for r in rows], "salts": [r[2] for r in rows]}
        with self.tx() as conn:
            inserted = {rid: (bytes(d), bytes(s)) for rid, d, s in conn.execute(_ACCEPT, params).fetchall()}
            stored = {rid: (d, s, params["now"]) for rid, (d, s) in inserted.items()}
            rest = [r[0] for r in rows if r[0] not in inserted]
            if rest:
                found = conn.execute("SELECT id, content_sha256, salt, accepted_ms FROM records "
                                     "WHERE agency = %s AND id = ANY(%s)", (agency, rest)).fetchall()
                stored.update({rid: (bytes(d), bytes(s), ms) for rid, d, s, ms in found})
            out = []
            for rid, digest, salt in records:
                old_digest, old_salt, ms = stored[rid]
                if old_digest != digest:
                    raise ConflictRecord(rid)  # rolls the whole call back
                out.append(Accepted(rid, old_digest, old_salt, ms, old_salt != salt))  # another salt: stored before
        return out

    def record(self, agency: str, rid: str) -> StoredRecord | None:
        """A record's stored state and its batch (None while pending), or None if never accepted."""
        with self.tx() as conn:
            row = conn.execute("SELECT content_sha256, salt, accepted_ms, batch_id FROM records "
                               "WHERE agency = %s AND id = %s", (agency, rid)).fetchone()
        return None if row is None else StoredRecord(rid, bytes(row[0]), bytes(row[1]), row[2], row[3])

    def proof_location(self, agency: str, rid: str) -> tuple[str, int, int] | None:
        """(bundle key, byte offset, byte length) of an archived record's proof; None if not archived."""
        with self.tx() as conn:
            row = conn.execute("SELECT b.bundle, b.offsets[r.leaf + 1], b.offsets[r.leaf + 2] FROM records r "
                               "JOIN batches b ON b.id = r.batch_id WHERE r.agency = %s AND r.id = %s "
                               "AND b.state = 'archived'", (agency, rid)).fetchone()
        if row is None or row[0] is None or row[1] is None:  # (batches imported from Redis have no offsets)
            return None
        return row[0], row[1], row[2] - row[1] - 1

    def content_digests(self, agency: str, ids: list[str]) -> dict[str, bytes]:
        """The stored content digest of each of ``ids`` already accepted for ``agency``."""
        if not ids:
            return {}
        with self.tx() as conn:
            rows = conn.execute("SELECT id, content_sha256 FROM records WHERE agency = %s AND id = ANY(%s)",
                                (agency, ids)).fetchall()
        return {rid: bytes(d) for rid, d in rows}

    def pending_depth(self, limit: int | None = None) -> int:
        """Records waiting to be sealed (counted up to ``limit``: enough for backpressure, and cheap)."""
        sql = "SELECT count(*) FROM records WHERE batch_id IS NULL"
        with self.tx() as conn:
            if limit is None:
                return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]
            sql = "SELECT count(*) FROM (SELECT 1 FROM records WHERE batch_id IS NULL LIMIT %s) p"
            return int(conn.execute(sql, (limit,)).fetchone()[0])  # type: ignore[index]

    def pending_agencies(self) -> list[str]:
        """Agencies with records waiting to be sealed."""
        return sorted(self.oldest_pending())

    def oldest_pending(self) -> dict[str, int]:
        """Accept time (ms) of the oldest pending record of each agency."""
        with self.tx() as conn:
            return {agency: ms for agency, ms in conn.execute(_OLDEST_PENDING).fetchall()}

    # -- batches ---------------------------------------------------------------------------

    def claim(self, batch_id: str, agency: str, max_size: int, interval_s: float,
              sealed_at: str) -> tuple[int, list[str]]:
        """Claim up to ``max_size`` of ``agency``'s pending records, oldest first, into a new batch if they
        are ripe (a full batch, or the oldest waited ``interval_s``). One transaction; rows another sealer
        is claiming are skipped, never waited for. Returns the batch size (0: nothing ripe) and no orphans
        (a pending record is a row, so it cannot lose its record)."""
        now = now_ms()
        with self.tx() as conn:
            rows = conn.execute(_CLAIM, (agency, max_size)).fetchall()
            if not rows or (len(rows) < max_size and rows[0][1] > now - int(interval_s * 1000)):
                return 0, []
            ids = [r[0] for r in rows]
            conn.execute(_SET_BATCH, {"batch": batch_id, "ids": ids, "agency": agency})
            conn.execute("INSERT INTO batches (id, agency, state, sealed_at, size, created_ms, updated_ms, lease_until) "
                         f"VALUES (%s, %s, 'claimed', %s, %s, %s, %s, {DB_NOW} + %s)",
                         (batch_id, agency, sealed_at, len(ids), now, now, LEASE_MS))
        return len(ids), []

    def batch(self, batch_id: str) -> BatchInfo | None:
        """The batch as stored; None if there is no such batch."""
        with self.tx() as conn:
            row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = %s", (batch_id,)).fetchone()
        return None if row is None else batch_info(row)

    def load_batch(self, batch_id: str) -> SealedBatch:
        """Rebuild the sealed tree of a claimed batch from its records and their stored salts."""
        return self.load_batch_with_times(batch_id)[0]

    def load_batch_with_times(self, batch_id: str) -> tuple[SealedBatch, list[int]]:
        """The sealed batch and when each of its records was accepted (ms), in leaf order."""
        with self.tx() as conn:
            info = conn.execute("SELECT agency, sealed_at, size FROM batches WHERE id = %s", (batch_id,)).fetchone()
            if info is None:
                raise InputError(f"no batch {batch_id}")
            rows = conn.execute("SELECT id, content_sha256, salt, accepted_ms FROM records WHERE batch_id = %s "
                                "ORDER BY leaf", (batch_id,)).fetchall()
        agency, sealed_at, size = info
        if len(rows) != size:
            raise InputError(f"batch {batch_id} has {len(rows)} records stored, not its size {size}")
        commitments = [Commitment(agency, rid, bytes(d), bytes(s)) for rid, d, s, _ in rows]
        return SealedBatch(batch_id, sealed_at, commitments), [r[3] for r in rows]

    def advance(self, batch_id: str, state: str, archived_records: int = 0, expect: str = "",
                letter: str = "", **fields: object) -> bool:
        """Record that a batch reached ``state`` (sealed, anchored, archived or failed), with its new fields.

        One transaction, and a compare-and-swap when ``expect`` names the state it
        must be in; an archived batch is never changed, and a batch already in
        ``state`` is left alone. ``letter`` is stored as a dead letter in the same
        transaction. Returns False when nothing changed, so of two racing re-runs
        only one counts the batch.
        """
        unknown = set(fields) - BATCH_FIELDS
        if unknown:
            raise ValueError(f"batches have no field {', '.join(sorted(unknown))}")
        now = now_ms()
        sets = ", ".join(f"{k} = %({k})s" for k in fields)
        sql = (f"UPDATE batches SET state = %(state)s, updated_ms = %(now)s, lease_until = NULL"
               f"{', ' + sets if sets else ''} "
               "WHERE id = %(id)s AND state NOT IN ('archived', %(state)s)"
               f"{' AND state = %(expect)s' if expect else ''} RETURNING 1")
        with self.tx() as conn:
            if conn.execute(sql, {**fields, "state": state, "now": now, "id": batch_id, "expect": expect}
                            ).fetchone() is None:
                return False
            if letter:
                conn.execute("INSERT INTO dead_letters (doc, at_ms) VALUES (%s, %s)", (letter, now))
            if state == "archived" and archived_records:
                conn.execute("UPDATE counters SET value = value + %s WHERE name = 'archived_records'",
                             (archived_records,))
            if state == "archived":  # the webhooks' outbox, in the same transaction as the change it reports
                conn.execute(ARCHIVED_EVENT, {"id": batch_id, "now": now})
        return True

    def in_stage(self, state: str, older_than_ms: int | None = None, limit: int = 1000) -> list[str]:
        """Batches in ``state`` (not archived), least recently changed first."""
        top = 2**62 if older_than_ms is None else older_than_ms
        with self.tx() as conn:
            rows = conn.execute("SELECT id FROM batches WHERE state = %s AND state <> 'archived' AND updated_ms <= %s "
                                "ORDER BY updated_ms LIMIT %s", (state, top, limit)).fetchall()
        return [r[0] for r in rows]

    def lease(self, batch_ids: list[str], ms: int = 0) -> None:
        """Hold (or renew) the lease of the batches a worker is working on, for ``ms`` (default LEASE_MS)."""
        if batch_ids:
            with self.tx() as conn:
                conn.execute(f"UPDATE batches SET lease_until = {DB_NOW} + %s WHERE id = ANY(%s) "
                             "AND state IN ('claimed', 'sealed', 'anchored')", (ms or LEASE_MS, batch_ids))

    def expired_leases(self, state: str, limit: int = 1000) -> list[str]:
        """Batches in ``state`` whose worker stopped renewing its lease: it died mid-work."""
        with self.tx() as conn:
            rows = conn.execute(f"SELECT id FROM batches WHERE state = %s AND lease_until < {DB_NOW} "
                                "ORDER BY lease_until LIMIT %s", (state, limit)).fetchall()
        return [r[0] for r in rows]

    def stage_counts(self) -> dict[str, int]:
        """How many batches wait in each stage."""
        with self.tx() as conn:
            rows = conn.execute("SELECT state, count(*) FROM batches WHERE state <> 'archived' GROUP BY state")
            found = dict(rows.fetchall())
        return {s: int(found.get(s, 0)) for s in STAGES}

    def oldest_in_stage(self) -> dict[str, int]:
        """When (ms) the longest-waiting batch of each stage entered it (stages with batches only)."""
        with self.tx() as conn:
            rows = conn.execute("SELECT state, min(updated_ms) FROM batches WHERE state IN ('claimed', 'sealed', "
                                "'anchored') GROUP BY state").fetchall()
        return {state: int(ms) for state, ms in rows}

    def oldest_batches(self) -> dict[str, tuple[str, int]]:
        """The longest-waiting batch of each stage (stages with batches only): its id and when (ms) it entered."""
        with self.tx() as conn:
            rows = conn.execute("SELECT DISTINCT ON (state) state, id, updated_ms FROM batches WHERE state IN "
                                "('claimed', 'sealed', 'anchored') ORDER BY state, updated_ms").fetchall()
        return {state: (batch_id, int(ms)) for state, batch_id, ms in rows}

    def archived_records(self) -> int:
        return self._counter("archived_records")

    def _counter(self, name: str) -> int:
        with self.tx() as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = %s", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def accept_to_archived(self, since_ms: int = 0) -> list[float]:
        """Seconds from accept to archived, per record of every archived batch created since ``since_ms``.

        Reads every such record: for demos and benchmarks, not for a running service.
        """
        with self.tx() as conn:
            rows = conn.execute("SELECT (b.updated_ms - r.accepted_ms) / 1000.0 FROM batches b "
                                "JOIN records r ON r.batch_id = b.id WHERE b.state = 'archived' "
                                "AND b.created_ms >= %s", (since_ms,)).fetchall()
        return sorted(float(r[0]) for r in rows)

    # -- failures --------------------------------------------------------------------------

    def dead_letter(self, what: str, args: object, error: str) -> None:
        """Keep failed work for people to look at; the reconciler leaves it alone."""
        now = now_ms()
        doc = json.dumps({"task": what, "args": args, "error": error, "at": now}, default=str)
        with self.tx() as conn:
            conn.execute("INSERT INTO dead_letters (doc, at_ms) VALUES (%s, %s)", (doc, now))

    def fail_batch(self, batch_id: str, stage: str, error: str) -> bool:
        """Take a batch that cannot go on out of its stage (state ``failed``) and dead-letter it, in one
        transaction; a batch already failed or archived is left alone (False)."""
        letter = json.dumps({"task": stage, "args": [batch_id], "error": error, "at": now_ms()})
        return self.advance(batch_id, "failed", letter=letter, error=f"{stage}: {error}"[:2000])

    def redrive(self, batch_id: str) -> str:
        """Put a failed batch back in the stage it failed in (after its cause is fixed); return that stage.

        The reconciler takes it at its next tick (its last change is set long ago)."""
        with self.tx() as conn:
            row = conn.execute("SELECT state, root, anchor FROM batches WHERE id = %s FOR UPDATE",
                               (batch_id,)).fetchone()
            if row is None or row[0] != "failed":
                raise InputError(f"batch {batch_id} is {row[0] if row else 'unknown'}, not failed")
            stage = "anchored" if row[2] else "sealed" if row[1] else "claimed"
            conn.execute("UPDATE batches SET state = %s, updated_ms = 0 WHERE id = %s", (stage, batch_id))
        return stage

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.tx() as conn:
            return [json.loads(d) for (d,) in conn.execute("SELECT doc FROM dead_letters ORDER BY seq").fetchall()]

    def clear_dead_letters(self, everything: bool = False) -> int:
        """Delete the dead letters whose batches have all been archived since (or, ``everything``, all of
        them); return how many."""
        with self.tx() as conn:
            letters = conn.execute("SELECT seq, doc FROM dead_letters FOR UPDATE").fetchall()
            gone = []
            for seq, doc in letters:
                ids = _batch_ids(json.loads(doc).get("args"))
                if everything or (ids and len(ids) == conn.execute(
                        "SELECT count(*) FROM batches WHERE id = ANY(%s) AND state = 'archived'",
                        (ids,)).fetchone()[0]):
                    gone.append(seq)
            conn.execute("DELETE FROM dead_letters WHERE seq = ANY(%s)", (gone,))
        return len(gone)


def _batch_ids(args: object) -> list[str]:
    """The batch ids a dead letter's arguments name (``[id]`` or ``[[id, ...]]``)."""
    if isinstance(args, list) and len(args) == 1 and isinstance(args[0], list):
        args = args[0]
    return [a for a in args if isinstance(a, str)] if isinstance(args, list) else []

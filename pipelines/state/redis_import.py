"""Upgrading from a version that kept its state in Redis: copy it into PostgreSQL, once.

``anchorpipe db import-redis REDIS_URL`` reads the earlier layout (``ap:`` keys:
records and their batches, pending lists, batches and their members, agencies,
API key digests, pull sources with cursors, finished units and quarantine, dead
letters, counters) and writes it into an empty database at this version's
schema, in one transaction: all or nothing. Records keep their salts, accept
times, batches and leaves, so a record submitted again after the upgrade is a
duplicate (same receipt), never a second proof. Run it with the earlier
version's API, pullers and workers stopped; Redis is only read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from pipelines.errors import InputError, StateError
from pipelines.state.postgres import PostgresState

SEP = "\x1f"
CHUNK = 5_000


@dataclass
class Imported:
    records: int = 0
    pending: int = 0
    batches: int = 0
    agencies: int = 0
    keys: int = 0
    sources: int = 0
    dead_letters: int = 0


def _scan(r: redis.Redis, pattern: str) -> Iterator[str]:
    yield from r.scan_iter(pattern, count=1000)


def import_redis(redis_url: str, state: PostgresState, progress: Callable[[str], None] = lambda _: None) -> Imported:
    """Copy an earlier version's Redis state into ``state``'s (empty) database; return what was copied."""
    r = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=30)
    try:
        return _import(r, state, progress)
    except redis.RedisError as exc:
        raise StateError(f"Redis failed: {exc}", transient=True) from exc
    finally:
        r.close()


def _import(r: redis.Redis, state: PostgresState, progress: Callable[[str], None]) -> Imported:
    out = Imported()
    if r.exists("ap:pending"):
        raise InputError("this Redis holds the single pending list of a much older version: start that version's "
                         "successor once (it moves the list per agency), then import")
    with state.tx() as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM records) OR EXISTS (SELECT 1 FROM batches)").fetchone()[0]:
            raise InputError("the database already holds records: import into an empty one")
        batch_rows, members = _batches(r, out)
        progress(f"{out.batches:,} batches")
        with conn.cursor().copy("COPY batches (id, agency, state, sealed_at, size, created_ms, updated_ms, root, "
                                "anchor, error, bundle) FROM STDIN") as copy:
            for row in batch_rows:
                copy.write_row(row)
        with conn.cursor().copy("COPY records (agency, id, content_sha256, salt, accepted_ms, batch_id, leaf) "
                                "FROM STDIN") as copy:
            for key in _scan(r, "ap:rec:*"):
                agency = key.split(":", 2)[2]
                for rid, value in r.hscan_iter(key, count=CHUNK):
                    digest, salt, ms = value.split(":")
                    batch, leaf = members.get((agency, rid), (None, None))
                    out.pending += batch is None
                    copy.write_row((agency, rid, bytes.fromhex(digest), bytes.fromhex(salt), int(ms), batch, leaf))
                    out.records += 1
                    if out.records % 100_000 == 0:
                        progress(f"{out.records:,} records")
        for name in r.smembers("ap:agencies"):
            conn.execute("INSERT INTO agencies (name, created_ms) VALUES (%s, 0) ON CONFLICT DO NOTHING", (name,))
            out.agencies += 1
        for digest, principal in r.hgetall("ap:keys").items():
            conn.execute("INSERT INTO api_keys (digest, principal) VALUES (%s, %s)", (digest, principal))
            out.keys += 1
        _sources(r, conn, out)
        for doc in r.lrange("ap:deadletter", 0, -1):
            conn.execute("INSERT INTO dead_letters (doc, at_ms) VALUES (%s, %s)",
                         (doc, int(json.loads(doc).get("at", 0))))
            out.dead_letters += 1
        conn.execute("UPDATE counters SET value = %s WHERE name = 'archived_records'",
                     (int(r.get("ap:archived_records") or 0),))
    return out


def _batches(r: redis.Redis, out: Imported) -> tuple[list[tuple[Any, ...]], dict[tuple[str, str], tuple[str, int]]]:
    """Batch rows, and (agency, id) → (batch, leaf) for every claimed record."""
    rows, members = [], {}
    for key in _scan(r, "ap:batch:*"):
        if key.endswith(":members"):
            continue
        batch_id = key[len("ap:batch:"):]
        info = r.hgetall(key)
        listed = r.lrange(f"{key}:members", 0, -1)
        agencies = sorted({m.split(SEP, 1)[0] for m in listed})
        if len(agencies) > 1 and info.get("state") != "archived":
            raise InputError(f"batch {batch_id} mixes agencies and is not archived yet: let the earlier version "
                             "finish it (drain), then import")
        for leaf, m in enumerate(listed):
            agency, rid, _ = m.split(SEP, 2)
            members[(agency, rid)] = (batch_id, leaf)
        state = info.get("state", "claimed")
        bundle = None
        if state == "archived":  # where the earlier version wrote it; the API finds the offsets in the index
            bundle = f"proofs/{agencies[0]}/{batch_id}.ndjson" if len(agencies) == 1 else f"proofs/{batch_id}.ndjson"
        rows.append((batch_id, agencies[0] if agencies else "", state, info.get("sealed_at", ""),
                     int(info.get("size", len(listed))), int(info.get("created", 0)),
                     int(info.get("updated", info.get("created", 0))), info.get("root"), info.get("anchor"),
                     info.get("error"), bundle))
        out.batches += 1
    return rows, members


def _sources(r: redis.Redis, conn: Any, out: Imported) -> None:
    for key in _scan(r, "ap:src:*"):
        name, _, part = key[len("ap:src:"):].partition(":")
        if part:
            continue
        info = r.hgetall(key)
        conn.execute("INSERT INTO sources (name, cursor, failures, next_at, last_error, last_ok) "
                     "VALUES (%s, %s, %s, %s, %s, %s)",
                     (name, info.get("cursor"), int(info.get("failures", 0)), int(info.get("next_at", 0)),
                      info.get("last_error", ""), int(info["last_ok"]) if info.get("last_ok") else None))
        for unit, ms in r.hgetall(f"{key}:finished").items():
            conn.execute("INSERT INTO source_units (source, unit, at_ms) VALUES (%s, %s, %s)", (name, unit, int(ms)))
        for position, doc in r.hgetall(f"{key}:quarantine").items():
            conn.execute("INSERT INTO quarantine (source, position, doc) VALUES (%s, %s, %s)", (name, position, doc))
        out.sources += 1

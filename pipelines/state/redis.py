"""The pipeline's durable state in Redis (with AOF): accepted records, pending pool, batches.

Keys (all prefixed ``ap:``):

- ``rec:<agency>`` hash: record id → ``<content sha256 hex>:<salt hex>:<accepted ms>``
- ``recbatch:<agency>`` hash: record id → batch id, set when the record is claimed
- ``pending:<agency>`` list: ``<accepted ms>\\x1f<id>``, oldest first; ``pending_agencies`` set
  (agencies with pending records) and ``pending_count`` (all pending records)
- ``batch:<id>`` hash: state, sealed_at, size, created, root, anchor (receipt JSON)
- ``batch:<id>:members`` list: ``<agency>\\x1f<id>\\x1f<stored record value>`` in leaf order
- ``stage:<state>`` sorted sets (claimed, sealed, anchored): batch id → last change ms
- ``deadletter`` list: JSON of work that failed permanently
- ``keys`` hash: SHA-256 of an API key → its principal (JSON); ``agencies`` set
- ``src:<name>`` hash per pull source (cursor, failures, next run time, last error),
  ``src:<name>:finished`` (units fully read), ``src:<name>:quarantine`` (position →
  reason and item), ``src:<name>:lock`` (the run lock, with a TTL)

Accepting, claiming and advancing are Lua scripts that declare every key they
touch and check before they write, so each is all-or-nothing. Only this module speaks to Redis. A batch's
membership, salts and seal time are fixed when it is claimed, so every later
stage is a pure function of this state and may run any number of times.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from pipelines.core.batch import Commitment, SealedBatch
from pipelines.errors import ConflictRecord, InputError, PersistenceError, StateError
from pipelines.state import STAGES, Accepted, now_ms
from pipelines.state.redis_keys import KeysInRedis
from pipelines.state.redis_sources import COMMIT_PAGE, RELEASE_LOCK, RENEW_LOCK, SourcesInRedis

SEP = "\x1f"

# KEYS: rec:<agency>, pending:<agency>, pending_agencies, pending_count. ARGV: agency, now, then id/digest/salt.
_ACCEPT = """
local rec, pending, agencies, count, agency, now = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 3 do
  local old = redis.call('HGET', rec, ARGV[i])
  if old and string.sub(old, 1, 64) ~= ARGV[i + 1] then
    return {'conflict', ARGV[i]}
  end
  out[#out + 1] = old or false
end
local depth = tonumber(redis.call('GET', count) or '0')
local added = 0
for i = 3, #ARGV, 3 do
  local n = (i - 3) / 3 + 1
  if not out[n] then
    local value = ARGV[i + 1] .. ':' .. ARGV[i + 2] .. ':' .. now
    if redis.call('HSETNX', rec, ARGV[i], value) == 1 then
      redis.call('RPUSH', pending, now .. '\\31' .. ARGV[i])
      added = added + 1
    end
    out[n] = redis.call('HGET', rec, ARGV[i])
  end
end
if added > 0 then
  redis.call('SADD', agencies, agency)
  redis.call('INCRBY', count, added)
end
local reply = {'ok', depth}
for n = 1, #out do reply[n + 2] = out[n] end
return reply
"""

# KEYS: pending:<agency>, rec:<agency>, recbatch:<agency>, batch hash, batch members, stage:claimed,
#       pending_agencies, pending_count.  ARGV: batch id, agency, now, max, ripe_before, sealed_at.
# One agency per batch, so each bundle holds one agency's proofs. Validates before writing (a Lua
# error does not roll back): an entry with no stored record is an orphan, left out and returned.
_CLAIM = """
local pending, rec, recbatch, batch_key, members, claimed, agencies, count =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local batch, agency, now, max, ripe_before, sealed_at =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local depth = redis.call('LLEN', pending)
if depth == 0 then
  redis.call('SREM', agencies, agency)
  return {0}
end
local items = redis.call('LRANGE', pending, 0, max - 1)
if depth < max then
  local first = tonumber(string.match(items[1], '^(%d+)'))
  if first > ripe_before then return {0} end
end
local found, orphans = {}, {}
for _, item in ipairs(items) do
  local id = string.sub(item, string.find(item, '\\31', 1, true) + 1)
  local value = redis.call('HGET', rec, id)
  if value then found[#found + 1] = {id, value} else orphans[#orphans + 1] = item end
end
redis.call('LTRIM', pending, #items, -1)
redis.call('DECRBY', count, #items)
if #items == depth then redis.call('SREM', agencies, agency) end
for _, f in ipairs(found) do
  redis.call('RPUSH', members, agency .. '\\31' .. f[1] .. '\\31' .. f[2])
  redis.call('HSET', recbatch, f[1], batch)
end
if #found > 0 then
  redis.call('HSET', batch_key, 'state', 'claimed', 'sealed_at', sealed_at, 'size', #found, 'created', now)
  redis.call('ZADD', claimed, now, batch)
end
local reply = {#found}
for _, o in ipairs(orphans) do reply[#reply + 1] = agency .. '\\31' .. o end
return reply
"""

# KEYS: batch hash, stage:claimed, stage:sealed, stage:anchored, stage:<new state>, archived_records,
#       deadletter.
# ARGV: batch id, new state, now, archived count, expected state ('' for any), a dead letter to push
#       with the change ('' for none), then field/value pairs.
_ADVANCE = """
local batch_key = KEYS[1]
local batch, state, now, count, expected, letter = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local old = redis.call('HGET', batch_key, 'state')
if old == 'archived' or old == state then return 0 end
if expected ~= '' and old ~= expected then return 0 end
for i = 7, #ARGV, 2 do redis.call('HSET', batch_key, ARGV[i], ARGV[i + 1]) end
if letter ~= '' then redis.call('RPUSH', KEYS[7], letter) end
redis.call('HSET', batch_key, 'state', state, 'updated', now)
for k = 2, 4 do redis.call('ZREM', KEYS[k], batch) end
if state == 'archived' then
  redis.call('INCRBY', KEYS[6], count)
else
  redis.call('ZADD', KEYS[5], now, batch)
end
return 1
"""



class RedisState(KeysInRedis, SourcesInRedis):
    """The pipeline's state in Redis; every Redis error becomes a transient :class:`StateError`.

    Records, batches and failures are here; API keys and pull sources are in
    :mod:`.redis_keys` and :mod:`.redis_sources`, which use this class's client.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._accept = client.register_script(_ACCEPT)
        self._claim = client.register_script(_CLAIM)
        self._advance = client.register_script(_ADVANCE)
        self._release = client.register_script(RELEASE_LOCK)
        self._renew = client.register_script(RENEW_LOCK)
        self._commit_page = client.register_script(COMMIT_PAGE)

    @classmethod
    def connect(cls, url: str) -> RedisState:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StateError(f"Redis failed: {exc}", transient=True) from exc

    # -- health --------------------------------------------------------------------------

    def ping(self) -> None:
        self._call(self.r.ping)

    def check_persistence(self) -> None:
        """Refuse a Redis that could lose an accepted record on restart: AOF on, fsync on every write."""
        config = self._call(self.r.config_get, "append*")
        if config.get("appendonly") != "yes":
            raise PersistenceError("Redis has appendonly=no: accepted records would not survive a restart")
        if config.get("appendfsync") != "always":
            raise PersistenceError(f"Redis has appendfsync={config.get('appendfsync')}: up to a second of records "
                                   "answered 202 could be lost in a crash; set appendfsync always")

    # -- records ---------------------------------------------------------------------------

    def accept(self, agency: str, records: list[tuple[str, bytes, bytes]]) -> tuple[list[Accepted], int]:
        """Store ``(id, content sha256, salt)`` records atomically; return their states and the prior depth.

        Idempotent per (agency, id): a record already stored with the same digest
        keeps its first salt and is marked duplicate. A stored id with another
        digest raises ConflictRecord and nothing of the request is written.
        """
        argv: list[str] = [agency, str(now_ms())]
        for rid, digest, salt in records:
            argv += [rid, digest.hex(), salt.hex()]
        keys = [f"ap:rec:{agency}", f"ap:pending:{agency}", "ap:pending_agencies", "ap:pending_count"]
        reply = self._call(self._accept, keys=keys, args=argv)
        if reply[0] == "conflict":
            raise ConflictRecord(reply[1])
        out = []
        for (rid, _, salt), value in zip(records, reply[2:], strict=True):
            stored_digest, stored_salt, ms = value.split(":")
            duplicate = stored_salt != salt.hex()
            out.append(Accepted(rid, bytes.fromhex(stored_digest), bytes.fromhex(stored_salt), int(ms), duplicate))
        return out, int(reply[1])

    def record(self, agency: str, rid: str) -> tuple[str, str | None] | None:
        """(stored value, batch id or None) of a record, or None if it was never accepted."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(f"ap:rec:{agency}", rid)
        pipe.hget(f"ap:recbatch:{agency}", rid)
        value, batch_id = self._call(pipe.execute)
        return None if value is None else (value, batch_id)

    def content_digests(self, agency: str, ids: list[str]) -> dict[str, bytes]:
        """The stored content digest of each of ``ids`` already accepted for ``agency``."""
        if not ids:
            return {}
        values = self._call(self.r.hmget, f"ap:rec:{agency}", ids)
        return {rid: bytes.fromhex(v.split(":", 1)[0]) for rid, v in zip(ids, values, strict=True) if v}

    def pending_depth(self) -> int:
        return int(self._call(self.r.get, "ap:pending_count") or 0)

    def pending_agencies(self) -> list[str]:
        """Agencies with records waiting to be sealed (an agency may stay listed until its next claim)."""
        return sorted(self._call(self.r.smembers, "ap:pending_agencies"))

    def oldest_pending(self) -> dict[str, int]:
        """Accept time (ms) of the oldest pending record of each agency."""
        agencies = self.pending_agencies()
        pipe = self.r.pipeline(transaction=False)
        for agency in agencies:
            pipe.lindex(f"ap:pending:{agency}", 0)
        heads = self._call(pipe.execute)
        return {a: int(h.split(SEP, 1)[0]) for a, h in zip(agencies, heads, strict=True) if h}

    def upgrade_pending(self, chunk: int = 1000) -> int:
        """Move records pending in the single list of earlier versions into per-agency lists; return how
        many. Cheap when there is nothing to move (one EXISTS).

        Chunk by chunk, each an optimistic transaction (WATCH the old list, MULTI, append to the
        agencies' lists, trim the old list, EXEC): an entry is never lost or moved twice, even while an
        earlier version's API still appends to the old list during a rolling upgrade.
        """
        moved = 0
        while self._call(self.r.exists, "ap:pending"):
            try:
                moved += self._call(self._upgrade_chunk, chunk)
            except StateError as exc:
                if not isinstance(exc.__cause__, redis.WatchError):
                    raise
        return moved

    def _upgrade_chunk(self, chunk: int) -> int:
        with self.r.pipeline(transaction=True) as pipe:
            pipe.watch("ap:pending")
            items = pipe.lrange("ap:pending", 0, chunk - 1)
            pipe.multi()
            for item in items:
                ms, agency, rid = item.split(SEP, 2)
                pipe.rpush(f"ap:pending:{agency}", f"{ms}{SEP}{rid}")
                pipe.sadd("ap:pending_agencies", agency)
            pipe.incrby("ap:pending_count", len(items))
            pipe.ltrim("ap:pending", len(items), -1)
            pipe.execute()
        return len(items)

    # -- batches ---------------------------------------------------------------------------

    def claim(self, batch_id: str, agency: str, max_size: int, interval_s: float,
              sealed_at: str) -> tuple[int, list[str]]:
        """Claim up to ``max_size`` of ``agency``'s pending records into a new batch if they are ripe.

        Returns how many were claimed and the orphans: pending entries whose
        record is not stored, taken out of the pending list and left in no batch
        (the caller reports them). All or nothing: a failure claims nothing.
        """
        now = now_ms()
        keys = [f"ap:pending:{agency}", f"ap:rec:{agency}", f"ap:recbatch:{agency}", f"ap:batch:{batch_id}",
                f"ap:batch:{batch_id}:members", "ap:stage:claimed", "ap:pending_agencies", "ap:pending_count"]
        args = [batch_id, agency, now, max_size, now - int(interval_s * 1000), sealed_at]
        reply = self._call(self._claim, keys=keys, args=args)
        return int(reply[0]), list(reply[1:])

    def batch(self, batch_id: str) -> dict[str, str]:
        return dict(self._call(self.r.hgetall, f"ap:batch:{batch_id}"))

    def load_batch(self, batch_id: str) -> SealedBatch:
        """Rebuild the sealed tree of a claimed batch from its members and their stored salts."""
        return self.load_batch_with_times(batch_id)[0]

    def load_batch_with_times(self, batch_id: str) -> tuple[SealedBatch, list[int]]:
        """The sealed batch and when each of its records was accepted (ms), in leaf order."""
        info = self.batch(batch_id)
        if not info:
            raise InputError(f"no batch {batch_id}")
        commitments, accepted = [], []
        fromhex = bytes.fromhex
        for member in self._call(self.r.lrange, f"ap:batch:{batch_id}:members", 0, -1):
            agency, rid, value = member.split(SEP)
            digest, salt, ms = value.split(":")
            commitments.append(Commitment(agency, rid, fromhex(digest), fromhex(salt)))
            accepted.append(int(ms))
        return SealedBatch(batch_id, info["sealed_at"], commitments), accepted

    def advance(self, batch_id: str, state: str, archived_records: int = 0, expect: str = "",
                letter: str = "", **fields: str) -> bool:
        """Record that a batch reached ``state`` (sealed, anchored, archived or failed), with its new fields.

        Atomic, and a compare-and-swap when ``expect`` names the state it must
        be in; an archived batch is never changed, and a batch already in
        ``state`` is left alone. ``letter`` is pushed to the dead letters in the
        same step. Returns False when nothing changed, so of two racing re-runs
        only one counts the batch.
        """
        keys = [f"ap:batch:{batch_id}", *(f"ap:stage:{s}" for s in STAGES), f"ap:stage:{state}",
                "ap:archived_records", "ap:deadletter"]
        args: list[object] = [batch_id, state, now_ms(), archived_records, expect, letter]
        for k, v in fields.items():
            args += [k, v]
        return bool(self._call(self._advance, keys=keys, args=args))

    def in_stage(self, state: str, older_than_ms: int | None = None, limit: int = 1000) -> list[str]:
        top = "+inf" if older_than_ms is None else older_than_ms
        return list(self._call(self.r.zrangebyscore, f"ap:stage:{state}", "-inf", top, start=0, num=limit))

    def stage_counts(self) -> dict[str, int]:
        """How many batches wait in each stage."""
        pipe = self.r.pipeline(transaction=False)
        for s in STAGES:
            pipe.zcard(f"ap:stage:{s}")
        return dict(zip(STAGES, map(int, self._call(pipe.execute)), strict=True))

    def archived_records(self) -> int:
        return int(self._call(self.r.get, "ap:archived_records") or 0)

    def accept_to_archived(self, since_ms: int = 0) -> list[float]:
        """Seconds from accept to archived, per record of every archived batch created since ``since_ms``.

        Scans every batch: for demos and benchmarks, not for a running service.
        """
        out: list[float] = []
        for key in self._call(lambda: list(self.r.scan_iter("ap:batch:*:members", count=1000))):
            info = self._call(self.r.hgetall, key.rsplit(":", 1)[0])
            if info.get("state") != "archived" or int(info["created"]) < since_ms:
                continue
            members = self._call(self.r.lrange, key, 0, -1)
            out += [(int(info["updated"]) - int(m.rsplit(":", 1)[1])) / 1000 for m in members]
        return sorted(out)

    def mark_checkpoint(self) -> None:
        self._call(self.r.set, "ap:checkpoint_ms", now_ms())

    def checkpoint_age(self) -> float | None:
        """Seconds since the anchor stage last published a checkpoint, or None if never."""
        ms = self._call(self.r.get, "ap:checkpoint_ms")
        return None if ms is None else (now_ms() - int(ms)) / 1000

    # -- failures --------------------------------------------------------------------------

    def dead_letter(self, what: str, args: object, error: str) -> None:
        """Keep failed work for people to look at (``ap:deadletter``); the reconciler leaves it alone."""
        doc = {"task": what, "args": args, "error": error, "at": now_ms()}
        self._call(self.r.rpush, "ap:deadletter", json.dumps(doc))

    def fail_batch(self, batch_id: str, stage: str, error: str) -> bool:
        """Take a batch that cannot go on out of its stage (state ``failed``) and dead-letter it, in one
        atomic step; a batch already failed or archived is left alone (False)."""
        letter = json.dumps({"task": stage, "args": [batch_id], "error": error, "at": now_ms()})
        return self.advance(batch_id, "failed", letter=letter, error=f"{stage}: {error}"[:2000])

    def redrive(self, batch_id: str) -> str:
        """Put a failed batch back in the stage it failed in (after its cause is fixed); return that stage."""
        info = self.batch(batch_id)
        if info.get("state") != "failed":
            raise InputError(f"batch {batch_id} is {info.get('state', 'unknown')}, not failed")
        stage = "anchored" if info.get("anchor") else "sealed" if info.get("root") else "claimed"
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(f"ap:batch:{batch_id}", mapping={"state": stage, "updated": str(now_ms())})
        pipe.zrem("ap:stage:failed", batch_id)
        pipe.zadd(f"ap:stage:{stage}", {batch_id: 0})  # long overdue: the reconciler takes it at its next tick
        self._call(pipe.execute)
        return stage

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self._call(self.r.lrange, "ap:deadletter", 0, -1)]

    # -- queues ----------------------------------------------------------------------------

    def queue_lengths(self, queues: tuple[str, ...]) -> dict[str, int]:
        """Messages waiting in each Celery queue (lists of the same name on the broker's Redis)."""
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            pipe.llen(q)
        return dict(zip(queues, map(int, self._call(pipe.execute)), strict=True))

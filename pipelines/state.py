"""The pipeline's durable state in Redis (with AOF): accepted records, pending pool, batches.

Keys (all prefixed ``ap:``):

- ``rec:<agency>`` hash: record id → ``<content sha256 hex>:<salt hex>:<accepted ms>``
- ``recbatch:<agency>`` hash: record id → batch id, set when the record is claimed
- ``pending`` list: ``<accepted ms>\\x1f<agency>\\x1f<id>``, oldest first
- ``batch:<id>`` hash: state, sealed_at, size, created, root, anchor (receipt JSON)
- ``batch:<id>:members`` list: ``<agency>\\x1f<id>\\x1f<stored record value>`` in leaf order
- ``stage:<state>`` sorted sets (claimed, sealed, anchored): batch id → last change ms
- ``deadletter`` list: JSON of work that failed permanently

Accepting and claiming are Lua scripts, so each is all-or-nothing. A batch's
membership, salts and seal time are fixed when it is claimed, so every later
stage is a pure function of this state and may run any number of times.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from pipelines.core.batch import Commitment, SealedBatch
from pipelines.errors import AnchorpipeError, InputError, StorageError

SEP = "\x1f"

_ACCEPT = """
local rec, pending, agency, now = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 3 do
  local old = redis.call('HGET', rec, ARGV[i])
  if old and string.sub(old, 1, 64) ~= ARGV[i + 1] then
    return {'conflict', ARGV[i]}
  end
  out[#out + 1] = old or false
end
local depth = redis.call('LLEN', pending)
for i = 3, #ARGV, 3 do
  local n = (i - 3) / 3 + 1
  if not out[n] then
    local value = ARGV[i + 1] .. ':' .. ARGV[i + 2] .. ':' .. now
    if redis.call('HSETNX', rec, ARGV[i], value) == 1 then
      redis.call('RPUSH', pending, now .. '\\31' .. agency .. '\\31' .. ARGV[i])
    end
    out[n] = redis.call('HGET', rec, ARGV[i])
  end
end
local reply = {'ok', depth}
for n = 1, #out do reply[n + 2] = out[n] end
return reply
"""

_CLAIM = """
local pending, batch, now, max, ripe_before, sealed_at = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local depth = redis.call('LLEN', pending)
if depth == 0 then return 0 end
if depth < max then
  local head = redis.call('LINDEX', pending, 0)
  local first = tonumber(string.match(head, '^(%d+)'))
  if first > ripe_before then return 0 end
end
local items = redis.call('LPOP', pending, max)
local members = 'ap:batch:' .. batch .. ':members'
for _, item in ipairs(items) do
  local _, _, agency, id = string.find(item, '^%d+\\31([^\\31]*)\\31(.*)$')
  local value = redis.call('HGET', 'ap:rec:' .. agency, id)
  redis.call('RPUSH', members, agency .. '\\31' .. id .. '\\31' .. value)
  redis.call('HSET', 'ap:recbatch:' .. agency, id, batch)
end
redis.call('HSET', 'ap:batch:' .. batch, 'state', 'claimed', 'sealed_at', sealed_at, 'size', #items, 'created', now)
redis.call('ZADD', 'ap:stage:claimed', now, batch)
return #items
"""


_ADVANCE = """
local batch, state, now, count, expected = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local old = redis.call('HGET', batch, 'state')
if old == 'archived' then return 0 end
if expected ~= '' and old ~= expected then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSET', batch, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', batch, 'state', state, 'updated', now)
local id = string.sub(batch, 10)
for _, s in ipairs({'claimed', 'sealed', 'anchored'}) do redis.call('ZREM', 'ap:stage:' .. s, id) end
if state == 'archived' then
  redis.call('INCRBY', 'ap:archived_records', count)
else
  redis.call('ZADD', 'ap:stage:' .. state, now, id)
end
return 1
"""


class PersistenceError(AnchorpipeError):
    """Redis would not keep accepted records across a restart."""


@dataclass(frozen=True)
class Accepted:
    """One record's stored state after an accept: digest, salt, accept time, and whether it is new."""

    id: str
    content_sha256: bytes
    salt: bytes
    accepted_ms: int
    duplicate: bool


def now_ms() -> int:
    return int(time.time() * 1000)


class State:
    """Typed access to the pipeline's Redis state; every Redis error becomes a transient StorageError."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._accept = client.register_script(_ACCEPT)
        self._claim = client.register_script(_CLAIM)
        self._advance = client.register_script(_ADVANCE)

    @classmethod
    def connect(cls, url: str) -> State:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30))

    def check_persistence(self) -> None:
        """Refuse a Redis that would lose accepted records on restart (no AOF)."""
        try:
            aof = self.r.config_get("appendonly").get("appendonly")
        except redis.RedisError as exc:
            raise StorageError(f"cannot reach Redis: {exc}", transient=True) from exc
        if aof != "yes":
            raise PersistenceError("Redis has appendonly=no: accepted records would not survive a restart")

    def accept(self, agency: str, records: list[tuple[str, bytes, bytes]]) -> tuple[list[Accepted], int]:
        """Store ``(id, content sha256, salt)`` records atomically; return their states and the prior depth.

        Idempotent per (agency, id): a record already stored with the same digest
        keeps its first salt and is marked duplicate. A stored id with another
        digest raises ConflictRecord and nothing of the request is written.
        """
        argv: list[str] = [agency, str(now_ms())]
        for rid, digest, salt in records:
            argv += [rid, digest.hex(), salt.hex()]
        try:
            reply = self._accept(keys=[f"ap:rec:{agency}", "ap:pending"], args=argv)
        except redis.RedisError as exc:
            raise StorageError(f"Redis failed while accepting records: {exc}", transient=True) from exc
        if reply[0] == "conflict":
            raise ConflictRecord(reply[1])
        out = []
        for (rid, digest, salt), value in zip(records, reply[2:]):
            stored_digest, stored_salt, ms = value.split(":")
            duplicate = stored_salt != salt.hex()
            out.append(Accepted(rid, bytes.fromhex(stored_digest), bytes.fromhex(stored_salt), int(ms), duplicate))
        return out, int(reply[1])

    def claim(self, batch_id: str, max_size: int, interval_s: float, sealed_at: str) -> int:
        """Claim up to ``max_size`` pending records into a new batch if they are ripe; return how many."""
        now = now_ms()
        ripe_before = now - int(interval_s * 1000)
        try:
            return int(self._claim(keys=["ap:pending"], args=[batch_id, now, max_size, ripe_before, sealed_at]))
        except redis.RedisError as exc:
            raise StorageError(f"Redis failed while claiming: {exc}", transient=True) from exc

    def batch(self, batch_id: str) -> dict[str, str]:
        return self._call(self.r.hgetall, f"ap:batch:{batch_id}")

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
                **fields: str) -> bool:
        """Record that a batch reached ``state`` (sealed, anchored or archived), with its new fields.

        Atomic, and a compare-and-swap when ``expect`` names the state it must
        be in; an archived batch is never changed. Returns False when nothing
        changed, so of two racing re-runs only one counts the batch.
        """
        args: list[object] = [state, now_ms(), archived_records, expect]
        for k, v in fields.items():
            args += [k, v]
        return bool(self._call(self._advance, keys=[f"ap:batch:{batch_id}"], args=args))

    def in_stage(self, state: str, older_than_ms: int | None = None, limit: int = 1000) -> list[str]:
        top = "+inf" if older_than_ms is None else older_than_ms
        return self._call(self.r.zrangebyscore, f"ap:stage:{state}", "-inf", top, start=0, num=limit)

    def record(self, agency: str, rid: str) -> tuple[str, str | None] | None:
        """(stored value, batch id or None) of a record, or None if it was never accepted."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(f"ap:rec:{agency}", rid)
        pipe.hget(f"ap:recbatch:{agency}", rid)
        value, batch_id = self._call(pipe.execute)
        return None if value is None else (value, batch_id)

    def archived_records(self) -> int:
        return int(self._call(self.r.get, "ap:archived_records") or 0)

    def mark_checkpoint(self) -> None:
        self._call(self.r.set, "ap:checkpoint_ms", now_ms())

    def checkpoint_age(self) -> float | None:
        """Seconds since the anchor stage last published a checkpoint, or None if never."""
        ms = self._call(self.r.get, "ap:checkpoint_ms")
        return None if ms is None else (now_ms() - int(ms)) / 1000

    def dead_letter(self, what: str, args: object, error: str) -> None:
        """Keep failed work for people to look at (``ap:deadletter``); the reconciler leaves it alone."""
        doc = {"task": what, "args": args, "error": error, "at": now_ms()}
        self._call(self.r.rpush, "ap:deadletter", json.dumps(doc))

    def fail_batch(self, batch_id: str, stage: str, error: str) -> None:
        """Take a batch that cannot go on out of its stage (state ``failed``) and dead-letter it."""
        self.advance(batch_id, "failed", error=f"{stage}: {error}"[:2000])
        self.dead_letter(stage, [batch_id], error)

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

    def dead_letters(self) -> list[dict]:
        return [json.loads(d) for d in self._call(self.r.lrange, "ap:deadletter", 0, -1)]

    def pending_depth(self) -> int:
        return int(self._call(self.r.llen, "ap:pending"))

    def oldest_pending(self, scan: int = 10_000) -> dict[str, int]:
        """Accept time (ms) of the oldest pending record per agency, within the first ``scan`` entries."""
        oldest: dict[str, int] = {}
        for item in self._call(self.r.lrange, "ap:pending", 0, scan - 1):
            ms, agency, _ = item.split(SEP, 2)
            oldest.setdefault(agency, int(ms))
        return oldest

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StorageError(f"Redis failed: {exc}", transient=True) from exc


class ConflictRecord(InputError):
    """A record id is already stored with different content."""

    def __init__(self, record_id: str) -> None:
        super().__init__(f"record {record_id!r} was already accepted with different content")
        self.record_id = record_id

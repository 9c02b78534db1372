"""Pull-source state in Redis (part of :class:`~pipelines.state.redis.RedisState`).

Per source ``<name>``: ``ap:src:<name>`` (cursor, failures, next run time, last
error, last success), ``…:finished`` (units fully read), ``…:quarantine``
(position → reason and item) and ``…:lock`` (the run lock, with a TTL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipelines.state import now_ms

RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
#: KEYS: lock, source hash, finished units. ARGV: token, cursor ('' to keep), now, then finished units.
COMMIT_PAGE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'cursor', ARGV[2]) end
for i = 4, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[3]) end
return 1
"""
RENEW_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


class SourcesInRedis:
    """Mixed into RedisState, whose ``r``, ``_call`` and lock scripts it uses."""

    r: Any
    _call: Callable[..., Any]
    _release: Any
    _renew: Any
    _commit_page: Any

    def source_status(self, name: str) -> dict[str, str]:
        """A source's cursor, failures, next run time (ms), last error and last success."""
        return dict(self._call(self.r.hgetall, f"ap:src:{name}"))

    def source_cursor(self, name: str) -> str | None:
        value = self._call(self.r.hget, f"ap:src:{name}", "cursor")
        return None if value is None else str(value)

    def lock_source(self, name: str, token: str, ttl_ms: int) -> bool:
        """Take a source's run lock for ``ttl_ms`` unless another run holds it."""
        return bool(self._call(self.r.set, f"ap:src:{name}:lock", token, nx=True, px=ttl_ms))

    def renew_source_lock(self, name: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock if ``token`` still holds it; False if it expired and was lost."""
        return bool(self._call(self._renew, keys=[f"ap:src:{name}:lock"], args=[token, ttl_ms]))

    def release_source_lock(self, name: str, token: str) -> None:
        self._call(self._release, keys=[f"ap:src:{name}:lock"], args=[token])

    def commit_source_page(self, name: str, token: str, cursor: str | None, finished: list[str]) -> bool:
        """Store the cursor past a page and the units it finished, atomically, only while ``token``
        holds the run lock (the pull's commit point); False, and nothing stored, if the lock was lost."""
        keys = [f"ap:src:{name}:lock", f"ap:src:{name}", f"ap:src:{name}:finished"]
        return bool(self._call(self._commit_page, keys=keys, args=[token, cursor or "", now_ms(), *finished]))

    def source_unit_finished(self, name: str, unit: str) -> bool:
        return bool(self._call(self.r.hexists, f"ap:src:{name}:finished", unit))

    def source_succeeded(self, name: str) -> None:
        mapping = {"failures": 0, "next_at": 0, "last_ok": now_ms(), "last_error": ""}
        self._call(self.r.hset, f"ap:src:{name}", mapping=mapping)

    def source_failed(self, name: str, error: str, backoff: Callable[[int], float]) -> int:
        """Count a failed run, wait ``backoff(failures)`` seconds before the next; return the failures."""
        failures = int(self._call(self.r.hincrby, f"ap:src:{name}", "failures", 1))
        next_at = now_ms() + int(backoff(failures) * 1000)
        self._call(self.r.hset, f"ap:src:{name}", mapping={"next_at": next_at, "last_error": error})
        return failures

    def quarantine(self, name: str, position: str, doc: dict[str, Any]) -> None:
        self._call(self.r.hset, f"ap:src:{name}:quarantine", position, json.dumps(doc, default=str))

    def quarantined(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self._call(self.r.hvals, f"ap:src:{name}:quarantine")]

    def quarantine_size(self, name: str) -> int:
        return int(self._call(self.r.hlen, f"ap:src:{name}:quarantine"))

    def unquarantine(self, name: str, positions: list[str]) -> None:
        if positions:
            self._call(self.r.hdel, f"ap:src:{name}:quarantine", *positions)

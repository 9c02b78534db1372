"""API keys in Redis (part of :class:`~pipelines.state.redis.RedisState`): ``ap:keys`` maps the SHA-256
of a key to its principal, ``ap:agencies`` lists the agencies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class KeysInRedis:
    """Mixed into RedisState, whose ``r`` (client) and ``_call`` (error translation) it uses."""

    r: Any
    _call: Callable[..., Any]

    def add_agency(self, name: str) -> None:
        self._call(self.r.sadd, "ap:agencies", name)

    def agencies(self) -> set[str]:
        return set(self._call(self.r.smembers, "ap:agencies"))

    def put_key(self, digest: str, principal: dict[str, Any]) -> None:
        """Store an API key's principal under the key's digest (never the key itself)."""
        self._call(self.r.hset, "ap:keys", digest, json.dumps(principal))

    def get_key(self, digest: str) -> dict[str, Any] | None:
        raw = self._call(self.r.hget, "ap:keys", digest)
        return None if raw is None else dict(json.loads(raw))

    def keys(self) -> dict[str, dict[str, Any]]:
        """Every stored key's digest and principal."""
        return {d: json.loads(raw) for d, raw in self._call(self.r.hgetall, "ap:keys").items()}

    def delete_key(self, digest: str) -> None:
        self._call(self.r.hdel, "ap:keys", digest)


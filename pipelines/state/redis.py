"""Redis, which carries only work in flight: the Celery broker's queues.

No record, batch or key lives here (PostgreSQL holds them, :mod:`.postgres`), so
Redis may restart empty: the reconciler re-sends what was in flight. This module
is the only one that speaks to Redis itself (Celery's transport aside); it reads
the queue depths the metrics and autoscalers watch.
"""

from __future__ import annotations

import redis

from pipelines.errors import RateLimited, StateError


class BrokerQueues:
    """Depths of the Celery queues on the broker's Redis (lists named after the queues)."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30, socket_timeout=5,
                                      socket_connect_timeout=5)

    def ping(self) -> None:
        try:
            self.r.ping()
        except redis.RedisError as exc:
            raise StateError(f"Redis failed: {exc}", transient=True) from exc

    def started_empty(self) -> bool:
        """True the first time it is asked after the broker started without its data (its messages, and
        so the work in flight, are gone), then False until that happens again."""
        try:
            return bool(self.r.set("anchorpipe:broker-seen", "1", nx=True))
        except redis.RedisError as exc:
            raise StateError(f"Redis failed: {exc}", transient=True) from exc

    def lengths(self, queues: tuple[str, ...]) -> dict[str, int]:
        """Messages waiting in each queue."""
        try:
            pipe = self.r.pipeline(transaction=False)
            for q in queues:
                pipe.llen(q)
            return dict(zip(queues, map(int, pipe.execute()), strict=True))
        except redis.RedisError as exc:
            raise StateError(f"Redis failed: {exc}", transient=True) from exc


class FailureLimiter:
    """Refused requests counted per client (an address, a presented key's digest) in Redis, shared by every
    API process, in windows of ``window`` seconds: a client past ``limit`` in a window is blocked until it
    ends. Redis failing blocks no one (the limit is a shield, not a gate)."""

    #: After Redis fails, it is not asked again for this many seconds (every request would wait on it).
    PAUSE_S = 5.0

    def __init__(self, url: str, limit: int, window: int = 10) -> None:
        self.r = redis.Redis.from_url(url, health_check_interval=30, socket_timeout=1, socket_connect_timeout=1)
        self.limit, self.window = limit, window
        self.paused_until = 0.0

    def _keys(self, who: list[str], now: float) -> list[str]:
        return [f"anchorpipe:refused:{w}:{int(now) // self.window}" for w in who]

    def blocked(self, who: list[str], now: float) -> int:
        """Seconds until the window ends if any of ``who`` is past the limit in it, else 0."""
        if now < self.paused_until:
            return 0
        try:
            counts = self.r.mget(self._keys(who, now))
        except redis.RedisError:
            self.paused_until = now + self.PAUSE_S
            return 0
        if any(c is not None and int(c) >= self.limit for c in counts):
            return max(1, self.window - int(now) % self.window)
        return 0

    def refused(self, who: list[str], now: float) -> None:
        """Count one refused request for each of ``who``."""
        if now < self.paused_until:
            return
        try:
            pipe = self.r.pipeline(transaction=False)
            for key in self._keys(who, now):
                pipe.incr(key)
                pipe.expire(key, self.window * 2)
            pipe.execute()
        except redis.RedisError:
            self.paused_until = now + self.PAUSE_S


class RateLimiter:
    """Records a second per agency, counted in Redis (shared by every API process) in one-second windows: a
    request that would take its agency past its limit is refused whole and counts for nothing."""

    def __init__(self, url: str, limits: dict[str, int], default: int) -> None:
        self.r = redis.Redis.from_url(url, health_check_interval=30, socket_timeout=5, socket_connect_timeout=5)
        self.limits, self.default = limits, default

    def limit(self, agency: str) -> int:
        return self.limits.get(agency, self.default)

    def take(self, agency: str, records: int, now: float) -> None:
        """Count ``records`` for ``agency`` in the current second, or raise :class:`RateLimited`."""
        limit = self.limit(agency)
        if limit <= 0:
            return
        window = int(now)
        key = f"anchorpipe:rate:{agency}:{window}"
        try:
            pipe = self.r.pipeline(transaction=True)
            pipe.incrby(key, records)
            pipe.expire(key, 2)
            used = int(pipe.execute()[0])
            if used > limit:
                self.r.decrby(key, records)
        except redis.RedisError as exc:
            raise StateError(f"Redis failed: {exc}", transient=True) from exc
        if used > limit:
            wait = max(1, int(window + 1 - now + 0.999)) if records <= limit else 1
            raise RateLimited(f"agency {agency} is over its {limit} records/s"
                              + ("" if records <= limit else f" (this request alone has {records}: split it)"),
                              retry_after=wait, whole=records > limit)

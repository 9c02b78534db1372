"""The pull stage: read a source page by page into the intake path, at least once, never twice.

Per page, in this order: fetch (no side effect at the agency) → validate →
accept the valid records (atomic and idempotent on (agency, id), so a re-read
page costs nothing) → quarantine the invalid ones → store the cursor (commit
point) → let the source finish what it fully read. A crash anywhere before the
commit point re-reads the page; a crash after it re-runs an idempotent finish.

Redis keys per source ``<name>``: ``ap:src:<name>`` (cursor, failures, next run
time, last error), ``…:finished`` (units fully read), ``…:quarantine``
(position → reason and item), ``…:lock`` (the run lock, with a TTL).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

import redis

from pipelines import faultpoints, metrics
from pipelines.errors import AnchorpipeError, InputError, StorageError
from pipelines.intake import store_records
from pipelines.records import RecordInput, parse_record
from pipelines.sources import Page, Pulled, Source
from pipelines.sources.config import SourceConfig
from pipelines.state import ConflictRecord, State, now_ms

BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 3600.0
MAX_PAGES_PER_RUN = 200

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


@dataclass
class RunResult:
    source: str
    status: str  # ok, locked, paused, backoff, failed
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    pages: int = 0
    error: str | None = None
    positions: list[str] = field(default_factory=list)


def build_source(cfg: SourceConfig, state: State) -> Source:
    """The connector for a configured source."""
    key = f"ap:src:{cfg.name}:finished"
    if cfg.kind == "http":
        from pipelines.sources.http import HttpFeed

        return HttpFeed(cfg)
    if cfg.kind == "s3":
        from pipelines.sources.s3 import S3Prefix

        return S3Prefix(cfg, lambda unit: bool(state.r.hexists(key, unit)))
    if cfg.kind == "sql":
        from pipelines.sources.sql import SqlTable

        return SqlTable(cfg)
    from pipelines.sources.folder import DropFolder

    return DropFolder(cfg)


class SourceRunner:
    """Runs one configured source against the pipeline's Redis state."""

    def __init__(self, cfg: SourceConfig, state: State, source: Source | None = None, *,
                 max_pending: int = 1_000_000, lock_ttl: float = 300.0) -> None:
        self.cfg, self.state = cfg, state
        self.source = source or build_source(cfg, state)
        self.max_pending, self.lock_ttl_ms = max_pending, int(lock_ttl * 1000)
        self.key = f"ap:src:{cfg.name}"

    def cursor(self) -> str | None:
        return self.state.r.hget(self.key, "cursor")

    def run(self, max_pages: int = MAX_PAGES_PER_RUN) -> RunResult:
        """One scheduled run: skipped when backing off, under backpressure, or already running elsewhere."""
        try:
            return self._run(max_pages)
        except redis.RedisError as exc:  # the pipeline's own state is unreachable: a transient failure
            raise StorageError(f"source {self.cfg.name}: Redis failed: {exc}", transient=True) from exc

    def _run(self, max_pages: int) -> RunResult:
        info = self.state.r.hgetall(self.key)
        if now_ms() < int(info.get("next_at", 0)):
            return RunResult(self.cfg.name, "backoff", error=info.get("last_error"))
        if self.state.pending_depth() > self.max_pending:
            metrics.PULL_PAUSED.labels(self.cfg.name).inc()
            return RunResult(self.cfg.name, "paused")
        token = secrets.token_hex(16)
        if not self.state.r.set(f"{self.key}:lock", token, nx=True, px=self.lock_ttl_ms):
            return RunResult(self.cfg.name, "locked")
        try:
            result = self._pages(token, max_pages)
        except AnchorpipeError as exc:
            return self._failed(exc)
        finally:
            self.state.r.eval(_RELEASE, 1, f"{self.key}:lock", token)
        self.state.r.hset(self.key, mapping={"failures": 0, "next_at": 0, "last_ok": now_ms(), "last_error": ""})
        return result

    def _pages(self, token: str, max_pages: int) -> RunResult:
        result = RunResult(self.cfg.name, "ok")
        for _ in range(max_pages):
            page = self.source.fetch(self.cursor(), self.cfg.page_size)
            self._ingest(page.items, result)
            faultpoints.reached("pull.accepted")
            # Commit point: the page's records are durable, so the cursor may move past them.
            self._commit(page)
            self.source.finish(page.finished)
            result.pages += 1
            if not self.state.r.eval(_RENEW, 1, f"{self.key}:lock", token, self.lock_ttl_ms):
                raise InputError(f"source {self.cfg.name}: lost its run lock (a run took longer than its TTL)")
            if not page.more:
                break
        return result

    def _commit(self, page: Page) -> None:
        pipe = self.state.r.pipeline(transaction=True)
        if page.next_cursor is not None:
            pipe.hset(self.key, "cursor", page.next_cursor)
        for unit in page.finished:
            pipe.hset(f"{self.key}:finished", unit, now_ms())
        pipe.execute()

    def _ingest(self, items: list[Pulled], result: RunResult) -> None:
        valid: dict[str, tuple[Pulled, RecordInput]] = {}
        for item in items:
            problem = item.problem
            if problem is None:
                try:
                    record = parse_record(item.record)
                except InputError as exc:
                    problem = str(exc)
                else:
                    seen = valid.get(record.id)
                    if seen is None or seen[1] == record:
                        valid[record.id] = (item, record)
                        continue
                    problem = f"record id {record.id!r} appears again with other content at {seen[0].position}"
            self._quarantine(item, problem, result)
        while valid:
            try:
                stored = store_records(self.state, self.cfg.agency, [r for _, r in valid.values()])
                break
            except ConflictRecord as exc:  # set that one aside; never block the records behind it
                item, _ = valid.pop(exc.record_id)
                self._quarantine(item, str(exc), result)
        else:
            stored = []
        new = sum(not s.duplicate for s in stored)
        result.accepted += new
        result.duplicates += len(stored) - new
        metrics.PULLED.labels(self.cfg.name).inc(new)

    def _quarantine(self, item: Pulled, reason: str, result: RunResult) -> None:
        doc = {"position": item.position, "reason": reason, "item": item.record, "at": now_ms()}
        self.state.r.hset(f"{self.key}:quarantine", item.position, json.dumps(doc, default=str))
        result.quarantined += 1
        result.positions.append(item.position)
        metrics.QUARANTINED.labels(self.cfg.name).inc()

    def _failed(self, exc: AnchorpipeError) -> RunResult:
        failures = int(self.state.r.hincrby(self.key, "failures", 1))
        delay = backoff_seconds(failures)
        self.state.r.hset(self.key, mapping={"next_at": now_ms() + int(delay * 1000), "last_error": str(exc)})
        metrics.PULL_FAILURES.labels(self.cfg.name).inc()
        try:
            import sentry_sdk

            sentry_sdk.capture_message(f"source {self.cfg.name} failed ({failures} in a row): {exc}", level="error")
        except ImportError:
            pass
        return RunResult(self.cfg.name, "failed", error=str(exc))

    def quarantine(self) -> list[dict]:
        return [json.loads(v) for v in self.state.r.hgetall(f"{self.key}:quarantine").values()]

    def replay(self) -> tuple[int, int]:
        """Try every quarantined item again; return (accepted now, still quarantined)."""
        entries = self.quarantine()
        result = RunResult(self.cfg.name, "ok")
        for doc in entries:
            self.state.r.hdel(f"{self.key}:quarantine", doc["position"])
        self._ingest([Pulled(d["position"], d["item"]) for d in entries], result)
        return result.accepted + result.duplicates, result.quarantined

    def preview(self) -> tuple[Page, list[tuple[Pulled, str | None]]]:
        """Fetch one page from the stored cursor and say what would happen to each item; change nothing."""
        page = self.source.fetch(self.cursor(), self.cfg.page_size)
        verdicts = []
        for item in page.items:
            problem = item.problem
            if problem is None:
                try:
                    parse_record(item.record)
                except InputError as exc:
                    problem = str(exc)
            verdicts.append((item, problem))
        return page, verdicts


def backoff_seconds(failures: int) -> float:
    """How long a source waits after ``failures`` failed runs in a row: 5 s, doubling, at most an hour."""
    return min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S) if failures else 0.0

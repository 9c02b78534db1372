"""The pull stage: read a source page by page into the intake path, at least once, never twice.

Per page, in this order: fetch (no side effect at the agency) → validate and
quarantine the invalid items (a re-read overwrites the same position) → accept
the valid records (atomic and idempotent on (agency, id), so a re-read page
costs nothing; one conflicting record is quarantined and the rest accepted) →
store the cursor (commit point) → let the source finish what it fully read. A crash anywhere before the
commit point re-reads the page; a crash after it re-runs an idempotent finish.

Per source the state keeps its cursor, failures, next run time and last error,
the units fully read, the quarantine (position → reason and item) and a run
lock with a TTL (see the state port).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core.commitment import RecordInput
from pipelines.errors import AnchorpipeError, ConflictRecord, FieldError, InputError, StateError
from pipelines.intake.records import parse_record, unique
from pipelines.intake.submit import store_records
from pipelines.ops import faultpoints, metrics
from pipelines.ops.logs import event
from pipelines.ops.monitoring import report_message
from pipelines.ops.redact import redact
from pipelines.sources import Page, Pulled, Source
from pipelines.sources.config import SourceConfig
from pipelines.state import now_ms

if TYPE_CHECKING:
    from pipelines.state import PullState

BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 3600.0
MAX_PAGES_PER_RUN = 200


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


class SourceRunner:
    """Runs one configured source (its connector built by the runtime) into the pipeline's state."""

    def __init__(self, cfg: SourceConfig, state: PullState, source: Source, *,
                 max_pending: int = 1_000_000, lock_ttl: float = 300.0) -> None:
        self.cfg, self.state = cfg, state
        self.source = source
        self.max_pending, self.lock_ttl_ms = max_pending, int(lock_ttl * 1000)
        self.name = cfg.name

    def cursor(self) -> str | None:
        return self.state.source_cursor(self.name)

    def run(self, max_pages: int = MAX_PAGES_PER_RUN) -> RunResult:
        """One scheduled run: skipped when backing off, under backpressure, or already running elsewhere.

        A failure of the pipeline's own state raises StateError (transient) and
        is not counted against the source.
        """
        info = self.state.source_status(self.name)
        if now_ms() < int(info.get("next_at", 0)):
            return RunResult(self.name, "backoff", error=info.get("last_error"))
        if self.state.pending_depth(limit=self.max_pending + 1) > self.max_pending:
            metrics.PULL_PAUSED.labels(self.name).inc()
            return RunResult(self.name, "paused")
        token = secrets.token_hex(16)
        if not self.state.lock_source(self.name, token, self.lock_ttl_ms):
            return RunResult(self.name, "locked")
        t = time.perf_counter()
        try:
            result = self._pages(token, max_pages)
        except StateError:
            raise
        except AnchorpipeError as exc:
            result = self._failed(exc)
        else:
            self.state.source_succeeded(self.name)
        finally:
            self.state.release_source_lock(self.name, token)
        idle = result.status == "ok" and not (result.accepted or result.duplicates or result.quarantined)
        event("pulled", f"pulled source {self.name}: {result.status}" + (", nothing new" if idle else ""),
              level="debug" if idle else "info", source=self.name, agency=self.cfg.agency,  # quiet when idle
              status=result.status, accepted=result.accepted, duplicates=result.duplicates,
              quarantined=result.quarantined, pages=result.pages, error=result.error,
              seconds=round(time.perf_counter() - t, 3))
        return result

    def _pages(self, token: str, max_pages: int) -> RunResult:
        result = RunResult(self.cfg.name, "ok")
        for _ in range(max_pages):
            page = self.source.fetch(self.cursor(), self.cfg.page_size)
            self._ingest(page.items, result)
            faultpoints.reached("pull.accepted")
            # Commit point: the page's records are durable, so the cursor may move past them, but only
            # while this run still holds the lock (else another run owns the cursor now).
            if not self.state.commit_source_page(self.name, token, page.next_cursor, page.finished):
                raise InputError(f"source {self.name}: lost its run lock (a run took longer than its TTL)")
            self.source.finish(page.finished)
            result.pages += 1
            if not self.state.renew_source_lock(self.name, token, self.lock_ttl_ms):
                raise InputError(f"source {self.name}: lost its run lock (a run took longer than its TTL)")
            if not page.more:
                break
        return result

    @staticmethod
    def _plan(items: list[Pulled]) -> tuple[dict[str, tuple[Pulled, RecordInput]], list[tuple[Pulled, str]]]:
        """Split a page into the records to accept (by id) and the items to quarantine, with reasons."""
        parsed: list[tuple[int, RecordInput]] = []
        bad: list[tuple[Pulled, str]] = []
        for n, item in enumerate(items):
            record, problem = SourceRunner._parse(item)
            if record is not None:
                parsed.append((n, record))
            else:
                bad.append((item, problem or "not a record"))
        kept, repeated = unique(parsed, lambda n: items[n].position)
        bad += [(items[p.position], p.message) for p in repeated]  # same id, other content: the first stands
        return {r.id: (items[n], r) for n, r in kept}, bad

    def _ingest(self, items: list[Pulled], result: RunResult) -> None:
        valid, bad = self._plan(items)
        for item, problem in bad:
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
        metrics.PULLED.labels(self.name).inc(new)

    @staticmethod
    def _parse(item: Pulled) -> tuple[RecordInput | None, str | None]:
        """The item's record, or why it would be quarantined."""
        if item.problem is not None:
            return None, item.problem
        try:
            return parse_record(item.record), None
        except FieldError as exc:
            return None, str(exc)

    def _quarantine(self, item: Pulled, reason: str, result: RunResult) -> None:
        doc = {"position": item.position, "reason": reason, "item": item.record, "at": now_ms()}
        self.state.quarantine(self.name, item.position, doc, agency=self.cfg.agency)
        result.quarantined += 1
        result.positions.append(item.position)
        metrics.QUARANTINED.labels(self.name).inc()

    def _failed(self, exc: AnchorpipeError) -> RunResult:
        error = redact(str(exc))  # a source URL may carry credentials: they never reach the state or Sentry
        failures = self.state.source_failed(self.name, error, backoff_seconds)
        metrics.PULL_FAILURES.labels(self.name).inc()
        report_message(f"source {self.name} failed ({failures} in a row): {error}")
        return RunResult(self.name, "failed", error=error)

    def quarantine(self) -> list[dict[str, Any]]:
        return self.state.quarantined(self.name)

    def drop(self, positions: list[str] | None) -> int:
        """Remove the quarantined items at ``positions`` (all if None) for good; return how many were there."""
        listed = {d["position"] for d in self.quarantine()}
        gone = sorted(listed if positions is None else listed & set(positions))
        self.state.unquarantine(self.name, gone)
        return len(gone)

    def replay(self) -> tuple[int, int]:
        """Try every quarantined item again; return (accepted now, still quarantined).

        An item leaves the quarantine only after it is accepted (durable): a crash
        in between leaves it listed, and replaying it again costs nothing.
        """
        entries = self.quarantine()
        result = RunResult(self.name, "ok")
        self._ingest([Pulled(d["position"], d["item"]) for d in entries], result)
        still = set(result.positions)  # quarantined again, with today's reason
        self.state.unquarantine(self.name, [d["position"] for d in entries if d["position"] not in still])
        return result.accepted + result.duplicates, result.quarantined

    def preview(self) -> tuple[Page, list[tuple[Pulled, str | None]]]:
        """Fetch one page from the stored cursor and say what a run would do with each item; change nothing.

        Uses the run's own plan (validation, duplicates within the page) and checks
        each valid record against what is already stored, as the accept would.
        """
        page = self.source.fetch(self.cursor(), self.cfg.page_size)
        valid, bad = self._plan(page.items)
        reasons: dict[str, str] = {item.position: problem for item, problem in bad}
        stored = self.state.content_digests(self.cfg.agency, list(valid))
        for rid, (item, record) in valid.items():
            if stored.get(rid, record.content_sha256) != record.content_sha256:
                reasons[item.position] = str(ConflictRecord(rid))
        return page, [(item, reasons.get(item.position)) for item in page.items]


def backoff_seconds(failures: int) -> float:
    """How long a source waits after ``failures`` failed runs in a row: 5 s, doubling, at most an hour."""
    return min(BACKOFF_BASE_S * 2 ** (failures - 1), BACKOFF_MAX_S) if failures else 0.0

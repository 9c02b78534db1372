"""The state port: accepted records, the pending pool, batches and their stage, keys, pull sources.

:class:`State` declares it (in four parts); stages, intake and metrics are typed
against it, and only :mod:`pipelines.runtime` names the adapter. The adapter is
:mod:`.postgres` (PostgreSQL is the system of record; its schema migrations are
in ``migrations/``, run by :mod:`.schema`). Redis carries only work in flight:
the Celery broker, whose queue depths :mod:`.redis` reads. Contracts every
adapter keeps:

- Accepting is atomic and idempotent per (agency, id): a record accepted again
  with the same digest keeps its first salt and accept time; another digest
  raises :class:`~pipelines.errors.ConflictRecord` and nothing of the call is
  stored. When ``accept`` returns, the records survive a restart.
- A batch's members, salts and seal time are fixed when it is claimed; later
  stages change only its stage and fields, by compare-and-swap on its stage.
- Every failure of the store itself raises :class:`~pipelines.errors.StateError`
  (transient), never the backend's own exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pipelines.core.batch import SealedBatch

#: The stages a batch waits in before it is archived (``failed`` is outside the flow).
STAGES = ("claimed", "sealed", "anchored")
#: How long a worker's hold on a batch lasts unless renewed (it renews every third of it while it works).
LEASE_MS = 6_000


@dataclass(frozen=True)
class StoredRecord:
    """An accepted record as stored: its digest, salt, accept time, and batch once claimed."""

    id: str
    content_sha256: bytes
    salt: bytes
    accepted_ms: int
    batch_id: str | None


@dataclass(frozen=True)
class BatchInfo:
    """A batch as stored: its stage and what each stage fixed (``root`` once sealed, ``anchor`` and
    ``log_index`` once anchored, ``bundle`` once archived, ``ext_kinds`` and ``anchors_key`` once upgraded)."""

    id: str
    state: str  # claimed, sealed, anchored, archived, failed
    agency: str
    sealed_at: str
    size: int
    created_ms: int
    updated_ms: int
    root: str | None = None
    anchor: str | None = None
    log_index: int | None = None
    bundle: str | None = None
    error: str | None = None
    ext_kinds: tuple[str, ...] = ()
    anchors_key: str | None = None


@dataclass(frozen=True)
class Accepted:
    """One record's stored state after an accept: digest, salt, accept time, and whether it is new."""

    id: str
    content_sha256: bytes
    salt: bytes
    accepted_ms: int
    duplicate: bool


@dataclass(frozen=True)
class Target:
    """One target's progress on a round."""

    size: int
    target: str
    state: str
    receipt: str | None
    txs: list[dict[str, Any]]
    attempts: int
    next_try_ms: int
    error: str | None


@dataclass(frozen=True)
class Round:
    size: int
    note: str
    opened_ms: int
    closed_ms: int | None
    kinds: list[str]
    targets: list[Target]


@dataclass(frozen=True)
class Webhook:
    id: int
    agency: str
    url: str
    events: list[str]
    secret: str


@dataclass(frozen=True)
class Delivery:
    """A webhook's due events, claimed for one delivery until ``lease`` (their next_try_ms: the claim's token)."""

    webhook: Webhook
    events: list[dict[str, Any]]  # {"id", "type", "payload", "created_ms", "attempts"}
    lease: int


def now_ms() -> int:
    return int(time.time() * 1000)


class RecordState(Protocol):
    """Accepted records and the pending pool."""

    def accept(self, agency: str, records: list[tuple[str, bytes, bytes]]) -> list[Accepted]:
        """Store ``(id, content sha256, salt)`` atomically and idempotently; ConflictRecord stores nothing."""
        ...

    def record(self, agency: str, rid: str) -> StoredRecord | None: ...

    def proof_location(self, agency: str, rid: str) -> tuple[str, int, int] | None:
        """(bundle key, offset, length) of an archived record's proof in the archive; None if not archived."""
        ...

    def content_digests(self, agency: str, ids: list[str]) -> dict[str, bytes]: ...
    def pending_depth(self, limit: int | None = None) -> int: ...
    def pending_agencies(self) -> list[str]: ...
    def oldest_pending(self) -> dict[str, int]: ...


class BatchState(Protocol):
    """Batches and their stage; every change is a compare-and-swap on the stage."""

    def claim(self, batch_id: str, agency: str, max_size: int, interval_s: float,
              sealed_at: str) -> tuple[int, list[str]]:
        """Fix a ripe batch's members, salts and seal time, all or nothing; return its size and orphans."""
        ...

    def batch(self, batch_id: str) -> BatchInfo | None:
        """The batch as stored; None if there is no such batch."""
        ...
    def load_batch(self, batch_id: str) -> SealedBatch: ...
    def load_batch_with_times(self, batch_id: str) -> tuple[SealedBatch, list[int]]: ...

    def advance(self, batch_id: str, state: str, archived_records: int = 0, expect: str = "",
                letter: str = "", **fields: object) -> bool: ...

    def in_stage(self, state: str, older_than_ms: int | None = None, limit: int = 1000) -> list[str]: ...

    def lease(self, batch_ids: list[str], ms: int = 0) -> None:
        """Hold or renew a worker's lease on the batches it works on (a stage change releases it)."""
        ...

    def expired_leases(self, state: str, limit: int = 1000) -> list[str]: ...
    def stage_counts(self) -> dict[str, int]: ...

    def oldest_in_stage(self) -> dict[str, int]:
        """When (ms) the longest-waiting batch of each stage entered it (stages with batches only)."""
        ...
    def oldest_batches(self) -> dict[str, tuple[str, int]]:
        """The longest-waiting batch of each stage (stages with batches only): its id and when (ms) it entered."""
        ...
    def archived_records(self) -> int: ...
    def fail_batch(self, batch_id: str, stage: str, error: str) -> bool: ...
    def dead_letter(self, what: str, args: object, error: str) -> None: ...
    def dead_letters(self) -> list[dict[str, Any]]: ...
    def clear_dead_letters(self, everything: bool = False) -> int: ...
    def redrive(self, batch_id: str) -> str: ...


class KeyState(Protocol):
    """API keys, stored by digest only, and the agencies."""

    def add_agency(self, name: str) -> None: ...
    def agencies(self) -> set[str]: ...
    def put_key(self, digest: str, principal: dict[str, Any]) -> None: ...
    def get_key(self, digest: str) -> dict[str, Any] | None: ...
    def keys(self) -> dict[str, dict[str, Any]]: ...
    def delete_key(self, digest: str) -> None: ...


class SourceState(Protocol):
    """Pull sources: cursor, run lock, failures, finished units, quarantine."""

    def source_status(self, name: str) -> dict[str, str]: ...
    def source_cursor(self, name: str) -> str | None: ...
    def lock_source(self, name: str, token: str, ttl_ms: int) -> bool: ...
    def renew_source_lock(self, name: str, token: str, ttl_ms: int) -> bool: ...
    def release_source_lock(self, name: str, token: str) -> None: ...

    def commit_source_page(self, name: str, token: str, cursor: str | None, finished: list[str]) -> bool:
        """The pull's commit point: store the cursor only while ``token`` holds the lock."""
        ...

    def source_unit_finished(self, name: str, unit: str) -> bool: ...
    def source_succeeded(self, name: str) -> None: ...
    def source_failed(self, name: str, error: str, backoff: Callable[[int], float]) -> int: ...
    def quarantine(self, name: str, position: str, doc: dict[str, Any], agency: str | None = None) -> None: ...
    def quarantined(self, name: str) -> list[dict[str, Any]]: ...
    def quarantine_size(self, name: str) -> int: ...
    def unquarantine(self, name: str, positions: list[str]) -> None: ...


class AnchoringState(Protocol):
    """External anchoring rounds and the upgrades of proofs they bring (see :mod:`.postgres_anchorings`)."""

    def open_round(self, size: int, note: str, targets: list[str], interval_ms: int) -> bool: ...
    def open_round_now(self) -> Round | None: ...
    def rounds(self, limit: int = 1, open_only: bool = False) -> list[Round]: ...
    def update_target(self, size: int, target: str, expect: str, **fields: Any) -> bool: ...
    def close_round(self, size: int, kinds: list[str]) -> bool: ...
    def upgradable(self, limit: int = 1000, closed_before_ms: int | None = None) -> list[str]: ...
    def upgrade_for(self, batch_id: str) -> tuple[BatchInfo, Round] | None:
        """An archived batch and the newest closed round that gives it more anchors; None if none does."""
        ...

    def mark_upgraded(self, batch_id: str, size: int, kinds: list[str], done: bool, anchors_key: str) -> bool: ...

    def oldest_unanchored(self) -> int | None: ...
    def round_coverage(self) -> list[dict[str, Any]]: ...


class WebhookOutbox(Protocol):
    """Webhook events waiting for delivery (written in the transaction of what they report). A claim leases
    events to one deliverer; every later call acts only on events still held under that lease."""

    def claim_deliveries(self, now: int, lease_ms: int, per_delivery: int = 100, limit: int = 1000) -> list[Delivery]:
        """Due pending events, grouped by webhook (at most ``per_delivery`` each), leased for ``lease_ms``."""
        ...

    def renew(self, event_ids: list[int], lease: int, until: int) -> list[int]:
        """Extend a claim still held to ``until``; the ids still held."""
        ...

    def delivered(self, event_ids: list[int], lease: int) -> None:
        """Mark the events still held under ``lease`` delivered."""
        ...

    def delivery_failed(self, event_ids: list[int], lease: int, error: str, next_try_ms: int,
                        dead_after: int) -> int:
        """Count a failed attempt: retry at ``next_try_ms``, or dead-letter those past ``dead_after`` attempts;
        how many went to the dead letters."""
        ...


class PipelineState(RecordState, BatchState, AnchoringState, Protocol):
    """What the batch stages use: the pending pool, the batches, and the rounds that upgrade them."""


class PullState(RecordState, SourceState, Protocol):
    """What the pull stage uses: the sources' progress, and the records they bring."""


@runtime_checkable
class State(RecordState, BatchState, KeyState, SourceState, AnchoringState, WebhookOutbox, Protocol):
    """The whole state port, with health checks."""

    def ping(self) -> None: ...
    def check_persistence(self) -> None: ...
    def accept_to_archived(self, since_ms: int = 0) -> list[float]: ...

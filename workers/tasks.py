"""Thin Celery tasks: ids in, the work in pipelines.stages.batches, the next stage published after commit.

Transient errors (anchorpipe errors with ``transient``) are retried with
exponential backoff and jitter; past the retries the batch is left in its stage
for the reconciler (an outage heals: it is no dead letter). Other anchorpipe
errors of a stage task go to the dead-letter list and the
``anchorpipe_dead_letters`` metric (a batch whose own data is at fault is failed
alone by the stage itself). Tick tasks (seal,
reconcile, pull) are never retried or dead-lettered: the next tick is the retry,
and their errors are counted and reported instead of piling up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pipelines.errors import AnchorpipeError
from pipelines.ops import metrics
from pipelines.ops.monitoring import report_exception
from pipelines.ops.logs import LOGGER
from pipelines.ops.redact import redact
from pipelines.runtime import runtime
from pipelines.stages.batches import Pipeline
from pipelines.state import now_ms
from workers.app import app

MAX_RETRIES = 8


def pipeline() -> Pipeline:
    return runtime().pipeline


class Transient(Exception):
    """Raised to make Celery retry: wraps a transient anchorpipe error."""


def stage(name: str, tick: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """Register a stage task with the retry and dead-letter policy.

    ``tick``: the task is run by beat on a short schedule (seal, reconcile, pull),
    so a transient failure is not retried: the next tick is the retry.
    """

    def wrap(fn: Callable[..., Any]) -> Any:
        @app.task(name=f"anchorpipe.{name}", bind=True, acks_late=True, reject_on_worker_lost=True,
                  autoretry_for=(Transient,), retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
                  max_retries=MAX_RETRIES)
        @functools.wraps(fn)
        def task(self: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except AnchorpipeError as exc:
                kind = "transient" if exc.transient else "permanent"
                metrics.FAILED.labels(name, kind).inc()
                if tick:
                    if not exc.transient:
                        report_exception(exc)
                    return None
                if exc.transient:
                    if self.request.retries < MAX_RETRIES:
                        raise Transient(str(exc)) from exc
                    # An outage longer than the retries: not a dead letter (it heals). The batch stays in
                    # its stage, and the reconciler sends it again once it has waited ANCHORPIPE_STUCK_AFTER.
                    LOGGER.warning("%s: still failing after %d retries, left to the reconciler: %s", name,
                                   MAX_RETRIES, redact(str(exc)))
                    return None
                pipeline().state.dead_letter(name, list(args), redact(str(exc)))
                metrics.DEAD_LETTERS.labels(name).inc()
                raise

        return task

    return wrap


@stage("seal", tick=True)
def seal() -> None:
    sealed: list[str] = []
    try:
        pipeline().seal_ripe(sealed)
    finally:  # what was sealed before a failure is anchored now, not when the reconciler finds it
        if sealed:
            anchor.delay(sealed)


@stage("anchor")
def anchor(batch_ids: list[str]) -> None:
    anchored = pipeline().anchor(batch_ids)
    if anchored:
        archive.delay(anchored)


@stage("archive")
def archive(batch_ids: list[str]) -> None:
    due: list[str] = []
    pipeline().archive(batch_ids, due)
    for agency in due:
        compact.delay(agency)


@stage("compact")
def compact(agency: str) -> None:
    """Merge an agency's newest archive-index runs (on the archive queue; safe to run twice)."""
    pipeline().compact(agency)


@stage("external", tick=True)
def external() -> None:
    """Move the external anchoring round on (TSAs, chain); when one closes, upgrade the proofs it covers."""
    _send_upgrades(pipeline().external_tick())


@stage("witness", tick=True)
def witness() -> None:
    """Send the log's newest checkpoint to the witnesses and publish it with their cosignatures."""
    runtime().witnessing.tick()


@stage("webhooks", tick=True)
def webhooks() -> None:
    """Deliver the webhook events that are due (their own queue: a slow receiver holds up nothing else)."""
    runtime().webhooks.deliver_due()


@stage("upgrade")
def upgrade(batch_ids: list[str]) -> None:
    pipeline().upgrade(batch_ids)


UPGRADE_CHUNK = 20


def _send_upgrades(batch_ids: list[str]) -> None:
    for i in range(0, len(batch_ids), UPGRADE_CHUNK):
        upgrade.delay(batch_ids[i:i + UPGRADE_CHUNK])


@stage("reconcile", tick=True)
def reconcile() -> None:
    """Re-drive batches whose worker died (lease run out), whose message was lost (stuck past 3/4 of
    ANCHORPIPE_STUCK_AFTER), or every batch in flight when the broker restarted without its messages."""
    p = pipeline()
    stuck = p.stuck(everything=runtime().queues.started_empty())
    p.reseal(stuck["claimed"])
    if stuck["claimed"] or stuck["sealed"]:
        anchor.delay(stuck["claimed"] + stuck["sealed"])
    if stuck["anchored"]:
        archive.delay(stuck["anchored"])
    if runtime().cfg.rounds and not runtime().queues.lengths(("upgrade",))["upgrade"]:
        # Upgrades a lost message or a dead worker left undone (never while upgrades still wait in the queue).
        _send_upgrades(p.state.upgradable(closed_before_ms=now_ms() - int(p.cfg.stuck_after * 750)))
    p.warn_stuck()


@stage("pull", tick=True)
def pull(name: str) -> None:
    """One scheduled run of a configured source (skipped while another run holds its lock)."""
    if name in runtime().sources():  # a source removed from the file since beat started: nothing to do
        runtime().source_runner(name).run()

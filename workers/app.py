"""The Celery application: settings, routing, beat schedule. Configuration comes from pipelines.config.

Importing this module has no side effect beyond building the app: beat and
Flower import it too. Worker-only set-up runs in the worker's start-up step
(:class:`StartupChecks`), where a failure stops the worker with one line; a
signal handler's exception would be logged and forgotten by Celery.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from typing import Any

from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_ready

from pipelines.config import Settings, settings
from pipelines.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, AnchorpipeError, ConfigError


def _check_metrics_dir(cfg: Settings) -> str | None:
    """The worker's metrics folder, which ANCHORPIPE_METRICS_PORT needs; None without metrics.

    Prefork children each count on their own and the main process serves their
    sum, which needs PROMETHEUS_MULTIPROC_DIR in the environment before Python
    starts: prometheus_client picks its mode when first imported, and Celery's
    command plugins (Flower's, for one) import it before this module.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:  # set, even without a port: metrics defined at import write their files there
        os.makedirs(path, exist_ok=True)
    if not cfg.metrics_port:
        return None
    if not path:
        raise ConfigError("ANCHORPIPE_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR set in the environment "
                          "(a folder of this worker's own, e.g. /run/anchorpipe/metrics-seal)")
    return path


def _refuse(what: str, exc: AnchorpipeError) -> None:
    """Stop this process with one line saying why (for the journal, honcho or kubectl logs): status 78
    for a setting or schema to fix (the systemd units do not restart it), 75 for a dependency still down."""
    print(f"anchorpipe {what}: cannot start: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_UNAVAILABLE if exc.transient else EXIT_CONFIG)


try:  # at start, and before any metric is defined: each writes its file there
    _check_metrics_dir(settings())
except ConfigError as _exc:  # every process built on this app (worker, beat, Flower) needs valid settings
    _refuse("celery", _exc)

from pipelines.stages import QUEUES
from pipelines.state import LEASE_MS


def create_app() -> Celery:
    cfg = settings()
    app = Celery("anchorpipe", broker=cfg.broker, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="reconcile",
        task_routes={**{f"anchorpipe.{q}": {"queue": q} for q in QUEUES}, "anchorpipe.compact": {"queue": "archive"}},
        broker_transport_options={
            "visibility_timeout": cfg.visibility_timeout,
            "unacked_restore_interval": cfg.unacked_restore_interval,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        beat_schedule={
            # Sealing is driven by a short tick: one indexed query unless a batch is ripe.
            "seal-tick": _tick("anchorpipe.seal", min(cfg.batch_interval / 4, 0.25)),
            # Often enough for a quarter of the stuck budget, and for half a batch lease (6 s).
            "reconcile": _tick("anchorpipe.reconcile", max(min(cfg.stuck_after / 4, LEASE_MS / 2000), 1.0)),
            # Webhook events wait in PostgreSQL; one indexed query a second when none is due.
            "webhooks": _tick("anchorpipe.webhooks", 1.0),
        },
        beat_scheduler="workers.beat:TickScheduler",  # no tick piles up in a queue nobody consumes
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower (and `celery events`) see every task
        # A pool process that grew past this (KiB; an index compaction's merge, say) is replaced after its task.
        worker_max_memory_per_child=512 * 1024,
        task_send_sent_event=True,
    )
    app.conf.beat_schedule.update(_pull_schedule(cfg))
    if cfg.witness_list:  # the newest checkpoint to the witnesses, if the log grew
        app.conf.beat_schedule["witness"] = _tick("anchorpipe.witness", cfg.witness_interval)
    if cfg.rounds:  # rounds open every ANCHORPIPE_EXTERNAL_INTERVAL; ticks move them on in between
        app.conf.beat_schedule["external"] = _tick("anchorpipe.external", max(min(cfg.external_interval / 10, 1.0),
                                                                              0.25))
    return app


def _tick(task: str, every: float, args: list[str] | None = None) -> dict[str, Any]:
    """A beat entry whose messages expire after a few periods: while its workers are down, ticks
    queue up in the broker but are dropped unrun when the workers return, instead of all running."""
    return {"task": task, "schedule": every, "args": args or [], "options": {"expires": max(every * 4, 2.0)}}


def _pull_schedule(cfg: Settings) -> dict[str, Any]:
    """One beat entry per configured source, at its interval (the file is validated here, at start)."""
    if not cfg.sources:
        return {}
    from pipelines.sources.config import load_sources

    return {f"pull-{name}": _tick("anchorpipe.pull", s.interval, [name])
            for name, s in load_sources(cfg.sources).items()}


app = create_app()


@setup_logging.connect
def _logging(**_: object) -> None:
    # Connected, so Celery leaves logging to us: JSON lines on stderr (ANCHORPIPE_LOG_FORMAT), one per
    # batch per stage; Celery's own records pass through the same handler at WARNING and above.
    from pipelines.ops.logs import configure

    configure(settings())


def start_checks(name: str = "worker") -> None:
    """Checks every worker passes before its pool forks, in order: Sentry started (when SENTRY_DSN is set;
    the Celery integration patches the task tracer here, before the fork), the database at this version's
    schema and durable (waited for while it starts), then the metrics folder emptied of an earlier run's
    counts before any child writes. Raises the project's error naming what failed."""
    from pipelines.runtime import runtime

    log = logging.getLogger("anchorpipe")
    runtime().check_start(on_wait=lambda why: log.warning("anchorpipe %s: %s", name, why))
    path = _check_metrics_dir(settings())
    if path:
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.unlink(stale)


class StartupChecks(bootsteps.Step):
    """:func:`start_checks` as a worker step: run in the main process while the worker is built, so that a
    failure stops the worker with one line and nothing after it runs without the checks."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        name = f"worker {getattr(parent, 'hostname', '')}".rstrip()
        try:
            start_checks(name)
        except AnchorpipeError as exc:
            _refuse(name, exc)


app.steps["worker"].add(StartupChecks)


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    port = settings().metrics_port
    if port:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        try:
            start_http_server(port, addr=settings().metrics_addr, registry=registry)
        except OSError as exc:  # say so loudly: a silent missing endpoint only shows up as a gap in graphs
            logging.getLogger("anchorpipe").error("cannot serve metrics on port %s: %s", port, exc)
            raise

"""The pipeline's stages: seal, anchor, archive, reconcile. Each takes ids and may run again safely.

Celery tasks (workers/tasks.py) call these and publish the next stage's task
only after the state it refers to is committed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pipelines import archive, faultpoints, metrics
from pipelines.config import Settings
from pipelines.core.logentry import batch_entry
from pipelines.offline import new_batch_id, now_timestamp
from pipelines.state import State, now_ms
from pipelines.storage import ObjectStore, open_store
from pipelines.storage.s3 import S3Options
from pipelines.tlog import TransparencyLog

SEAL_BUDGET_S = 5.0


def open_archive(cfg: Settings, location: str | None = None) -> ObjectStore:
    if (location or cfg.archive).startswith("s3://"):
        from pipelines.storage.s3 import S3Store

        bucket, _, prefix = (location or cfg.archive)[5:].partition("/")
        options = S3Options(cfg.s3_retention_days or None, cfg.s3_sse or None, cfg.s3_kms_key_id)
        return S3Store.connect(bucket, prefix.strip("/"), endpoint_url=cfg.s3_endpoint, options=options)
    return open_store(location or cfg.archive)


def open_sequencer(cfg: Settings) -> TransparencyLog:
    """The built-in log, opened for sequencing with the key file (created if absent)."""
    from pipelines.core.note import Signer
    from pipelines.errors import ConfigError

    if not cfg.log_key_file:
        raise ConfigError("ANCHORPIPE_LOG_KEY_FILE is required to anchor batches")
    try:
        signer = Signer.parse(open(cfg.log_key_file, encoding="utf-8").read())
    except OSError as exc:
        raise ConfigError(f"ANCHORPIPE_LOG_KEY_FILE: cannot read the key file: {exc.strerror}") from exc
    store = open_archive(cfg, cfg.log_location)
    TransparencyLog.create(store, [signer])
    return TransparencyLog.open(store, [signer])


@dataclass
class Pipeline:
    cfg: Settings
    state: State
    store: ObjectStore
    log: TransparencyLog | None = None

    @classmethod
    def from_settings(cls, cfg: Settings) -> Pipeline:
        return cls(cfg, State.connect(cfg.redis_url), open_archive(cfg))

    def sequencer(self) -> TransparencyLog:
        if self.log is None:
            self.log = open_sequencer(self.cfg)
        return self.log

    def seal_ripe(self) -> list[str]:
        """Claim and seal ripe batches (full, or oldest record older than the interval)."""
        sealed, deadline = [], time.monotonic() + SEAL_BUDGET_S
        while time.monotonic() < deadline:
            sealed_at = now_timestamp()
            batch_id = new_batch_id(sealed_at)
            if not self.state.claim(batch_id, self.cfg.batch_max, self.cfg.batch_interval, sealed_at):
                break
            # Commit point: the batch's members, salts and seal time are fixed in Redis.
            faultpoints.reached("seal.claimed")
            self.seal(batch_id)
            sealed.append(batch_id)
        return sealed

    def seal(self, batch_id: str) -> None:
        """Compute a claimed batch's root and mark it sealed (a no-op once it is past that)."""
        if self.state.batch(batch_id).get("state") != "claimed":
            return
        t = time.perf_counter()
        batch = self.state.load_batch(batch_id)
        if self.state.advance(batch_id, "sealed", expect="claimed", root=batch.root.hex()):
            metrics.SEALED.inc(batch.size)
            metrics.BATCH_SIZE.observe(batch.size)
        metrics.STAGE_SECONDS.labels("seal").observe(time.perf_counter() - t)

    def anchor(self, batch_ids: list[str]) -> list[str]:
        """Anchor the given and every other sealed batch in the log; return those now anchored."""
        t = time.perf_counter()
        ids = list(dict.fromkeys(batch_ids + self.state.in_stage("sealed")))
        infos = {b: self.state.batch(b) for b in ids}
        ids = [b for b in ids if infos[b].get("state") == "sealed"]
        if not ids:
            return []
        items = []
        for b in ids:
            try:
                items.append((b, batch_entry(b, bytes.fromhex(infos[b]["root"]), int(infos[b]["size"]),
                                             infos[b]["sealed_at"])))
            except (KeyError, ValueError) as exc:  # a damaged batch must not hold the others back
                self._fail(b, "anchor", exc)
        ids = [b for b, _ in items]
        if not ids:
            return []
        log = self.sequencer()
        log.append(items)  # idempotent per batch id: a re-run never makes a second entry
        faultpoints.reached("anchor.appended")
        head = log.head()
        self.state.mark_checkpoint()
        tree = log.tree(head.checkpoint.size)
        for b in ids:
            if self.state.advance(b, "anchored", expect="sealed", anchor=json.dumps(log.receipt(b, head, tree))):
                metrics.BATCHES_ANCHORED.inc()
        metrics.STAGE_SECONDS.labels("anchor").observe(time.perf_counter() - t)
        return ids

    def archive(self, batch_ids: list[str]) -> list[str]:
        """Archive every proof of the given anchored batches; return those now archived."""
        t = time.perf_counter()
        done: dict[str, list[int]] = {}  # batch id -> accept times of its records
        entries = []
        for b in dict.fromkeys(batch_ids):
            info = self.state.batch(b)
            if info.get("state") != "anchored":
                continue
            try:
                batch, times = self.state.load_batch_with_times(b)
                anchors = [json.loads(info["anchor"])]
            except (KeyError, ValueError) as exc:
                self._fail(b, "archive", exc)
                continue
            locations = archive.write_batch(self.store, batch, anchors)
            entries += [(c.agency, c.record_id, loc) for c, loc in zip(batch.commitments, locations)]
            done[b] = times
        faultpoints.reached("archive.bundled")
        archive.update_directory(self.store, entries)
        faultpoints.reached("archive.indexed")
        # Commit point: every proof is archived and findable; only then is the batch done.
        now = now_ms()
        for b, times in done.items():
            if self.state.advance(b, "archived", archived_records=len(times), expect="anchored"):
                for ms in times:
                    metrics.ACCEPT_TO_ARCHIVED.observe((now - ms) / 1000)
                metrics.ARCHIVED.inc(len(times))
        metrics.STAGE_SECONDS.labels("archive").observe(time.perf_counter() - t)
        return list(done)

    def _fail(self, batch_id: str, stage: str, exc: Exception) -> None:
        """Dead-letter one batch (a permanent error), report it, and let the rest of the work go on."""
        self.state.fail_batch(batch_id, stage, f"{type(exc).__name__}: {exc}")
        metrics.DEAD_LETTERS.labels(stage).inc()
        try:
            import sentry_sdk

            sentry_sdk.capture_exception(exc)
        except ImportError:
            pass

    def stuck(self) -> dict[str, list[str]]:
        """Batches that stayed in one stage longer than ``reconcile_after``, by stage."""
        cutoff = now_ms() - int(self.cfg.reconcile_after * 1000)
        return {s: self.state.in_stage(s, older_than_ms=cutoff) for s in ("claimed", "sealed", "anchored")}

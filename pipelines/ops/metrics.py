"""Prometheus metrics of the API and the workers (one registry per process; see docs/operations.md).

Counters and histograms are incremented where the work happens. Gauges about
shared state (pending depth, oldest pending age per agency, batches per stage)
are read when the API is scraped (``pipelines.api.metrics``).
"""

from __future__ import annotations


from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

ACCEPTED = Counter("anchorpipe_records_accepted", "Records accepted (new, not duplicates)", ["agency"])
DUPLICATES = Counter("anchorpipe_records_duplicate", "Records submitted again with the same content", ["agency"])
SEALED = Counter("anchorpipe_records_sealed", "Records sealed into a batch")
BATCHES_ANCHORED = Counter("anchorpipe_batches_anchored", "Batches anchored in the built-in log")
ARCHIVED = Counter("anchorpipe_records_archived", "Records whose proof is archived")
FAILED = Counter("anchorpipe_task_failures", "Task failures", ["task", "kind"])
DEAD_LETTERS = Counter("anchorpipe_dead_letters", "Work moved to the dead-letter list", ["task"])
BATCH_SIZE = Histogram("anchorpipe_batch_size", "Records per sealed batch",
                       buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000))
STAGE_SECONDS = Histogram("anchorpipe_stage_seconds", "Time spent in a stage", ["stage"], buckets=LATENCY_BUCKETS)
ACCEPT_TO_ARCHIVED = Histogram("anchorpipe_accept_to_archived_seconds", "From accept to archived proof",
                               buckets=LATENCY_BUCKETS)
EXTERNAL_ANCHORS = Counter("anchorpipe_external_anchors", "External anchoring attempts by kind and outcome "
                           "(confirmed, failed, sent, replaced, abandoned)", ["kind", "outcome"])
EXTERNAL_CONFIRM_SECONDS = Histogram("anchorpipe_external_confirm_seconds", "From a round's opening to a target's "
                                     "confirmation", ["kind"], buckets=LATENCY_BUCKETS)
UPGRADED = Counter("anchorpipe_records_upgraded", "Records whose proof was re-issued with external anchors")
WITNESS_SECONDS = Histogram("anchorpipe_witness_seconds", "add-checkpoint round trips that got a cosignature",
                            ["witness"], buckets=LATENCY_BUCKETS)
WITNESS_FAILURES = Counter("anchorpipe_witness_failures", "add-checkpoint requests that got no cosignature "
                           "(reason: unavailable, refused)", ["witness", "reason"])
WITNESS_COSIGNED_SIZE = Gauge("anchorpipe_witness_cosigned_size", "Log size each witness last cosigned", ["witness"],
                              multiprocess_mode="max")
CHECKPOINTS_WITNESSED = Counter("anchorpipe_checkpoints_witnessed", "Checkpoints published with cosignatures, by "
                                "whether they reached the quorum", ["quorum"])
WITNESSED_SIZE = Gauge("anchorpipe_witnessed_size", "Log size of the newest checkpoint published cosigned",
                       multiprocess_mode="max")
WEBHOOKS = Counter("anchorpipe_webhook_events", "Webhook events by outcome (delivered, failed, dead)", ["outcome"])
PULLED = Counter("anchorpipe_records_pulled", "Records pulled from a source and accepted", ["source"])
QUARANTINED = Counter("anchorpipe_records_quarantined", "Source items set aside as invalid", ["source"])
PULL_FAILURES = Counter("anchorpipe_pull_failures", "Source runs that failed", ["source"])
PULL_PAUSED = Counter("anchorpipe_pull_paused", "Source runs skipped by backpressure", ["source"])



"""Gauges about the shared state, read from PostgreSQL (and queue lengths from the broker) when the API is
scraped: pending depth, oldest pending age per agency, batches per stage, the external-anchoring lag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from pipelines.state import STAGES, State


class StateCollector:
    """Gauges read from the state at scrape time: pending depth, oldest pending age, queues, stages."""

    def __init__(self, state: State, queue_lengths: Callable[[], dict[str, int]], external: bool = False) -> None:
        self.state, self.queue_lengths, self.external = state, queue_lengths, external

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("anchorpipe_pending_records", "Accepted records not yet sealed")
        depth.add_metric([], self.state.pending_depth())
        yield depth
        age = GaugeMetricFamily("anchorpipe_oldest_pending_seconds", "Age of the oldest unsealed record",
                                labels=["agency"])
        now = time.time() * 1000
        for agency, ms in self.state.oldest_pending().items():
            age.add_metric([agency], (now - ms) / 1000)
        yield age
        queues = GaugeMetricFamily("anchorpipe_queue_length", "Messages waiting in a Celery queue", labels=["queue"])
        for q, n in self.queue_lengths().items():
            queues.add_metric([q], n)
        yield queues
        stuck = GaugeMetricFamily("anchorpipe_batches_in_stage", "Batches waiting in a stage", labels=["stage"])
        for s, n in self.state.stage_counts().items():
            stuck.add_metric([s], n)
        yield stuck
        oldest = GaugeMetricFamily("anchorpipe_oldest_batch_seconds",
                                   "How long the longest-waiting batch of a stage has waited", labels=["stage"])
        waiting = self.state.oldest_in_stage()
        for s in STAGES:
            oldest.add_metric([s], (now - waiting[s]) / 1000 if s in waiting else 0.0)
        yield oldest
        if self.external:
            lag = GaugeMetricFamily("anchorpipe_unanchored_seconds", "How long the oldest archived batch has "
                                    "waited for its external anchors (0: none waits)")
            since = self.state.oldest_unanchored()
            lag.add_metric([], (now - since) / 1000 if since is not None else 0.0)
            yield lag

"""Beat's scheduler: celery's own (the schedule kept in a shelve file), except that a tick is not sent while
its queue already holds one per entry that feeds it.

A tick means "do what is due"; a second one waiting behind the first adds nothing. Without this, a queue
nobody consumes (no notifier running, say: the webhooks tick comes every second) grows without end, about
90 MB a day, where Redis should hold only work in flight. A tick skipped is sent at its next time, once a
consumer has taken the one waiting.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from celery.beat import PersistentScheduler

from pipelines.errors import StateError
from pipelines.state.redis import BrokerQueues

LOGGER = logging.getLogger("anchorpipe")


class TickScheduler(PersistentScheduler):
    def setup_schedule(self) -> None:
        super().setup_schedule()
        conf = self.app.conf
        self.queues = BrokerQueues(conf.broker_url)
        self.queue_of = {name: self._queue(entry["task"]) for name, entry in conf.beat_schedule.items()}
        self.feeding = Counter(self.queue_of.values())  # entries that send to each queue

    def _queue(self, task: str) -> str:
        conf = self.app.conf
        return str((conf.task_routes or {}).get(task, {}).get("queue", conf.task_default_queue))

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        queue = self.queue_of.get(entry.name) or self._queue(entry.task)
        try:
            waiting = self.queues.lengths((queue,))[queue]
        except StateError:  # Redis failing: send as celery would (the send meets the same fault and says so)
            waiting = 0
        if waiting >= self.feeding.get(queue, 1):
            LOGGER.debug("beat: %s not sent: %d ticks already wait in queue %s", entry.name, waiting, queue)
            return
        super().apply_entry(entry, producer=producer)

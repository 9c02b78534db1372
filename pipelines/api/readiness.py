"""``GET /readyz``: whether this API process can take and serve records, within a second whatever hangs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from pipelines.ledger.tlog import CHECKPOINT
from pipelines.runtime import Runtime
from pipelines.state import now_ms

#: /readyz answers within this many seconds, whatever hangs.
READY_BUDGET_S = 0.9


class Readiness:
    """Each dependency's state, within READY_BUDGET_S whatever hangs; never raises.

    Ready means this process can accept and serve records: the database answers and takes writes (a standby
    after a failover does not), and the archive answers. Work stuck in a stage (a dead archiver, say) makes
    the answer ``degraded`` with each such stage's age, and not ready only past ANCHORPIPE_UNREADY_AFTER (off
    by default: intake still works, and the AnchorpipeStageOverBudget alert pages for it).

    Each probe runs on a thread of its own kind, at most one at a time: while one hangs (S3 not answering),
    later polls report it still unanswered instead of piling up more calls behind it, so a hung archive can
    neither exhaust the threads nor be blamed on the database.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.probes: dict[str, Callable[[], Any]] = {
            "database": rt.state.ping,
            "archive": lambda: rt.log_store.get(CHECKPOINT),
            "stuck": rt.state.oldest_in_stage,
        }
        self.pool = ThreadPoolExecutor(max_workers=len(self.probes), thread_name_prefix="readiness")
        self.running: dict[str, Future[Any]] = {}
        self.lock = threading.Lock()

    def _start(self, name: str) -> Future[Any]:
        with self.lock:
            probe = self.running.get(name)
            if probe is None or probe.done():
                probe = self.running[name] = self.pool.submit(self.probes[name])
            return probe

    async def check(self) -> tuple[bool, dict[str, Any]]:
        probes = {name: self._start(name) for name in self.probes}
        # Waited for on the loop's default threads (never the probes' own): at most the budget, whatever hangs.
        await asyncio.get_running_loop().run_in_executor(None, wait, list(probes.values()), READY_BUDGET_S)
        checks: dict[str, Any] = {}
        for name, probe in probes.items():
            if not probe.done():
                checks[name] = "error: no answer within the readiness budget"
            elif probe.exception() is not None:  # the failure's name only: /readyz is not authenticated
                checks[name] = f"error: {type(probe.exception()).__name__}"
            elif name == "stuck":
                now = now_ms()
                checks[name] = {stage: round((now - ms) / 1000, 1) for stage, ms in probe.result().items()
                                if now - ms > self.rt.cfg.stuck_after * 1000}
            else:
                checks[name] = "ok"
        stuck = checks["stuck"] if isinstance(checks["stuck"], dict) else {}
        limit = self.rt.cfg.unready_after
        ready = (checks["database"] == "ok" and checks["archive"] == "ok"
                 and not (limit and any(age > limit for age in stuck.values())))
        checks["status"] = "not ready" if not ready else "degraded" if stuck else "ok"
        return ready, checks

"""Faults of the stores themselves, in a running stack: Redis killed and restarted empty, PostgreSQL
restarted. No accepted record is lost, none is anchored twice, and the API never answers 500."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from pipelines.demo.localstack import local_stack
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState as State
from tests.system.test_stack import FAST, check_everything, push, wait_for
import pytest

pytestmark = pytest.mark.system  # every test kills and restarts services


def restart_dead_workers(stack, names=("stages", "sequencer")) -> None:
    """What systemd does for a worker that exited (Celery may exit when its broker vanishes)."""
    from pipelines.demo.localstack import DEFAULT_WORKERS

    for name in names:
        proc = stack.procs.get(name)
        if proc is not None and proc.poll() is not None:
            stack.procs.pop(name)
            stack.start_worker(name, *DEFAULT_WORKERS[name])


def test_redis_killed_and_restarted_empty_loses_nothing(tmp_path: Path):
    with local_stack(tmp_path, **FAST) as stack:
        state = State.connect(stack.database_url)
        key = add_agency(state, "agency-a")
        push(stack.api_url, key, 0, 400)
        wait_for(lambda: state.archived_records() > 0, 60, "the first proofs")
        push(stack.api_url, key, 400, 300)  # in flight when Redis dies: pending, or queued on the broker
        stack.kill("redis", signal.SIGKILL)
        stack.start_redis(empty=True)  # every queued message is gone; PostgreSQL still has every record
        push(stack.api_url, key, 700, 100)

        def all_archived() -> bool:
            restart_dead_workers(stack)
            return state.archived_records() >= 800

        wait_for(all_archived, 150, "every record archived after Redis came back empty")
        time.sleep(2)
        assert state.archived_records() == 800
        check_everything(stack, state, 800)


def test_postgres_restart_gives_503_then_resumes_with_nothing_lost(tmp_path: Path):
    with local_stack(tmp_path, **FAST) as stack:
        state = State.connect(stack.database_url)
        key = add_agency(state, "agency-a")
        push(stack.api_url, key, 0, 300)
        stack.kill("postgres", signal.SIGKILL)  # a crash: no shutdown checkpoint
        body = "\n".join(f'{{"id": "rec-{i}", "content": {{"i": {i}}}}}' for i in range(300, 500))
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
        down = httpx.post(f"{stack.api_url}/v1/records", content=body, headers=headers, timeout=60)
        assert down.status_code == 503 and down.headers["Retry-After"], down.text  # never a 500
        ready = httpx.get(f"{stack.api_url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
        stack.start_postgres()
        wait_for(lambda: httpx.get(f"{stack.api_url}/readyz", timeout=30).status_code == 200, 60, "readiness")
        again = httpx.post(f"{stack.api_url}/v1/records", content=body, headers=headers, timeout=60)
        assert again.status_code == 202 and again.json()["accepted"] == 200  # nothing of the 503 was stored
        wait_for(lambda: state.archived_records() >= 500, 150, "every record archived after the restart")
        time.sleep(2)
        assert state.archived_records() == 500
        check_everything(stack, state, 500)


def test_a_dead_workers_batch_is_taken_up_by_its_lease(tmp_path: Path):
    """Not by ANCHORPIPE_STUCK_AFTER nor Celery's visibility timeout: when its lease runs out."""
    faults = tmp_path / "faults"
    faults.mkdir()
    # Neither the stuck budget nor Celery's redelivery can take the batch up within the test: only its lease
    # (or a copy of its message already queued) can.
    settings = {**FAST, "stuck_after": "600", "visibility_timeout": "3600", "unacked_restore_interval": "100"}
    with local_stack(tmp_path, workers={}, **settings) as stack:
        pause = {"ANCHORPIPE_FAULT_PAUSE": "archive.bundled", "ANCHORPIPE_FAULT_DIR": str(faults)}
        stack.start_worker("stages", "seal,archive,reconcile", 2, env=pause)
        stack.start_worker("sequencer", "anchor", 1)
        state = State.connect(stack.database_url)
        key = add_agency(state, "agency-a")
        push(stack.api_url, key, 0, 200)
        wait_for(lambda: (faults / "archive.bundled").exists(), 60, "an archiver to reach archive.bundled")
        stack.kill("stages")  # mid-archive: its batch is held by a lease nobody renews any more
        stack.start_worker("stages", "seal,archive,reconcile", 2)
        wait_for(lambda: state.archived_records() >= 200, 120, "the dead worker's batch archived")
        time.sleep(1)
        assert state.archived_records() == 200
        check_everything(stack, state, 200)

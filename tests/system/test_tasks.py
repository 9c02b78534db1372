"""The Celery tasks' policy: transient errors retried, permanent ones dead-lettered, ticks never retried."""

from __future__ import annotations

import pytest

from pipelines.config import Settings, settings
from pipelines.stages.batches import Pipeline
from pipelines.state.postgres import PostgresState as State
from pipelines.ledger.tlog import TransparencyLog
from tests.support.faults import FaultyStore
from tests.system.test_stages import accept
from tests.unit.ledger.test_tlog import SIGNER


@pytest.fixture
def tasks(db, clean_redis, tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHORPIPE_REDIS_URL", clean_redis)
    monkeypatch.setenv("ANCHORPIPE_DATABASE_URL", db)
    monkeypatch.setenv("ANCHORPIPE_ARCHIVE", str(tmp_path))
    settings.cache_clear()
    from workers import tasks as module

    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path), batch_interval=0.001)
    pipe = Pipeline(cfg, State.connect(db), FaultyStore(), TransparencyLog.create(FaultyStore(), [SIGNER]))
    monkeypatch.setattr(module, "pipeline", lambda: pipe)
    module.app.conf.task_always_eager = True
    module.app.conf.task_eager_propagates = False
    sent = []
    monkeypatch.setattr(module.archive, "delay", lambda ids: sent.append(("archive", ids)))
    monkeypatch.setattr(module.anchor, "delay", lambda ids: sent.append(("anchor", ids)))
    yield module, pipe, sent
    module.app.conf.task_always_eager = False
    settings.cache_clear()


def test_a_transient_failure_is_retried_until_it_succeeds(tasks):
    module, pipe, sent = tasks
    accept(pipe, "agency-a", 5)
    sealed = pipe.seal_ripe()
    pipe.ledger.store.fail("checkpoint", "lost")  # S3 hiccup on the first try
    result = module.anchor.apply(args=[sealed])
    assert result.successful(), result.traceback
    assert pipe.state.batch(sealed[0]).state == "anchored"
    assert sent == [("archive", sealed)]


def test_a_permanent_failure_is_dead_lettered(tasks, monkeypatch):
    module, pipe, sent = tasks
    from pipelines.errors import InputError

    def broken(ids, due=None):
        raise InputError("no such batch")

    monkeypatch.setattr(pipe, "archive", broken)
    result = module.archive.apply(args=[["b1"]])
    assert result.failed()
    assert pipe.state.dead_letters()[0] == {**pipe.state.dead_letters()[0], "task": "archive", "args": [["b1"]]}


def test_an_outage_longer_than_the_retries_is_left_to_the_reconciler_not_dead_lettered(tasks):
    module, pipe, sent = tasks
    accept(pipe, "agency-a", 5)
    sealed = pipe.seal_ripe()
    for _ in range(module.MAX_RETRIES + 1):  # every try, the first and each retry, meets the outage
        pipe.ledger.store.fail("checkpoint", "lost")
    result = module.anchor.apply(args=[sealed])
    assert result.successful() and pipe.state.dead_letters() == []
    assert pipe.state.batch(sealed[0]).state == "sealed" and sent == []
    pipe.cfg = pipe.cfg.model_copy(update={"stuck_after": 0.001})  # ... until the reconciler sends it again
    import time

    time.sleep(0.01)
    module.reconcile.apply()
    assert sent == [("anchor", sealed)]


def test_a_tick_is_not_retried(tasks, monkeypatch):
    module, pipe, sent = tasks
    from pipelines.errors import StorageError

    calls = []

    def down(*_):
        calls.append(1)
        raise StorageError("Redis is down", transient=True)

    monkeypatch.setattr(pipe, "seal_ripe", down)
    assert module.seal.apply().successful()
    assert calls == [1] and pipe.state.dead_letters() == []


def test_worker_metrics_need_a_multiprocess_folder(tasks, monkeypatch, tmp_path):
    from pipelines.errors import ConfigError
    from workers import app as app_module

    monkeypatch.setenv("ANCHORPIPE_METRICS_PORT", "9999")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings.cache_clear()
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        app_module._check_metrics_dir(settings())
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.setattr("pipelines.runtime._RUNTIME", None)  # this test's settings, not an earlier one's
    app_module.start_checks()  # the worker's main process, before its pool forks
    assert list(folder.iterdir()) == []  # an earlier run's counts are cleared


def test_importing_the_app_leaves_metric_files_alone(db, clean_redis, tmp_path):
    """beat and Flower import workers.app too: only a starting worker may clear the metrics folder."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"a live worker's counts")
    env = {**os.environ, "ANCHORPIPE_REDIS_URL": clean_redis, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_ARCHIVE": str(tmp_path / "a"),
           "ANCHORPIPE_METRICS_PORT": "9999", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    res = subprocess.run([sys.executable, "-c", "import workers.app"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (folder / "counter_1.db").read_bytes() == b"a live worker's counts"


def test_beat_ticks_expire_instead_of_piling_up(tasks):
    """While sealers are down, queued seal ticks must expire rather than all run when they return."""
    module, _, _ = tasks
    for name, entry in module.app.conf.beat_schedule.items():
        expires = entry.get("options", {}).get("expires")
        assert expires is not None and 0 < expires <= max(entry["schedule"] * 4, 2.0), name


def test_a_permanent_error_in_a_tick_is_counted_not_dead_lettered(tasks, monkeypatch):
    """A broken source or sealer fails every tick: the dead-letter list must not grow with each one."""
    module, pipe, _ = tasks
    from pipelines.errors import ConfigError

    def broken(*_):
        raise ConfigError("source feed: environment variable FEED_TOKEN is not set")

    monkeypatch.setattr(pipe, "seal_ripe", broken)
    for _ in range(3):
        assert module.seal.apply().successful()
    assert pipe.state.dead_letters() == []


def test_batches_sealed_before_a_failure_are_anchored_at_once(tasks, monkeypatch):
    module, pipe, sent = tasks
    from pipelines.errors import StorageError

    def seal_one_then_fail(sealed):
        sealed.append("batch-sealed-first")
        raise StorageError("Redis is down", transient=True)

    monkeypatch.setattr(pipe, "seal_ripe", seal_one_then_fail)
    assert module.seal.apply().successful()
    assert sent == [("anchor", ["batch-sealed-first"])]


def test_a_batch_failed_twice_is_dead_lettered_once(tasks):
    _, pipe, _ = tasks
    accept(pipe, "agency-a", 3)
    (batch,) = pipe.seal_ripe()
    assert pipe.state.fail_batch(batch, "anchor", "first") is True
    assert pipe.state.fail_batch(batch, "anchor", "second") is False
    assert [d["error"] for d in pipe.state.dead_letters()] == ["first"]


def test_a_broker_that_restarted_empty_is_noticed_once(clean_redis):
    import redis

    from pipelines.state.redis import BrokerQueues

    queues = BrokerQueues(clean_redis)
    assert queues.started_empty() is True and queues.started_empty() is False
    redis.Redis.from_url(clean_redis).flushall()  # what a restart without its data looks like
    assert queues.started_empty() is True and queues.started_empty() is False

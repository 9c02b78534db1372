"""Pull sources are hostile input: they never skip, never block, and never read what they should not (links out of a drop folder, oversized pages, SQL cursors of any type)."""

from __future__ import annotations

import os

import pytest

from pipelines.core.commitment import content_sha256
from pipelines.errors import StateError
from pipelines.intake.submit import store_records
from pipelines.core.commitment import RecordInput
from pipelines.state.postgres import PostgresState
from pipelines.sources.config import SourceConfig
from pipelines.stages.pull import SourceRunner
from tests.conftest import pull_runner, accepted_ids, reset_state, sql
from tests.system.test_sources import feed, write_config  # noqa: F401  (feed is a fixture)


@pytest.fixture
def state(db, clean_redis) -> PostgresState:
    return PostgresState.connect(db)


def drop_folder(tmp, inbox, extra: str = "") -> SourceConfig:
    cfg = write_config(tmp, f'[[source]]\nname = "drop"\nagency = "dept-f"\nkind = "folder"\npath = "{inbox}"\n'
                            f'min_age = 0\npage_size = 50\n{extra}')["drop"]
    return cfg


def test_pushed_and_pulled_in_the_push_format_is_one_record(tmp_path, state):
    """The README's record shape in a drop folder is the same record as the one pushed: no 409, no quarantine."""
    store_records(state, "dept-f", [RecordInput("permit/1", content_sha256({"holder": "A. Smith", "fee": 120}))])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"id": "permit/1", "content": {"holder": "A. Smith", "fee": 120}}\n'
                                   f'{{"id": "scan-1", "sha256": "{"ab" * 32}"}}\n')
    result = pull_runner(drop_folder(tmp_path, inbox), state).run()
    assert (result.status, result.accepted, result.duplicates, result.quarantined) == ("ok", 1, 1, 0)


def test_a_bad_line_is_quarantined_and_the_source_goes_on(tmp_path, state):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    lines = ['{"id": "a", "content": 1}', '{"id": "deep", "content": ' + "[" * 3000 + "]" * 3000 + "}",
             '{"id": "big", "content": ' + "7" * 5000 + "}", '{"id": "b", "content": 2}']
    (inbox / "a.jsonl").write_text("\n".join(lines) + "\n")
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    result = runner.run()
    assert (result.status, result.accepted, result.quarantined) == ("ok", 2, 2)
    reasons = sorted(d["reason"] for d in runner.quarantine())
    assert reasons[0].startswith("integer") and reasons[1].startswith("nesting deeper")


def test_replay_keeps_items_quarantined_until_they_are_accepted(tmp_path, state, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store_records(state, "dept-f", [RecordInput("x", content_sha256(1))])
    (inbox / "a.jsonl").write_text('{"id": "x", "content": 2}\n')  # conflicts with the pushed x
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    assert runner.run().quarantined == 1
    sql(state.url, "DELETE FROM records WHERE agency = 'dept-f'")  # the cause is fixed (the conflicting record is gone)

    def down(*args, **kwargs):
        raise StateError("PostgreSQL failed: connection lost", transient=True)

    monkeypatch.setattr(state, "accept", down)
    with pytest.raises(StateError):
        runner.replay()
    assert [d["position"] for d in runner.quarantine()] == ["a.jsonl byte 0"]  # nothing lost in the crash
    monkeypatch.undo()
    assert runner.replay() == (1, 0) and runner.quarantine() == []


def test_source_test_predicts_what_a_run_does(tmp_path, state):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    store_records(state, "dept-f", [RecordInput("stored", content_sha256("old"))])
    (inbox / "a.jsonl").write_text("\n".join([
        '{"id": "ok", "content": 1}', '{"id": "stored", "content": "new"}',  # conflicts with the store
        '{"id": "twice", "content": 1}', '{"id": "twice", "content": 2}',  # other content within the page
        '{"no": "id"}']) + "\n")
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    _, verdicts = runner.preview()
    predicted = sorted(item.position for item, problem in verdicts if problem)
    result = runner.run()
    assert predicted == sorted(result.positions) and len(predicted) == 3
    assert result.accepted == 2


def test_a_new_file_reusing_a_name_is_read_from_its_start(tmp_path, state):
    """A nightly export.jsonl: yesterday's offset must not skip today's first records."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    (inbox / "export.jsonl").write_text("".join(f'{{"id": "d1-{i}", "content": {i}}}\n' for i in range(3)))
    assert runner.run().accepted == 3
    (inbox / "export.jsonl").write_text("".join(f'{{"id": "d2-{i}", "content": {i}}}\n' for i in range(5)))
    assert runner.run().accepted == 5
    done = sorted(p.name for p in (inbox / "done").iterdir())
    assert done == ["export.1.jsonl", "export.jsonl"]  # yesterday's file was not overwritten
    assert (inbox / "done" / "export.jsonl").read_text().startswith('{"id": "d1-0"')


def test_a_file_replaced_while_being_read_is_read_anew(tmp_path, state):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text("".join(f'{{"id": "old-{i}", "content": {i}}}\n' for i in range(120)))
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    assert runner.run(max_pages=1).accepted == 50  # a crash or a page budget leaves it half read
    (inbox / "a.jsonl").write_text("".join(f'{{"id": "new-{i}", "content": {i}}}\n' for i in range(60)))
    assert runner.run().accepted == 60  # every record of the new file, none skipped


def test_symlinks_and_other_non_regular_files_are_never_read(tmp_path, state):
    secret = tmp_path / "log.key"
    secret.write_text('{"id": "leak", "content": "PRIVATE+KEY+abc"}\n')
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").symlink_to(secret)
    (inbox / "b.jsonl").mkdir()
    os.mkfifo(inbox / "c.jsonl")
    (inbox / "d.jsonl").write_text('{"id": "fine", "content": 1}\n')
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    result = runner.run()
    assert (result.status, result.accepted, result.quarantined) == ("ok", 1, 0)
    assert runner.quarantine() == [] and "leak" not in accepted_ids(state, "dept-f")
    assert (inbox / "a.jsonl").is_symlink()  # left where it was, not moved or followed


def test_credentials_in_a_feed_url_never_reach_the_state_or_sentry(tmp_path, state, feed):  # noqa: F811
    import sentry_sdk

    from pipelines.config import Settings
    from pipelines.ops.monitoring import init_sentry
    from tests.support.sentry_fake import FakeSentry
    from tests.system.test_sources import http_config

    url = feed.url.replace("http://", "http://agency-user:hunter2pass@") + "?api_key=SECRETKEY123&x=1"
    feed.faults = [("status", 403)]  # a permanent failure: the run fails with the URL in its message
    with FakeSentry() as fake:
        init_sentry(Settings(database_url="postgresql://x/y", redis_url="redis://x", archive=str(tmp_path), SENTRY_DSN=fake.dsn))
        result = pull_runner(http_config(tmp_path, url, retries=0)["permits"], state).run()
        sentry_sdk.flush()
        sentry_sdk.get_client().close()
    assert result.status == "failed" and "403" in result.error
    stored = state.source_status("permits")["last_error"]
    raw = b"".join(fake.raw)
    assert fake.events(), "the failure was not reported"
    for secret in ("hunter2pass", "SECRETKEY123", "agency-user"):
        assert secret not in result.error and secret not in stored and secret.encode() not in raw
    assert "[redacted]" in stored


def test_a_page_larger_than_the_cap_fails_the_run_cleanly(tmp_path, state, feed):  # noqa: F811
    from tests.system.test_sources import http_config

    feed.records = [{"rec_id": f"r{i}", "body": {"pad": "x" * 200}} for i in range(100)]  # ~25 kB a page
    runner = pull_runner(http_config(tmp_path, feed.url, retries=0, max_page_bytes=4096)["permits"], state)
    result = runner.run()
    assert result.status == "failed" and "larger than 4096 bytes" in result.error
    assert runner.cursor() is None and state.pending_depth() == 0  # nothing half-taken


def _sql_runner(tmp_path, state, url: str, table: str, cursor: str, tie: str, extra: str = "") -> SourceRunner:
    cfg = write_config(tmp_path, f'[[source]]\nname = "db"\nagency = "dept-sql"\nkind = "sql"\nurl = "{url}"\n'
                                 f'table = "{table}"\ncursor_column = "{cursor}"\ntiebreak_column = "{tie}"\n'
                                 f'content_field = "."\npage_size = 2\n{extra}')["db"]
    return pull_runner(cfg, state)


def test_any_tie_breaker_type_makes_a_cursor(tmp_path, state, postgres_url):
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import UUID

    engine = sa.create_engine(postgres_url)
    meta = sa.MetaData()
    t = sa.Table("by_uuid", meta, sa.Column("id", UUID(as_uuid=True), primary_key=True),
                 sa.Column("seen", sa.Time), sa.Column("blob", sa.LargeBinary))
    meta.drop_all(engine)
    meta.create_all(engine)
    import datetime as dt

    with engine.begin() as conn:
        conn.execute(t.insert(), [{"id": uuid.UUID(int=i), "seen": dt.time(9, i), "blob": bytes([i]) * 3}
                                  for i in range(1, 6)])
    for cursor, tie in (("seen", "id"), ("seen", "blob")):  # a time cursor; UUID and bytes tie-breakers
        reset_state(state)
        runner = _sql_runner(tmp_path, state, postgres_url, "by_uuid", cursor, tie)
        result = runner.run()
        assert (result.status, result.accepted, result.pages) == ("ok", 5, 3), result.error
        assert runner.run().accepted == 0  # the stored cursor reads back
    engine.dispose()


def test_a_safety_lag_never_skips_a_row_whose_transaction_commits_late(tmp_path, state, postgres_url):
    """Two concurrent transactions: the earlier-stamped one commits after the later one is read."""
    import time

    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    meta = sa.MetaData()
    t = sa.Table("late", meta, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()))
    meta.drop_all(engine)
    meta.create_all(engine)

    def scenario(lag: float) -> set[str]:
        reset_state(state)
        with engine.begin() as conn:
            conn.execute(t.delete())
        runner = _sql_runner(tmp_path, state, postgres_url, "late", "updated_at", "id", f"safety_lag = {lag}\n")
        slow = engine.connect()
        slow_tx = slow.begin()
        slow.execute(t.insert().values(id=1))  # stamped now(), at its transaction's start ...
        time.sleep(0.05)
        with engine.begin() as fast:
            fast.execute(t.insert().values(id=2))  # ... stamped later, committed first
        runner.run()
        slow_tx.commit()  # the first row becomes visible only now
        slow.close()
        time.sleep(lag + 0.3)
        runner.run()
        return accepted_ids(state, "dept-sql")

    assert scenario(0) == {"2"}  # without a lag the late row is passed by the cursor and lost
    assert scenario(1.0) == {"1", "2"}
    engine.dispose()


def test_a_feed_page_with_a_duplicate_key_fails_rather_than_guessing(tmp_path, state, feed):  # noqa: F811
    from tests.system.test_sources import http_config

    runner = pull_runner(http_config(tmp_path, feed.url, retries=0)["permits"], state)
    feed.faults = [("body", b'{"data": {"items": [{"rec_id": "r0", "body": {"amount": 1, "amount": 1000000}}], '
                            b'"next": "0"}}')]
    result = runner.run()
    assert result.status == "failed" and "appears twice" in result.error and state.pending_depth() == 0


def test_a_run_that_lost_its_lock_never_moves_the_cursor(tmp_path, state, monkeypatch):
    """Another run took over (the TTL passed): the stale run's cursor write must not land."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text("".join(f'{{"id": "r{i}", "content": {i}}}\n' for i in range(10)))
    runner = pull_runner(drop_folder(tmp_path, inbox), state)
    real_ingest = runner._ingest

    def ingest_then_lose_the_lock(items, result):
        real_ingest(items, result)
        sql(state.url, "UPDATE sources SET lock_token = 'another-run' WHERE name = 'drop'")  # ours expired; another holds it

    monkeypatch.setattr(runner, "_ingest", ingest_then_lose_the_lock)
    result = runner.run()
    assert result.status == "failed" and "lost its run lock" in result.error
    assert runner.cursor() is None and (inbox / "a.jsonl").exists()  # neither cursor nor finish moved
    assert len(accepted_ids(state, "dept-f")) == 10  # the records themselves are accepted: nothing lost


def test_the_quarantine_is_listed_with_times_and_can_be_dropped_from_the_cli(tmp_path, db, clean_redis):
    import json
    import os
    import subprocess
    import sys

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"id": "x", "content": 1}\n{"id": "y"}\n{"content": 3}\n')
    drop_folder(tmp_path, inbox)  # writes sources.toml
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_REDIS_URL": clean_redis,
           "ANCHORPIPE_ARCHIVE": str(tmp_path / "archive"), "ANCHORPIPE_SOURCES": str(tmp_path / "sources.toml")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipelines.cli", "source", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    assert cli("run", "drop", "--once").returncode == 0
    listed = [json.loads(line) for line in cli("quarantine", "drop").stdout.splitlines()]
    assert len(listed) == 2 and all(d["at"].endswith("+00:00") and "T" in d["at"] for d in listed)
    first = listed[0]["position"]
    assert cli("quarantine", "drop", "--drop", first).stdout.strip() == "dropped 1 quarantined item of drop"
    assert cli("quarantine", "drop", "--drop-all").stdout.strip() == "dropped 1 quarantined item of drop"
    assert cli("quarantine", "drop").stdout == ""

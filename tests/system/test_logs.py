"""Structured logs: one JSON line per batch per stage and per pull run, with ids and counts, never content."""

from __future__ import annotations

import json


from tests.conftest import pull_runner
from tests.system.test_stages import accept, pipe, run_all  # noqa: F401  (pipe is a fixture)


def test_one_line_per_batch_per_stage_with_its_figures_and_no_content(pipe, json_lines):  # noqa: F811
    json_lines.start()
    accept(pipe, "agency-a", 2500)
    done = run_all(pipe)
    lines = [line for line in json_lines() if line.get("event")]
    for stage in ("sealed", "anchored", "archived"):
        mine = [line for line in lines if line["event"] == stage]
        assert sorted(line["batch"] for line in mine) == sorted(done), stage  # one line per batch
        assert sum(line["records"] for line in mine) == 2500
        assert all(line["level"] == "INFO" and line["logger"] == "anchorpipe" and "time" in line for line in mine)
    archived = [line for line in lines if line["event"] == "archived"]
    assert all(line["agency"] == "agency-a" and line["bytes"] > 1000 * 500 for line in archived)
    text = json.dumps(lines)
    salts = [c.salt.hex() for b in done for c in pipe.state.load_batch(b).commitments]
    assert not any(s in text for s in salts[:50])  # ids and counts only


def test_a_pull_run_logs_one_line(db, tmp_path, json_lines):
    from pipelines.state.postgres import PostgresState
    from tests.system.test_pull_hostile_sources import drop_folder

    json_lines.start()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"id": "x", "content": 1}\n{"id": "y"}\n')
    pull_runner(drop_folder(tmp_path, inbox), PostgresState.connect(db)).run()
    (line,) = [line for line in json_lines() if line.get("event") == "pulled"]
    assert (line["source"], line["status"], line["accepted"], line["quarantined"]) == ("drop", "ok", 1, 1)
    runner = pull_runner(drop_folder(tmp_path, inbox), PostgresState.connect(db))
    assert runner.run().status == "ok"  # nothing new: no line at INFO (the puller's every tick)
    assert [line for line in json_lines() if line.get("event") == "pulled"] == []



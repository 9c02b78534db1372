"""Structured logs: one JSON line per batch per stage and per pull run, with ids and counts, never content."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import pull_runner
from pipelines.config import Settings
from pipelines.ops import logs
from tests.test_stages import accept, pipe, run_all  # noqa: F401  (pipe is a fixture)


@pytest.fixture
def json_lines(capsys, tmp_path):
    """JSON logging to the captured stderr; yields a reader of the lines logged so far. (Logging is set up
    when the test starts: capsys replaces sys.stderr only then.)"""
    started = []

    def read() -> list[dict]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]

    def start() -> None:
        logs.configure(Settings(database_url="postgresql://x/y", redis_url="redis://x", archive=str(tmp_path)))
        started.append(True)

    read.start = start  # type: ignore[attr-defined]
    yield read
    for h in [h for h in logging.getLogger().handlers if h.get_name() == "anchorpipe"]:
        logging.getLogger().removeHandler(h)


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
    from tests.test_pull_hardening import drop_folder

    json_lines.start()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"id": "x", "content": 1}\n{"id": "y"}\n')
    pull_runner(drop_folder(tmp_path, inbox), PostgresState.connect(db)).run()
    (line,) = [line for line in json_lines() if line.get("event") == "pulled"]
    assert (line["source"], line["status"], line["accepted"], line["quarantined"]) == ("drop", "ok", 1, 1)


def test_text_lines_for_a_terminal(capsys, tmp_path):
    logs.configure(Settings(database_url="postgresql://x/y", redis_url="redis://x", archive=str(tmp_path),
                            log_format="text"))
    try:
        logs.event("sealed", "sealed batch b1", batch="b1")
        assert "INFO anchorpipe sealed batch b1" in capsys.readouterr().err
    finally:
        for h in [h for h in logging.getLogger().handlers if h.get_name() == "anchorpipe"]:
            logging.getLogger().removeHandler(h)


def test_the_apis_access_lines_are_json_too(json_lines):
    json_lines.start()
    access = logging.getLogger("uvicorn.access")
    access.handlers.append(logging.NullHandler())  # as uvicorn leaves it: its own handler, no propagation
    json_lines.start()
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", "/v1/records", "1.1", 202)
    (line,) = [x for x in json_lines() if x["logger"] == "uvicorn.access"]
    assert line["message"] == '127.0.0.1:5000 - "POST /v1/records HTTP/1.1" 202' and line["level"] == "INFO"


def test_access_lines_never_show_a_query_string(json_lines):
    """A key sent as ?api_key=... is refused (401), and its access line does not carry it either."""
    json_lines.start()
    key = "ap_" + "s" * 43
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET",
                                             f"/v1/records/r1?api_key={key}&agency=a", "1.1", 401)
    (line,) = [x for x in json_lines() if x["logger"] == "uvicorn.access"]
    assert key not in json.dumps(line) and "agency=a" not in line["message"]
    assert line["message"] == '127.0.0.1:5000 - "GET /v1/records/r1?[redacted] HTTP/1.1" 401'

"""Log lines: JSON for machines, text for a terminal, and never a query string in an access line."""

from __future__ import annotations

import json
import logging

from pipelines.config import Settings
from pipelines.ops import logs
from tests.system.test_stages import accept, pipe, run_all  # noqa: F401  (pipe is a fixture)


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


def test_uvicorns_coloured_copy_of_a_line_is_left_out(json_lines):
    """uvicorn logs each line twice over: plain, and with ANSI colours in ``color_message``; only the plain one."""
    json_lines.start()
    logging.getLogger("uvicorn.error").warning("Started server process [%d]", 42,
                                               extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    (line,) = [x for x in json_lines() if x["logger"] == "uvicorn.error"]
    assert line["message"] == "Started server process [42]" and "color_message" not in line
    assert "\x1b" not in json.dumps(line) and "\\u001b" not in json.dumps(line)

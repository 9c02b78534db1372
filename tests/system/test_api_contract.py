"""The intake API's versioned contract: docs/openapi.json is what the code serves (CI fails otherwise), every
error answer is documented as, and is, an RFC 9457 problem details object."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.api.app import openapi_document
from tests.system.test_intake_api import env, post  # noqa: F401  (a fixture)
from tests.support.paths import ROOT

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def test_the_committed_contract_is_the_codes():
    res = CliRunner().invoke(main, ["openapi", "--check", "--out", str(ROOT / "docs" / "openapi.json")])
    assert res.exit_code == 0, res.output
    changed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    changed["paths"]["/v1/records"]["post"]["responses"].pop("409")
    tmp = ROOT / "tests" / "artifacts" / "openapi-changed.json"
    tmp.write_text(json.dumps(changed, indent=1) + "\n")
    try:
        res = CliRunner().invoke(main, ["openapi", "--check", "--out", str(tmp)])
        assert res.exit_code == 1 and "not the API's current contract" in res.output
    finally:
        tmp.unlink()


def test_every_error_answer_is_documented_as_a_problem_with_an_example():
    doc = openapi_document()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    problem = doc["components"]["schemas"]["Problem"]
    assert PROBLEM_KEYS <= set(problem["properties"]) and set(problem["required"]) >= {"title", "status", "detail"}
    seen = 0
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for code, answer in op["responses"].items():
                if code[0] in "45":
                    assert list(answer["content"]) == ["application/problem+json"], (path, method, code)
                    assert answer["content"]["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
                    seen += 1
    assert seen >= 10
    post_answers = doc["paths"]["/v1/records"]["post"]["responses"]
    assert {"202", "401", "403", "409", "413", "422", "429", "503"} <= set(post_answers)
    assert post_answers["422"]["content"]["application/problem+json"]["example"]["problems"]


def test_errors_are_problem_details(env):  # noqa: F811
    client, keys, _ = env
    answers = [client.post("/v1/records", json={"id": "x", "content": 1}),  # no key: 401
               post(client, keys["a"], [{"id": "a", "content": 1}, {"id": ""}]),  # 422
               client.get("/v1/records/nope", headers={"Authorization": f"Bearer {keys['a']}"}),  # 404
               client.get("/no/such/route")]
    post(client, keys["a"], {"id": "same", "content": 1})
    answers.append(post(client, keys["a"], {"id": "same", "content": 2}))  # 409
    for resp, status in zip(answers, (401, 422, 404, 404, 409), strict=True):
        doc = resp.json()
        assert resp.status_code == status and resp.headers["content-type"] == "application/problem+json"
        assert PROBLEM_KEYS <= set(doc) and doc["status"] == status and doc["detail"]
    assert answers[1].json()["type"] == "/problems/invalid-records" and answers[1].json()["errors"] == 1
    assert answers[4].json()["type"] == "/problems/conflicting-record" and answers[4].json()["id"] == "same"


def test_an_agency_over_its_rate_limit_gets_429_with_retry_after(db, clean_redis, tmp_path):
    import time

    from fastapi.testclient import TestClient

    from pipelines.config import Settings
    from pipelines.api.app import create_app
    from pipelines.intake.auth import add_agency
    from pipelines.state.postgres import PostgresState

    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), rate_limit=100,
                   rate_limits="big-agency=1000")
    state = PostgresState.connect(db)
    small, big = add_agency(state, "small-agency"), add_agency(state, "big-agency")
    client = TestClient(create_app(cfg))
    assert post(client, small, [{"id": f"r{i}", "content": i} for i in range(60)]).status_code == 202
    second = post(client, small, [{"id": f"s{i}", "content": i} for i in range(60)])
    if second.status_code == 202:  # a new second began between the two: the window is per second
        second = post(client, small, [{"id": f"t{i}", "content": i} for i in range(60)])
    assert second.status_code == 429 and second.headers["content-type"] == "application/problem+json"
    assert int(second.headers["retry-after"]) >= 1 and second.json()["type"] == "/problems/rate-limited"
    assert post(client, big, [{"id": f"b{i}", "content": i} for i in range(500)]).status_code == 202
    whole = post(client, small, [{"id": f"w{i}", "content": i} for i in range(101)])
    assert whole.status_code == 429 and "split it" in whole.json()["detail"]
    assert whole.json()["type"] == "/problems/request-over-rate-limit"  # permanent: the client does not wait
    # A refused request stores nothing and counts for nothing: in the next window the same records go in.
    time.sleep(1.05)
    again = post(client, small, [{"id": f"u{i}", "content": i} for i in range(60)])
    assert again.status_code == 202 and again.json()["accepted"] == 60


def test_the_html_reference_is_built_from_the_contract_and_served(env):  # noqa: F811
    """web/dist/api.html (Redoc, everything inlined: `make` builds it from docs/openapi.json) renders every
    operation in a headless Chromium, and the API serves it at /docs."""
    import shutil
    import subprocess

    page = ROOT / "web" / "dist" / "api.html"
    html = page.read_text()
    assert json.loads((ROOT / "docs" / "openapi.json").read_text())["info"]["title"] in html
    chromium = shutil.which("chromium")
    assert chromium, "the tests need Debian's chromium (make browser-deps)"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert ">Submit one record" in dom and ">Register a URL for events" in dom, dom[-2000:]
    client, _, _ = env
    served = client.get("/docs")
    assert served.status_code == 200 and served.text == html


def test_the_client_honours_retry_after_and_gets_everything_in(db, clean_redis, tmp_path):
    from fastapi.testclient import TestClient

    from anchorpipe.client import Client
    from pipelines.config import Settings
    from pipelines.api.app import create_app
    from pipelines.intake.auth import add_agency
    from pipelines.state.postgres import PostgresState

    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"), rate_limit=100)
    key = add_agency(PostgresState.connect(db), "paced-agency")
    client = Client("http://testserver", key, chunk=80)
    client.http = TestClient(create_app(cfg), headers=client.headers)  # the app in-process, same httpx API
    t = time.monotonic()
    done = client.submit({"id": f"p{i}", "content": i} for i in range(320))
    assert done.accepted == 320 and time.monotonic() - t >= 2.0  # 4 chunks at 100/s: it waited, as told
    from anchorpipe.client import ClientError

    too_big = Client("http://testserver", key, chunk=150, retries=3)
    too_big.http = client.http
    t = time.monotonic()
    with pytest.raises(ClientError, match="split it") as exc:
        too_big.submit({"id": f"q{i}", "content": i} for i in range(150))
    assert exc.value.status == 429 and time.monotonic() - t < 1.0  # no retry can help: raised at once
    # A carriage return inside an NDJSON line is JSON whitespace, not a line end.
    sent = client.http.post("/v1/records", content=b'{"id": "cr-1",\r"content": 1}\r\n{"id": "cr-2", "content": 2}\n',
                            headers={"Content-Type": "application/x-ndjson"})
    assert sent.status_code == 202 and sent.json()["accepted"] == 2


@pytest.mark.system
def test_the_pages_render_under_the_policies_the_api_sends():
    """/docs and /verify as the API serves them, with their Content-Security-Policy headers, in Chromium: the
    policy lets each page run (and forbids framing and any request)."""
    import shutil
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pipelines.api.app import CHECKER_PAGE, REFERENCE_PAGE, _checker_csp, _reference_csp

    pages = {"/docs": (REFERENCE_PAGE.read_bytes(), _reference_csp), "/verify": (CHECKER_PAGE.read_bytes(),
                                                                                 _checker_csp)}

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self):
            html, csp = pages[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", csp(html))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def dom(path: str) -> str:
            return subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                                   "--virtual-time-budget=8000", "--dump-dom",
                                   f"http://127.0.0.1:{server.server_port}{path}"],
                                  capture_output=True, text=True, timeout=120).stdout
        assert ">Submit one record" in dom("/docs")
        assert 'data-ready="' in dom("/verify")
    finally:
        server.shutdown()
    assert "frame-ancestors 'none'" in _reference_csp(b"") and "frame-ancestors 'none'" in _checker_csp(b"")

"""One canonical way to read JSON: every entry point applies the same rules and gets the same digest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipelines.config import Settings
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState
from tests.support.inputs import BAD_RECORDS



@pytest.fixture
def api(db, clean_redis, tmp_path):
    cfg = Settings(database_url=db, redis_url=clean_redis, archive=str(tmp_path / "archive"))
    key = add_agency(PostgresState.connect(db), "agency-a")
    return TestClient(create_app(cfg)), {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_the_api_refuses_json_outside_the_rules_with_a_422(api, name):
    client, auth = api
    resp = client.post("/v1/records", content=BAD_RECORDS[name], headers={**auth, "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"] == 1


def test_two_integers_beyond_2_64_never_share_a_digest(api):
    client, auth = api
    for n in ("123456789012345678890", "123456789012345678891"):
        body = '{"id": "n' + n + '", "content": {"n": ' + n + "}}"
        assert client.post("/v1/records", content=body, headers=auth).status_code == 422


def test_ndjson_reports_every_bad_line(api):
    client, auth = api
    body = "\n".join(['{"id": "ok", "content": 1}', "{broken", '{"id": "n", "content": NaN}', "",
                      '{"id": 5, "content": 1}', '{"id": "ok2", "content": 2}'])
    resp = client.post("/v1/records", content=body, headers={**auth, "Content-Type": "application/x-ndjson"})
    assert resp.status_code == 422
    assert [(d["index"], d["field"]) for d in resp.json()["problems"]] == [(1, "record"), (2, "record"), (3, "id")]
    assert client.get("/v1/records/ok", headers=auth).status_code == 404  # nothing of the request was stored


@pytest.mark.system
def test_seal_reports_giant_numbers_and_deep_nesting_as_numbered_lines(tmp_path: Path):
    lines = ['{"id": "a", "content": 1}', BAD_RECORDS["5,000 digits"], BAD_RECORDS["depth 2000"],
             '{"id": "b", "content": 2}']
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "seal", "in.jsonl", "--agency", "dept-x",
                          "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "line 2: integer" in res.stderr and "line 3: nesting deeper than 64" in res.stderr
    assert not (tmp_path / "out").exists()



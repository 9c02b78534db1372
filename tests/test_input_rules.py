"""One canonical way to read JSON: every entry point applies the same rules and gets the same digest."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.cli.common import load_json
from pipelines.config import Settings
from pipelines.core.commitment import content_sha256
from pipelines.errors import InputError, RecordError
from pipelines.api.app import create_app
from pipelines.intake.auth import add_agency
from pipelines.intake.records import parse_body, parse_record, read_jsonl
from pipelines.sources import Mapping
from pipelines.sources.lines import _decode
from pipelines.state.postgres import PostgresState

DEEP_1000 = '{"id": "d", "content": ' + "[" * 1000 + "]" * 1000 + "}"
BAD_RECORDS = {
    "integer beyond 2**64": '{"id": "n", "content": {"n": 123456789012345678901234567890}}',
    "integer beyond 2**53": '{"id": "n", "content": {"n": 9007199254740993}}',
    "5,000 digits": '{"id": "n", "content": ' + "9" * 5000 + "}",
    "NaN": '{"id": "n", "content": NaN}',
    "overflowing float": '{"id": "n", "content": 1e400}',
    "duplicate key": '{"id": "n", "content": {"a": 1, "a": 2}}',
    "depth 100": '{"id": "d", "content": ' + "[" * 100 + "]" * 100 + "}",
    "depth 1000": DEEP_1000,
    "depth 2000": '{"id": "d", "content": ' + "[" * 2000 + "]" * 2000 + "}",
    "lone surrogate": '{"id": "s", "content": "\\ud800"}',
    "lone surrogate in a key": '{"id": "s", "content": {"\\udfff": 1}}',
}


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


def test_verify_record_reads_the_record_file_by_the_same_rules(tmp_path: Path):
    (tmp_path / "rec.json").write_text('{"n": 123456789012345678901234567890}')
    with pytest.raises(InputError, match="outside"):
        load_json(tmp_path / "rec.json")


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_a_pulled_line_outside_the_rules_becomes_a_quarantinable_item(name):
    with pytest.raises(InputError):  # refused when read or when validated: never an exception of another kind
        _via_pull(BAD_RECORDS[name])


def test_record_ids_are_not_unicode_normalised():
    """Documented: ids are compared as given, so NFC and NFD spellings are two records."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    records = read_jsonl([json.dumps({"id": i, "content": 1}).encode() for i in (nfc, nfd)])
    assert [r.id for r in records] == [nfc, nfd]


# Every entry point, from the same text to a digest: the API body, a sealed file's line, a pulled line
# (push format), and `verify --record` (content alone).
def _via_api(line: str) -> bytes:
    return parse_body(line.encode(), "application/json", 10)[0].content_sha256


def _via_seal(line: str) -> bytes:
    return read_jsonl([line.encode()])[0].content_sha256


def _via_pull(line: str) -> bytes:
    obj, problem = _decode(line.encode(), None)
    if problem:
        raise InputError(problem)
    item = Mapping().pulled("x", obj)
    if item.problem:
        raise InputError(item.problem)
    return parse_record(item.record).content_sha256


def _via_verify(line: str, tmp: Path) -> bytes:
    content = line[line.index('"content": ') + len('"content": '):-1]
    (tmp / "rec.json").write_text(content)
    return content_sha256(load_json(tmp / "rec.json"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_every_entry_point_reads_the_same_text_to_the_same_digest_or_refuses_it(value, tmp_path_factory):
    line = '{"id": "r", "content": ' + json.dumps(value, allow_nan=True) + "}"
    tmp = tmp_path_factory.mktemp("v")
    outcomes = []
    for read in (_via_api, _via_seal, _via_pull, lambda text: _via_verify(text, tmp)):
        try:
            outcomes.append(read(line).hex())
        except (InputError, RecordError):
            outcomes.append("refused")
    assert len(set(outcomes)) == 1, outcomes


@pytest.mark.parametrize("bad", ["id-\u202eexe.pdf", "a\u2066b", "x\u0085y", "csi\u009b31m"])
def test_bidirectional_and_c1_controls_are_refused_in_new_record_ids(bad):
    from pipelines.errors import FieldError
    from pipelines.intake.records import parse_record

    with pytest.raises(FieldError, match="U\\+"):
        parse_record({"id": bad, "content": 1})


def test_proofs_sealed_before_the_rule_still_parse():
    from pipelines.core.commitment import check_record_id

    assert check_record_id("old-\u202eid") == "old-\u202eid"  # the proof format keeps its rule


def test_terminal_output_escapes_what_a_terminal_would_obey():
    from click.testing import CliRunner

    from pipelines.cli.common import echo, printable

    assert printable("batch \x1b[2J\u202eevil\ttab\nnext ü") == "batch \\u001b[2J\\u202eevil\ttab\nnext ü"
    import click

    @click.command()
    def show() -> None:
        echo("FINDING: \x1b]0;owned\x07 \U000e0041")

    out = CliRunner().invoke(show).output
    assert "\x1b" not in out and "\x07" not in out and "\\u001b]0;owned\\u0007 \\U000e0041" in out

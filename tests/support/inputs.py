"""Inputs outside the rules, and each entry point's way of reading a line, shared by the tests of the input rules."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from pipelines.cli.common import load_json
from pipelines.core.commitment import content_sha256
from pipelines.errors import InputError
from pipelines.intake.records import parse_body, parse_record, read_jsonl
from pipelines.sources import Mapping
from pipelines.sources.lines import _decode

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


# Every entry point, from the same text to a digest: the API body, a sealed file's line, a pulled line
# (push format), and `verify --record` (content alone).
def via_api(line: str) -> bytes:
    return parse_body(line.encode(), "application/json", 10)[0].content_sha256


def via_seal(line: str) -> bytes:
    return read_jsonl([line.encode()])[0].content_sha256


def via_pull(line: str) -> bytes:
    obj, problem = _decode(line.encode(), None)
    if problem:
        raise InputError(problem)
    item = Mapping().pulled("x", obj)
    if item.problem:
        raise InputError(item.problem)
    return parse_record(item.record).content_sha256


def via_verify(line: str, tmp: Path) -> bytes:
    content = line[line.index('"content": ') + len('"content": '):-1]
    (tmp / "rec.json").write_text(content)
    return content_sha256(load_json(tmp / "rec.json"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)

"""Turning a request body into validated records: one record, a JSON array, or NDJSON."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import orjson

from pipelines.core.commitment import SALT_SIZE
from pipelines.errors import InputError
from pipelines.records import FieldError, RecordInput, parse_record
from pipelines.state import Accepted, State


@dataclass(frozen=True)
class Problem:
    index: int
    field: str
    message: str


class BodyError(InputError):
    """The body is not records; ``problems`` says where (0-based record index, field)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"record {p.index} {p.field}: {p.message}" for p in problems[:10]))


def parse_body(body: bytes, content_type: str, max_records: int) -> list[RecordInput]:
    """Parse every record; raise BodyError naming each bad one, and refuse ids repeated with other content."""
    if "ndjson" in content_type or "jsonl" in content_type:
        objects = []
        for n, line in enumerate(body.splitlines()):
            if line.strip():
                try:
                    objects.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise BodyError([Problem(len(objects), "record", f"line {n + 1} is not JSON: {exc}")]) from None
    else:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BodyError([Problem(0, "body", f"not JSON: {exc}")]) from None
        objects = doc if isinstance(doc, list) else [doc]
    if not objects:
        raise BodyError([Problem(0, "body", "no records")])
    if len(objects) > max_records:
        raise BodyError([Problem(max_records, "body", f"more than {max_records} records in one request")])
    records, problems, seen = [], [], {}
    for i, obj in enumerate(objects):
        try:
            record = parse_record(obj)
        except FieldError as exc:
            problems.append(Problem(i, exc.field, str(exc)))
            continue
        first = seen.setdefault(record.id, (i, record.content_sha256))
        if first[1] != record.content_sha256:
            problems.append(Problem(i, "id", f"record id {record.id!r} repeats record {first[0]} with other content"))
        records.append(record)
    if problems:
        raise BodyError(problems)
    return records


def store_records(state: State, agency: str, records: list[RecordInput]) -> list[Accepted]:
    """The one way records enter: fresh salts, then one atomic, idempotent accept (see State.accept)."""
    fresh = [(r.id, r.content_sha256, secrets.token_bytes(SALT_SIZE)) for r in records]
    return state.accept(agency, fresh)[0]

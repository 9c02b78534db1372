"""Turning agency input into validated records: the one parser and the one duplicate policy.

Every entry point (the API's request bodies, pull sources, ``anchorpipe seal``,
``verify --record``) reads JSON with :mod:`pipelines.core.jsontext`, validates
records with :func:`parse_record` and applies :func:`unique`: an id repeated
with the same content is one record; repeated with other content it is a
problem at its later position, and the first one stands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pipelines.core import jsontext
from pipelines.core.commitment import RecordInput, check_new_record_id, content_sha256, parse_sha256_hex
from pipelines.errors import FieldError, InputError, Problem, RecordError


def parse_record(obj: object) -> RecordInput:
    """Validate one record object: ``{"id", "content"}`` or ``{"id", "sha256"}``.

    ``content`` is any JSON value, hashed over its RFC 8785 canonical bytes;
    ``sha256`` is a digest the agency computed itself (64 hex digits).
    """
    if not isinstance(obj, dict):
        raise FieldError("record", f"a record must be a JSON object, got {type(obj).__name__}")
    extra = set(obj) - {"id", "content", "sha256"}
    if extra:
        raise FieldError("record", f"unknown field(s) {sorted(extra)}; a record has id and content or sha256")
    if "id" not in obj:
        raise FieldError("id", "field 'id' is missing")
    record_id = _field("id", check_new_record_id, obj["id"])
    if ("content" in obj) == ("sha256" in obj):
        raise FieldError("content", "give exactly one of 'content' and 'sha256'")
    if "content" in obj:
        return RecordInput(record_id, _field("content", content_sha256, obj["content"]))
    return RecordInput(record_id, _field("sha256", parse_sha256_hex, obj["sha256"]))


def _field(name: str, check: Callable[[Any], Any], value: object) -> Any:
    try:
        return check(value)
    except InputError as exc:
        message = str(exc) if name == "id" else f"field '{name}': {exc}"
        raise FieldError(name, message) from None


def unique(records: Iterable[tuple[int, RecordInput]],
           where: Callable[[int], str] = "record {}".format) -> tuple[list[tuple[int, RecordInput]], list[Problem]]:
    """Apply the duplicate policy to ``(position, record)`` pairs: those to keep, and the problems.

    Same id and content again: kept once, at its first position. Same id, other
    content: a problem at the later position; ``where`` names a position in it.
    """
    first: dict[str, tuple[int, RecordInput]] = {}
    problems = []
    for position, record in records:
        seen = first.setdefault(record.id, (position, record))
        if seen[1] != record:
            message = f"record id {record.id!r} appears again with other content (first at {where(seen[0])})"
            problems.append(Problem(position, "id", message))
    return list(first.values()), problems


def _records(items: Iterable[tuple[int, bytes | Any]], where: Callable[[int], str],
             what: str) -> list[RecordInput]:
    """Parse ``(position, JSON line or parsed object)`` pairs, apply the duplicate policy, and raise one
    :class:`RecordError` naming every bad position (each position is reported once, in order)."""
    parsed: list[tuple[int, RecordInput]] = []
    problems: list[Problem] = []
    for position, item in items:
        try:
            obj = jsontext.loads(item, walk=False) if isinstance(item, bytes) else item
            parsed.append((position, parse_record(obj)))
        except jsontext.JSONTextError as exc:
            problems.append(Problem(position, "record", str(exc)))
        except FieldError as exc:
            problems.append(Problem(position, exc.field, str(exc)))
    kept, repeated = unique(parsed, where)
    problems = sorted(problems + repeated, key=lambda p: p.position)
    if problems:
        raise RecordError(problems, what=what)
    return [r for _, r in kept]


def read_jsonl(lines: Iterable[bytes], progress: Callable[[int], None] | None = None) -> list[RecordInput]:
    """Parse every line; raise one :class:`RecordError` naming each bad line (1-based). Blank lines are skipped."""

    def numbered() -> Iterable[tuple[int, bytes]]:
        for number, line in enumerate(lines, start=1):
            if progress is not None:
                progress(len(line))
            if line.strip():
                yield number, line

    records = _records(numbered(), "line {}".format, "line")
    if not records:
        raise InputError("no records in the input")
    return records


def parse_body(body: bytes, content_type: str, max_records: int) -> list[RecordInput]:
    """Parse one record, a JSON array of records, or NDJSON; raise RecordError naming every bad one.

    Positions are 0-based record indices (blank NDJSON lines do not count); a
    line that is not JSON is a problem at its index, and the lines after it are
    still checked.
    """
    items: list[Any]
    if "ndjson" in content_type or "jsonl" in content_type:
        items = [line for line in body.split(b"\n") if line.strip()]  # only \n ends a line: \r is JSON space
    else:
        try:
            doc = jsontext.loads(body, walk=False)
        except jsontext.JSONTextError as exc:
            raise RecordError([Problem(0, "body", str(exc))]) from None
        items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise RecordError([Problem(0, "body", "no records")])
    if len(items) > max_records:
        raise RecordError([Problem(max_records, "body", f"more than {max_records} records in one request")])
    return _records(enumerate(items), "record {}".format, "record")

"""Reading agency records from JSON Lines into validated commitments' inputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipelines.core.commitment import check_record_id, content_sha256, parse_sha256_hex
from pipelines.errors import InputError, RecordError


class FieldError(InputError):
    """A record is invalid because of ``field`` (id, content, sha256, or record for its shape)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RecordInput:
    """One record as an agency submitted it: its id and its content's SHA-256."""

    id: str
    content_sha256: bytes


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
    record_id = _field("id", check_record_id, obj["id"])
    if ("content" in obj) == ("sha256" in obj):
        raise FieldError("content", "give exactly one of 'content' and 'sha256'")
    if "content" in obj:
        return RecordInput(record_id, _field("content", content_sha256, obj["content"]))
    return RecordInput(record_id, _field("sha256", parse_sha256_hex, obj["sha256"]))


def _field(name: str, check, value):
    try:
        return check(value)
    except FieldError:
        raise
    except InputError as exc:
        message = str(exc) if name == "id" else f"field '{name}': {exc}"
        raise FieldError(name, message) from None


def read_jsonl(lines: Iterable[bytes], progress: Callable[[int], None] | None = None) -> list[RecordInput]:
    """Parse every line; raise one :class:`RecordError` naming each bad line (1-based).

    Blank lines are skipped. A record id seen twice is an error on its second line.
    """
    records: list[RecordInput] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if progress is not None:
            progress(len(line))
        if not line.strip():
            continue
        try:
            record = parse_record(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problems.append((number, f"not JSON: {exc}"))
            continue
        except InputError as exc:
            problems.append((number, str(exc)))
            continue
        if record.id in first_line:
            problems.append((number, f"record id {record.id!r} already on line {first_line[record.id]}"))
            continue
        first_line[record.id] = number
        records.append(record)
    if problems:
        raise RecordError(problems, what="line")
    if not records:
        raise InputError("no records in the input")
    return records

"""Reading agency records from JSON Lines into validated commitments' inputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pipelines.core.commitment import check_record_id, content_sha256, parse_sha256_hex
from pipelines.errors import InputError, RecordError


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
        raise InputError(f"a record must be a JSON object, got {type(obj).__name__}")
    extra = set(obj) - {"id", "content", "sha256"}
    if extra:
        raise InputError(f"unknown field(s) {sorted(extra)}; a record has id and content or sha256")
    if "id" not in obj:
        raise InputError("field 'id' is missing")
    record_id = check_record_id(obj["id"])
    if ("content" in obj) == ("sha256" in obj):
        raise InputError("give exactly one of 'content' and 'sha256'")
    if "content" in obj:
        return RecordInput(record_id, content_sha256(obj["content"]))
    try:
        return RecordInput(record_id, parse_sha256_hex(obj["sha256"]))
    except InputError as exc:
        raise InputError(f"field 'sha256': {exc}") from None


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

"""Reading JSONL or CSV records line by line from a byte stream, with byte positions."""

from __future__ import annotations

import csv
import io
from typing import BinaryIO

from pipelines.core import jsontext
from pipelines.sources import Mapping, Pulled


def parse_lines(stream: BinaryIO, limit: int, csv_header: bytes | None, mapping: Mapping,
                where: str) -> tuple[list[Pulled], int]:
    """Up to ``limit`` records from ``stream``'s current position; returns them and the end offset.

    A line that is not valid JSON (or CSV) is returned as an unmappable item, to
    be quarantined with its position, and never stops the lines after it. A
    last line without a newline is only read if the stream ends there.
    """
    items: list[Pulled] = []
    fields = next(csv.reader([csv_header.decode("utf-8", "replace")])) if csv_header else None
    pos = stream.tell()
    while len(items) < limit:
        line = stream.readline()
        if not line:
            break
        start, pos = pos, pos + len(line)
        if not line.strip():
            continue
        obj, problem = _decode(line, fields)
        position = f"{where} {start}"
        items.append(Pulled(position, obj, problem) if problem else mapping.pulled(position, obj))
    return items, pos


def _decode(line: bytes, fields: list[str] | None) -> tuple[object, str | None]:
    """(object, None), or (the raw text, the problem) for a line that cannot be read."""
    text = line.decode("utf-8", "replace")
    if fields is None:
        try:
            return jsontext.loads(line, walk=False), None  # parse_record applies the value rules
        except jsontext.JSONTextError as exc:  # every way a line can be bad, never an exception escaping
            return text[:1000], str(exc)
    try:
        row = next(csv.reader(io.StringIO(line.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        return text[:1000], f"not UTF-8 CSV: {exc}"
    if len(row) != len(fields):
        return text[:1000], f"CSV row has {len(row)} fields, the header has {len(fields)}"
    return dict(zip(fields, row, strict=True)), None

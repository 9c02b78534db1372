"""Constrained field types shared by the proof and receipt models."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

#: A SHA-256 hash in lowercase hex.
Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: A batch id: 1-128 characters of ``A-Z a-z 0-9 . _ -``.
BatchId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
#: An RFC 3339 UTC timestamp ending in ``Z``.
Timestamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")]

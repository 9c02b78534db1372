"""The one way records enter the pipeline, pushed or pulled: fresh salts, then one atomic accept."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from pipelines.core.commitment import SALT_SIZE, RecordInput
from pipelines.state import Accepted

if TYPE_CHECKING:
    from pipelines.state import RecordState


def store_records(state: RecordState, agency: str, records: list[RecordInput]) -> list[Accepted]:
    """Accept ``records`` for ``agency`` (see the state port's contract: atomic, idempotent per id)."""
    fresh = [(r.id, r.content_sha256, secrets.token_bytes(SALT_SIZE)) for r in records]
    return state.accept(agency, fresh)

"""The state port: accepted records, the pending pool, batches and their stage, keys, pull sources.

Contracts every adapter keeps (today's only adapter is :mod:`.redis`, the one
module that speaks to Redis):

- Accepting is atomic and idempotent per (agency, id): a record accepted again
  with the same digest keeps its first salt and accept time; another digest
  raises :class:`~pipelines.errors.ConflictRecord` and nothing of the call is
  stored. When ``accept`` returns, the records survive a restart.
- A batch's members, salts and seal time are fixed when it is claimed; later
  stages change only its stage and fields, by compare-and-swap on its stage.
- Every failure of the store itself raises :class:`~pipelines.errors.StateError`
  (transient), never the backend's own exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: The stages a batch waits in before it is archived (``failed`` is outside the flow).
STAGES = ("claimed", "sealed", "anchored")


@dataclass(frozen=True)
class Accepted:
    """One record's stored state after an accept: digest, salt, accept time, and whether it is new."""

    id: str
    content_sha256: bytes
    salt: bytes
    accepted_ms: int
    duplicate: bool


def now_ms() -> int:
    return int(time.time() * 1000)

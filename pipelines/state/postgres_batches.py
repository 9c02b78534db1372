"""A batch row as the state port's model, read the same way by every query that returns one."""

from __future__ import annotations

from typing import Any

from pipelines.state import BatchInfo


#: The columns :func:`batch_info` reads, in its order.
BATCH_COLUMNS = ("id, state, agency, sealed_at, size, created_ms, updated_ms, root, anchor, log_index, bundle, "
                 "error, ext_kinds, anchors_key")


def batch_info(row: tuple[Any, ...]) -> BatchInfo:
    """A row of :data:`BATCH_COLUMNS` as the port's model."""
    *head, ext_kinds, anchors_key = row
    return BatchInfo(*head, ext_kinds=tuple(ext_kinds or ()), anchors_key=anchors_key)

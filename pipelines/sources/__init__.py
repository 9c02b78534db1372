"""Pull sources: agency systems that anchorpipe's workers read records from.

A source is a narrow port (:class:`Source`); the pull stage (pipelines.stages.pull)
feeds what it returns into the same intake path as pushed records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Pulled:
    """One item read from a source: where it was (for quarantine) and the record object."""

    position: str
    record: Any  # {"id": ..., "content": ...} or {"id": ..., "sha256": ...}
    problem: str | None = None  # set when the item could not be read or mapped: it will be quarantined


@dataclass(frozen=True)
class Page:
    """Items after a cursor, the cursor to store once they are durable, and whether more are waiting."""

    items: list[Pulled]
    next_cursor: str | None
    more: bool
    finished: list[str] = field(default_factory=list)  # units (objects, files) fully read in this page


class Source(Protocol):
    """Contract for every connector:

    - ``fetch(cursor, limit)`` returns up to ``limit`` items after ``cursor``
      (None: from the beginning) and changes nothing at the agency. Fetching
      again with the same cursor returns the same items (or more, if new data
      arrived), so a crash before the cursor is stored only re-reads a page.
    - The returned cursor is opaque text, stored by the pull stage only after
      the page's records are durable, and handed back unchanged.
    - ``finish(units)`` runs after the cursor is stored, for connectors that
      must act on what they fully read (the drop folder moves files aside); it
      is idempotent.
    - Failures raise anchorpipe errors, ``transient`` when a retry may help.
    """

    def fetch(self, cursor: str | None, limit: int) -> Page: ...

    def finish(self, units: list[str]) -> None: ...


def dig(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested objects (``""``: the object itself); KeyError if absent."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, list) and part.isdigit():
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise KeyError(path)
    return obj


#: ``content_field`` naming the whole item as the record's content.
WHOLE_ITEM = "."


@dataclass(frozen=True)
class Mapping:
    """How an item of a source becomes a record: its id field, and its content or digest field.

    With neither ``content_field`` nor ``sha256_field`` set, items are read in
    the push format (``{"id", "content"}`` or ``{"id", "sha256"}``), so a record
    pushed and also pulled is one record. ``content_field = "."`` seals the whole item.
    """

    id_field: str = "id"
    content_field: str | None = None  # dotted path, "." for the whole item; None: the push format
    sha256_field: str | None = None  # instead of content: a digest the agency computed

    def pulled(self, position: str, item: Any) -> Pulled:
        """The record for ``item`` (an int id becomes its decimal text); a problem if fields are missing."""
        try:
            rid = dig(item, self.id_field)
            rid = str(rid) if isinstance(rid, int) and not isinstance(rid, bool) else rid
            if self.sha256_field:
                return Pulled(position, {"id": rid, "sha256": dig(item, self.sha256_field)})
            if self.content_field is None:  # the push format
                kind = "sha256" if isinstance(item, dict) and "sha256" in item and "content" not in item else "content"
                return Pulled(position, {"id": rid, kind: dig(item, kind)})
            path = "" if self.content_field == WHOLE_ITEM else self.content_field
            return Pulled(position, {"id": rid, "content": dig(item, path)})
        except (KeyError, IndexError, TypeError):
            wanted = self.sha256_field or self.content_field or "content' or 'sha256"
            return Pulled(position, item, f"item lacks field {self.id_field!r} or {wanted!r}")

"""Anchor receipts carried in a proof's ``anchors`` list, one model per ledger kind.

Each receipt can be checked offline (see pipelines.core.verify). Kinds are told
apart by their ``type`` member; an unknown type is a format error, never
silently accepted.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, TypeAdapter

from pipelines.core.fields import Hex32


class TlogAnchor(BaseModel):
    """The batch's entry in anchorpipe's built-in transparency log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["tlog"]
    origin: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    index: Annotated[StrictInt, Field(ge=0)]
    path: tuple[Hex32, ...] = Field(max_length=64)
    checkpoint: Annotated[str, StringConstraints(min_length=1, max_length=16384)]


Anchor = Annotated[TlogAnchor, Field(discriminator="type")]
#: Every anchor kind a verifier knows (``anchorpipe verify --require KIND``).
ANCHOR_KINDS = frozenset({"tlog"})

_ANCHOR = TypeAdapter(Anchor)


def parse_anchor(raw: str | bytes) -> TlogAnchor:
    """One anchor receipt from its JSON (as the pipeline stores it between stages); ValueError if malformed."""
    return _ANCHOR.validate_json(raw)

"""The intake API's contract: response models and documented answers, for the OpenAPI document.

Every answer a route can give is declared here, so ``/openapi.json`` lists each
status code with its body shape and clients (and the schemathesis fuzz test)
can hold the API to it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from pipelines.core.commitment import MAX_ID_BYTES


class Receipt(BaseModel):
    id: str
    leaf_hash: str
    status: Literal["accepted", "duplicate"]
    proof_url: str


class Submitted(BaseModel):
    agency: str
    accepted: int
    duplicates: int
    receipts: list[Receipt]


class AnchorStatus(BaseModel):
    #: Anchor kinds the record's newest proof carries (``tlog`` once its batch is in the log).
    confirmed: list[str]
    #: Kinds the operator seeks (ANCHORPIPE_ANCHORS) that its proof does not carry yet; an upgraded proof will.
    pending: list[str]


class RecordStatus(BaseModel):
    agency: str
    id: str
    status: str
    batch: str | None
    anchors: AnchorStatus
    proof: dict[str, Any] | None = None


class Error(BaseModel):
    detail: str


class FieldProblem(BaseModel):
    index: int
    field: str
    message: str


class Rejected(BaseModel):
    """Every problem of a rejected request (the first 100), by 0-based record index and field."""

    detail: list[FieldProblem]
    errors: int


class Conflict(BaseModel):
    detail: str
    id: str


def _error(description: str, model: type[BaseModel] = Error) -> dict[str, Any]:
    return {"model": model, "description": description}


AUTH = {401: _error("missing, unknown, revoked or expired API key"),
        503: _error("storage unavailable; retry after Retry-After seconds")}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH,
    403: _error("auditor keys cannot submit records"),
    409: _error("an id was already accepted with other content; nothing of the request was stored", Conflict),
    413: _error("the body is larger than ANCHORPIPE_MAX_BODY_BYTES"),
    422: _error("records that are not valid; nothing of the request was stored", Rejected),
}
GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH,
    404: _error("no such record (or one the key may not read: the same answer)"),
    422: _error("the agency name is not valid"),
}

_ID = {"type": "string", "minLength": 1, "description": f"at most {MAX_ID_BYTES} UTF-8 bytes, no control characters"}
_RECORD = {
    "oneOf": [
        {"type": "object", "required": ["id", "content"], "additionalProperties": False,
         "properties": {"id": _ID, "content": {"description": "any JSON value within the input rules "
                                                              "(docs/proof-format.md §1)"}}},
        {"type": "object", "required": ["id", "sha256"], "additionalProperties": False,
         "properties": {"id": _ID, "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}},
    ]
}
SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [_RECORD, {"type": "array", "items": _RECORD}]}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "one record a line"}},
        },
    }
}

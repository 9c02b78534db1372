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


#: Every error answer is an RFC 9457 problem details object, served as this media type.
PROBLEM_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    index: int
    field: str
    message: str


class Problem(BaseModel):
    """An error (RFC 9457): ``type`` names the kind of problem (a URI reference; ``about:blank`` when the
    status says it all), ``title`` its summary, ``detail`` this occurrence; the extensions below appear
    with the problems that have them."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    #: 422 invalid-records: how many problems the request had, and the first 100, by record index and field.
    errors: int | None = None
    problems: list[FieldProblem] | None = None
    #: 409 conflict: the id that was accepted before with other content.
    id: str | None = None


def _error(description: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"model": Problem, "description": description,
            "content": {PROBLEM_TYPE: {"example": {"type": "about:blank", **example}}}}


AUTH = {401: _error("missing, unknown, revoked or expired API key",
                     {"title": "Unauthorized", "status": 401, "detail": "missing or unknown API key"}),
        503: _error("storage unavailable; retry after Retry-After seconds",
                    {"title": "Service Unavailable", "status": 503, "detail": "storage unavailable, retry"})}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH,
    403: _error("auditor keys cannot submit records",
                {"title": "Forbidden", "status": 403, "detail": "auditor keys cannot submit records"}),
    409: _error("an id was already accepted with other content; nothing of the request was stored",
                {"type": "/problems/conflicting-record", "title": "Conflicting record", "status": 409,
                 "detail": "record 'permit/2026/0001' was already accepted with different content",
                 "id": "permit/2026/0001"}),
    413: _error("the body is larger than ANCHORPIPE_MAX_BODY_BYTES",
                {"title": "Content Too Large", "status": 413, "detail": "body exceeds 67108864 bytes"}),
    422: _error("records that are not valid; nothing of the request was stored",
                {"type": "/problems/invalid-records", "title": "Invalid records", "status": 422,
                 "detail": "1 record(s) are not valid; nothing was stored", "errors": 1,
                 "problems": [{"index": 1, "field": "id", "message": "id is empty"}]}),
    429: _error("the agency's rate limit (ANCHORPIPE_RATE_LIMIT records a second); retry after Retry-After "
                "seconds", {"type": "/problems/rate-limited", "title": "Too Many Requests", "status": 429,
                            "detail": "agency dept-a is over 1000 records/s; retry after 1 s"}),
}
GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH,
    404: _error("no such record (or one the key may not read: the same answer)",
                {"title": "Not Found", "status": 404, "detail": "no such record"}),
    422: _error("the agency name is not valid",
                {"title": "Unprocessable Content", "status": 422, "detail": "agency name is not valid"}),
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


class WebhookIn(BaseModel):
    """A URL to POST events to, and the events it wants: ``records.archived`` (a batch's proofs are archived,
    with its records' ids), ``anchors.confirmed`` (a batch's proofs carry more anchors), ``records.quarantined``
    (an item of one of the agency's pull sources was set aside)."""

    url: str
    events: list[Literal["records.archived", "anchors.confirmed", "records.quarantined"]]


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    #: The Standard Webhooks signing secret: returned once, when the webhook is registered.
    secret: str | None = None


WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH,
    400: _error("the body is not JSON", {"title": "Bad Request", "status": 400,
                                         "detail": "There was an error parsing the body"}),
    403: _error("auditor keys cannot register webhooks",
                {"title": "Forbidden", "status": 403, "detail": "auditor keys cannot register webhooks"}),
    422: _error("the URL or an event name is not valid",
                {"title": "Unprocessable Content", "status": 422, "detail": "want an http(s) URL"}),
}

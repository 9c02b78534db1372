"""Proof format v1: one self-contained JSON document per record.

Specified in docs/proof-format.md. :func:`parse_proof` is the only way in: it
bounds the input, parses it into frozen, validated models and turns every
problem into one :class:`ProofFormatError`. :func:`proof_document` is the only
way out, as a plain dict ready for ``json.dumps`` (fast enough for a million
proofs); tests check that the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from pipelines.core import jsontext
from pipelines.core.anchors import Anchor
from pipelines.core.commitment import check_agency, check_record_id
from pipelines.core.fields import BatchId, Hex32, Timestamp
from pipelines.errors import InputError, ProofFormatError

PROOF_FORMAT = "anchorpipe.proof/1"
MAX_PROOF_BYTES = 1 << 20


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecordCommitment(Frozen):
    agency: str
    id: str
    content_sha256: Hex32
    salt: Hex32

    @field_validator("agency")
    @classmethod
    def _agency(cls, v: str) -> str:
        return _as_value_error(check_agency, v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _as_value_error(check_record_id, v)


class BatchInclusion(Frozen):
    id: BatchId
    index: Annotated[StrictInt, Field(ge=0)]
    size: Annotated[StrictInt, Field(ge=1)]
    root: Hex32
    path: tuple[Hex32, ...] = Field(max_length=64)
    sealed_at: Timestamp

    @model_validator(mode="after")
    def _index_in_batch(self) -> BatchInclusion:
        if self.index >= self.size:
            raise ValueError(f"batch index {self.index} is not below batch size {self.size}")
        return self


class Proof(Frozen):
    format: Literal["anchorpipe.proof/1"]
    record: RecordCommitment
    leaf_hash: Hex32
    batch: BatchInclusion
    anchors: tuple[Anchor, ...] = Field(max_length=16)


def _as_value_error(check: Any, value: str) -> str:
    try:
        return str(check(value))
    except InputError as exc:
        raise ValueError(str(exc)) from None


def parse_proof(raw: bytes | str) -> Proof:
    """Parse a proof document; raise :class:`ProofFormatError` saying what is wrong."""
    if len(raw) > MAX_PROOF_BYTES:
        raise ProofFormatError(f"proof is {len(raw)} bytes, more than the {MAX_PROOF_BYTES} allowed")
    try:
        data = jsontext.loads(raw)  # bounded depth, no duplicate keys: nothing but ProofFormatError escapes
    except jsontext.JSONTextError as exc:
        raise ProofFormatError(f"proof is not JSON by anchorpipe's rules: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != PROOF_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ProofFormatError(f"not an anchorpipe proof: format is {got!r}, want {PROOF_FORMAT!r}")
    try:
        return Proof.model_validate(data)
    except ValidationError as exc:
        raise ProofFormatError(f"malformed proof: {_describe(exc)}") from exc


#: In an archived bundle every line ends with its batch's anchors, the same for the whole batch (archive/bundle.py).
ANCHORS_MEMBER = b',"anchors":'
_HEAD_KEYS = {"format", "record", "leaf_hash", "batch"}
_BATCH_KEYS = {"id", "index", "size", "root", "path", "sealed_at"}


def parse_proof_head(raw: bytes) -> tuple[RecordCommitment, str, dict[str, Any]]:
    """The record, leaf hash (hex) and raw batch object of a bundle line cut before its anchors (``raw`` is
    the line up to :data:`ANCHORS_MEMBER`, closed with ``}``). The record is validated; the caller checks
    the leaf hash and batch against what it recomputes. ProofFormatError if it is malformed."""
    try:
        data = jsontext.loads(raw, walk=False)  # no duplicate keys; every value is compared below
    except jsontext.JSONTextError as exc:
        raise ProofFormatError(f"proof is not JSON by anchorpipe's rules: {exc}") from None
    if not isinstance(data, dict) or set(data) != _HEAD_KEYS or data["format"] != PROOF_FORMAT:
        raise ProofFormatError(f"not an anchorpipe proof: want members {sorted(_HEAD_KEYS | {'anchors'})} and "
                               f"format {PROOF_FORMAT!r}")
    batch = data["batch"]
    if not isinstance(batch, dict) or set(batch) != _BATCH_KEYS or type(batch["index"]) is not int \
            or not isinstance(batch["path"], list) or not isinstance(data["leaf_hash"], str):
        raise ProofFormatError(f"malformed proof: batch must have exactly {sorted(_BATCH_KEYS)}, an integer index "
                               "and a path list")
    try:
        record = RecordCommitment.model_validate(data["record"])
    except ValidationError as exc:
        raise ProofFormatError(f"malformed proof: record: {_describe(exc)}") from exc
    return record, data["leaf_hash"], batch


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "document"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def proof_document(
    *,
    agency: str,
    record_id: str,
    content_sha256: bytes,
    salt: bytes,
    leaf_hash: bytes,
    batch_id: str,
    index: int,
    size: int,
    root: bytes,
    path: Sequence[str],
    sealed_at: str,
    anchors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON document of one proof, as plain data (see :class:`Proof`); ``path`` in hex."""
    return {
        "format": PROOF_FORMAT,
        "record": {"agency": agency, "id": record_id, "content_sha256": content_sha256.hex(), "salt": salt.hex()},
        "leaf_hash": leaf_hash.hex(),
        "batch": {
            "id": batch_id,
            "index": index,
            "size": size,
            "root": root.hex(),
            "path": list(path),
            "sealed_at": sealed_at,
        },
        "anchors": anchors or [],
    }

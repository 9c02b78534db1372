"""The witness's rules of C2SP tlog-witness ``add-checkpoint`` (c2sp.org/tlog-witness). No I/O.

A request body is ``old <size>``, zero to 63 base64 consistency-proof lines, an
empty line, then the signed checkpoint. The witness answers with the status codes
the spec assigns: 400 malformed (or old size beyond the checkpoint's), 403 no
trusted log signature, 404 unknown origin, 409 old size is not the one it holds
(or same size, other root), 422 the consistency proof fails; 200 with its
cosignature otherwise, after it durably recorded the new checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipelines.core import merkle
from pipelines.core.checkpoint import Checkpoint, open_checkpoint
from pipelines.core.note import Verifier
from pipelines.errors import BadSignature, NoTrustedSignature, VerificationError

MAX_PROOF_LINES = 63
#: The most a request body may be: 64 proof lines, a checkpoint note with its signatures, and margin.
MAX_REQUEST_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD = re.compile(r"^old (0|[1-9][0-9]{0,19})$")


class Refused(VerificationError):
    """The witness refuses to cosign; ``status`` is the HTTP status the spec gives, ``size`` the size it
    holds (409 only); ``evidence``: the log signed a checkpoint of the size held with another root (a fork it cannot deny)."""

    def __init__(self, status: int, message: str, size: int | None = None, evidence: bool = False) -> None:
        super().__init__(message)
        self.status, self.size, self.evidence = status, size, evidence
        #: With ``evidence``: the checkpoint the witness held when it refused (set by its state).
        self.held_note = ""


@dataclass(frozen=True)
class AddCheckpoint:
    old: int
    proof: tuple[bytes, ...]
    note: str

    def body(self) -> bytes:
        lines = [f"old {self.old}", *(base64.b64encode(h).decode() for h in self.proof)]
        return ("\n".join(lines) + "\n\n" + self.note).encode()


@dataclass(frozen=True)
class Held:
    """The latest checkpoint a witness cosigned for a log."""

    size: int
    root: bytes


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body; Refused(400) if it is malformed."""
    if len(body) > MAX_REQUEST_BYTES:
        raise Refused(413, f"request body is over {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise Refused(400, "want an old size line, proof lines, an empty line, then the checkpoint")
    lines = head.split("\n")
    m = _OLD.match(lines[0])
    if m is None:
        raise Refused(400, f"first line {lines[0][:40]!r} is not 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refused(400, f"{len(lines) - 1} consistency proof lines, at most {MAX_PROOF_LINES}")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, f"proof line {line[:60]!r} is not base64") from None
        if len(h) != merkle.HASH_SIZE:
            raise Refused(400, f"proof line decodes to {len(h)} bytes, want {merkle.HASH_SIZE}")
        proof.append(h)
    return AddCheckpoint(int(m.group(1)), tuple(proof), note)


def open_request(req: AddCheckpoint, logs: Mapping[str, Sequence[Verifier]]) -> Checkpoint:
    """The request's checkpoint once its log is known (404) and signed by a key the witness trusts for it
    (403), with an old size not beyond it (400)."""
    origin = req.note.split("\n", 1)[0]
    keys = logs.get(origin)
    if keys is None:
        raise Refused(404, f"unknown log {origin[:100]!r}")
    try:
        cp = open_checkpoint(req.note, list(keys), origin)
    except (NoTrustedSignature, BadSignature):
        raise Refused(403, "the checkpoint carries no valid signature by the log's key") from None
    except VerificationError as exc:
        raise Refused(400, f"checkpoint: {exc}") from None
    if req.old > cp.size:
        raise Refused(400, f"old size {req.old} is beyond the checkpoint's size {cp.size}")
    return cp


def check_extends(req: AddCheckpoint, cp: Checkpoint, held: Held | None) -> None:
    """The checkpoint extends the one the witness holds: old size equal to it (409), same root at the same
    size (409), and a consistency proof that verifies (422)."""
    have = held.size if held else 0
    if req.old != have:
        raise Refused(409, f"the witness holds size {have}, not {req.old}", have)
    if held is None or held.size == 0:
        if req.proof:
            raise Refused(422, "the consistency proof from size 0 must be empty")
        return
    if cp.size == held.size:
        if cp.root != held.root:
            raise Refused(409, f"a different root at size {held.size}: the log forked", have, evidence=True)
        if req.proof:
            raise Refused(422, "the consistency proof between equal sizes must be empty")
        return
    try:
        merkle.verify_consistency(held.size, cp.size, list(req.proof), held.root, cp.root)
    except VerificationError as exc:
        raise Refused(422, f"consistency proof from size {held.size} to {cp.size} fails: {exc}") from None

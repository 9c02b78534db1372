"""C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint). No I/O.

A checkpoint's text is the origin line, the tree size in decimal, the root hash
in base64, then optional extension lines; it is published as a signed note.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from pipelines.core.merkle import HASH_SIZE
from pipelines.core.note import Verifier, open_note
from pipelines.errors import VerificationError

_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse a checkpoint body; raise :class:`VerificationError` if it is malformed."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("malformed checkpoint: want origin, size and root lines ending in a newline")
    origin, size, root, *extensions = lines[:-1]
    if not origin:
        raise VerificationError("malformed checkpoint: empty origin")
    if not _SIZE.match(size) or int(size) >= 1 << 64:
        raise VerificationError(f"malformed checkpoint: size {size!r} is not a decimal uint64")
    try:
        raw_root = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("malformed checkpoint: root is not base64") from exc
    if len(raw_root) != HASH_SIZE:
        raise VerificationError(f"malformed checkpoint: root is {len(raw_root)} bytes, want {HASH_SIZE}")
    if any(not e for e in extensions):
        raise VerificationError("malformed checkpoint: empty extension line")
    return Checkpoint(origin, int(size), raw_root, tuple(extensions))


def open_checkpoint(note: str, verifiers: list[Verifier], origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with trusted keys and parse it; check its origin if given."""
    return open_signed_checkpoint(note, verifiers, origin)[0]


def open_signed_checkpoint(note: str, verifiers: list[Verifier],
                           origin: str | None = None) -> tuple[Checkpoint, list[str]]:
    """:func:`open_checkpoint`, also returning the names of the trusted keys whose signatures verified."""
    text, signers = open_note(note, verifiers)
    cp = parse_checkpoint_text(text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(f"checkpoint origin is {cp.origin!r}, want {origin!r}")
    return cp, signers

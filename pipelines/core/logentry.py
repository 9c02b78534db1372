"""The built-in log's entry for one sealed batch (format ``anchorpipe.entry/1``). No I/O.

``lp("anchorpipe.entry/1") || lp(UTF-8 batch id) || batch root (32 bytes) ||
u64be(batch size) || lp(ASCII sealed_at)``, where ``lp(x) = u16be(len(x)) || x``.
The log's leaf hash is the RFC 9162 leaf hash of these bytes; see docs/ledgers.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pipelines.core.framing import Reader, lp
from pipelines.core.merkle import HASH_SIZE

ENTRY_FORMAT = b"anchorpipe.entry/1"


@dataclass(frozen=True)
class BatchHead:
    """What the log binds of a sealed batch: its id, root, size and seal time."""

    id: str
    root: bytes
    size: int
    sealed_at: str

    def entry(self) -> bytes:
        return batch_entry(self.id, self.root, self.size, self.sealed_at)


def batch_entry(batch_id: str, root: bytes, size: int, sealed_at: str) -> bytes:
    """The log entry binding a batch's id, root, size and seal time.

    Preconditions (checked): a 32-byte root and 1 <= size < 2**64.
    """
    if len(root) != HASH_SIZE:
        raise ValueError(f"batch root is {len(root)} bytes, want {HASH_SIZE}")
    if not 1 <= size < 1 << 64:
        raise ValueError(f"batch size {size} out of range")
    return lp(ENTRY_FORMAT) + lp(batch_id.encode()) + root + struct.pack(">Q", size) + lp(sealed_at.encode())


def parse_batch_entry(entry: bytes) -> tuple[str, bytes, int, str]:
    """Inverse of :func:`batch_entry`: (batch id, root, size, sealed_at); ValueError if malformed."""
    try:
        r = Reader(entry)
        if r.take_lp() != ENTRY_FORMAT:
            raise ValueError("not an anchorpipe.entry/1 log entry")
        batch_id, root, size, sealed_at = r.take_lp().decode(), r.take(HASH_SIZE), r.take_u64(), r.take_lp()
    except ValueError as exc:
        raise ValueError(f"malformed log entry: {exc}") from None
    if not r.done():
        raise ValueError("trailing bytes after log entry")
    return batch_id, root, size, sealed_at.decode()

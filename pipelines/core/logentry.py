"""The built-in log's entry for one sealed batch (format ``anchorpipe.entry/1``). No I/O.

``lp("anchorpipe.entry/1") || lp(UTF-8 batch id) || batch root (32 bytes) ||
u64be(batch size) || lp(ASCII sealed_at)``, where ``lp(x) = u16be(len(x)) || x``.
The log's leaf hash is the RFC 9162 leaf hash of these bytes; see docs/ledgers.md.
"""

from __future__ import annotations

import struct

ENTRY_FORMAT = b"anchorpipe.entry/1"


def _lp(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def batch_entry(batch_id: str, root: bytes, size: int, sealed_at: str) -> bytes:
    """The log entry binding a batch's id, root, size and seal time.

    Preconditions (checked): a 32-byte root and 1 <= size < 2**64.
    """
    if len(root) != 32:
        raise ValueError(f"batch root is {len(root)} bytes, want 32")
    if not 1 <= size < 1 << 64:
        raise ValueError(f"batch size {size} out of range")
    return _lp(ENTRY_FORMAT) + _lp(batch_id.encode()) + root + struct.pack(">Q", size) + _lp(sealed_at.encode())


def parse_batch_entry(entry: bytes) -> tuple[str, bytes, int, str]:
    """Inverse of :func:`batch_entry`: (batch id, root, size, sealed_at); ValueError if malformed."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(entry):
            raise ValueError("truncated log entry")
        pos += n
        return entry[pos - n : pos]

    def take_lp() -> bytes:
        return take(struct.unpack(">H", take(2))[0])

    if take_lp() != ENTRY_FORMAT:
        raise ValueError("not an anchorpipe.entry/1 log entry")
    batch_id, root, size, sealed_at = take_lp().decode(), take(32), struct.unpack(">Q", take(8))[0], take_lp()
    if pos != len(entry):
        raise ValueError("trailing bytes after log entry")
    return batch_id, root, size, sealed_at.decode()

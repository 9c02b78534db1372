"""Length-prefixed byte framing shared by leaf data and log entries. No I/O.

``lp(x) = u16be(len(x)) || x``: the one framing used in ``anchorpipe.leaf/1``
and ``anchorpipe.entry/1`` (docs/proof-format.md, docs/ledgers.md).
"""

from __future__ import annotations

import struct

MAX_LP = 0xFFFF


def lp(data: bytes) -> bytes:
    """``data`` prefixed with its length as a big-endian u16. Precondition (checked): at most 65,535 bytes."""
    if len(data) > MAX_LP:
        raise ValueError(f"length-prefixed field is {len(data)} bytes, at most {MAX_LP}")
    return struct.pack(">H", len(data)) + data


class Reader:
    """Reads fixed-size and length-prefixed fields from ``data``; ValueError when it runs short."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated data")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def take_lp(self) -> bytes:
        return self.take(int(struct.unpack(">H", self.take(2))[0]))

    def take_u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def done(self) -> bool:
        return self.pos == len(self.data)

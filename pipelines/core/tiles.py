"""C2SP tlog-tiles (c2sp.org/tlog-tiles): paths, entry bundles, appending, reading. No I/O.

A tile at level L holds up to 256 consecutive hashes of tree level 8·L; a
partial tile (the right edge) has a width W < 256 and a ``.p/W`` suffix. Entry
bundles hold up to 256 entries, each as ``u16be(length) || bytes``. Storage is
reached only through the ``read`` callables the caller passes in.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from pipelines.core import merkle

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
H = merkle.HASH_SIZE

#: ``read_tile(level, index, width)`` returns the tile's bytes (width × 32).
TileReader = Callable[[int, int, int], bytes]
#: ``read_bundle(index, width)`` returns the entry bundle's bytes.
BundleReader = Callable[[int, int], bytes]


def _encode_index(n: int) -> str:
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g:03d}" for g in groups[:-1]] + [f"{groups[-1]:03d}"])


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} outside 1..{TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``, N in 3-digit groups, all but the last prefixed ``x``."""
    return f"tile/{level}/{_encode_index(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``."""
    return f"tile/entries/{_encode_index(index)}{_suffix(width)}"


def bundle(entries: list[bytes]) -> bytes:
    """An entry bundle: each entry as u16be(length) || bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > 0xFFFF:
            raise ValueError(f"entry of {len(e)} bytes does not fit a uint16 length")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def unbundle(data: bytes) -> list[bytes]:
    """Inverse of :func:`bundle`; ValueError on a truncated bundle."""
    entries, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated entry bundle")
        (n,) = struct.unpack_from(">H", data, pos)
        if pos + 2 + n > len(data):
            raise ValueError("truncated entry bundle")
        entries.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return entries


def split_hashes(tile: bytes) -> list[bytes]:
    if len(tile) % H:
        raise ValueError(f"tile of {len(tile)} bytes is not a whole number of hashes")
    return [tile[i : i + H] for i in range(0, len(tile), H)]


def _perfect_root(hashes: list[bytes]) -> bytes:
    """Root of a perfect subtree from its bottom hashes (a power of two of them)."""
    while len(hashes) > 1:
        hashes = [merkle.node_hash(a, b) for a, b in zip(hashes[0::2], hashes[1::2], strict=True)]
    return hashes[0]


def _chunks(items: list[bytes], first: int, end: int) -> list[tuple[int, list[bytes]]]:
    """Split items numbered ``[first * 256, end)`` into (tile index, items) chunks."""
    return [(t, items[(t - first) * TILE_WIDTH : (t - first + 1) * TILE_WIDTH])
            for t in range(first, -(-end // TILE_WIDTH))]


def append(old_size: int, entries: list[bytes], read_tile: TileReader, read_bundle: BundleReader) -> dict[str, bytes]:
    """Every tile and bundle (path → bytes) that changes when ``entries`` follow ``old_size``.

    Reads only the right-edge partial tile of each level and the partial bundle.
    The result is determined by the old log and the entries alone, so a retried
    append writes the same bytes.
    """
    new_size = old_size + len(entries)
    writes: dict[str, bytes] = {}
    first = old_size // TILE_WIDTH
    kept = unbundle(read_bundle(first, old_size % TILE_WIDTH)) if old_size % TILE_WIDTH else []
    for t, chunk in _chunks(kept + entries, first, new_size):
        writes[entries_path(t, len(chunk))] = bundle(chunk)
    fresh = merkle.leaf_hashes(entries)
    level = 0
    while True:
        c0, c1 = old_size >> (TILE_HEIGHT * level), new_size >> (TILE_HEIGHT * level)
        if c1 == c0:
            break
        first = c0 // TILE_WIDTH
        kept = split_hashes(read_tile(level, first, c0 % TILE_WIDTH)) if c0 % TILE_WIDTH else []
        row = kept + fresh
        for t, chunk in _chunks(row, first, c1):
            writes[tile_path(level, t, len(chunk))] = b"".join(chunk)
        base = first * TILE_WIDTH
        fresh = [_perfect_root(row[j * TILE_WIDTH - base : (j + 1) * TILE_WIDTH - base])
                 for j in range(c0 >> TILE_HEIGHT, c1 >> TILE_HEIGHT)]
        level += 1
    return writes


class TiledTree:
    """Node hashes of a tree of ``size`` entries, read from its tiles (cached per tile)."""

    def __init__(self, size: int, read_tile: TileReader) -> None:
        self.size = size
        self._read = read_tile
        self._cache: dict[tuple[int, int, int], list[bytes]] = {}

    def _row(self, level: int, tile: int) -> list[bytes]:
        count = self.size >> (TILE_HEIGHT * level)
        width = min(TILE_WIDTH, count - tile * TILE_WIDTH)
        key = (level, tile, width)
        if key not in self._cache:
            data = self._read(level, tile, width)
            if len(data) != width * H:
                raise ValueError(f"tile {tile_path(level, tile, width)} has {len(data)} bytes, want {width * H}")
            self._cache[key] = split_hashes(data)
        return self._cache[key]

    def node(self, level: int, index: int) -> bytes:
        """A :data:`merkle.NodeGetter`: the perfect subtree at (level, index) of this tree."""
        if (index + 1) << level > self.size:
            raise ValueError(f"node ({level}, {index}) is not complete in a tree of {self.size}")
        tlevel, rise = divmod(level, TILE_HEIGHT)
        lo = index << rise
        row = self._row(tlevel, lo // TILE_WIDTH)
        start = lo % TILE_WIDTH
        return _perfect_root(row[start : start + (1 << rise)])

    def root(self) -> bytes:
        return merkle.subtree_hash(self.node, 0, self.size) if self.size else merkle.EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        return merkle.inclusion_proof(self.node, index, self.size)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        return merkle.consistency_proof(self.node, old_size, self.size)

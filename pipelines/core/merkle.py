"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``;
a tree of n > 1 leaves splits at the largest power of two smaller than n. Odd
nodes are never duplicated, so the CVE-2012-2459 class of collision cannot arise,
and the prefixes keep a 64-byte leaf from posing as an inner node (CVE-2017-12842).

Verification follows transparency-dev/merkle's ``proof/verify.go``: every
precondition (sizes, index, hash lengths, exact proof length) is checked before
anything is hashed, and every failure raises :class:`VerificationError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipelines.errors import VerificationError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256

#: ``get_node(level, index)`` returns the hash of the perfect subtree holding
#: leaves ``[index * 2**level, (index + 1) * 2**level)``.
NodeGetter = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 hash of one leaf's data."""
    return _sha256(LEAF_PREFIX + data).digest()


def leaf_hashes(datas: Iterable[bytes]) -> list[bytes]:
    """RFC 9162 leaf hashes of many leaves (one comprehension: no per-leaf call overhead)."""
    sha, prefix = _sha256, LEAF_PREFIX
    return [sha(prefix + d).digest() for d in datas]


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 hash of an inner node from its children's hashes."""
    return _sha256(NODE_PREFIX + left + right).digest()


class Tree:
    """A sealed tree over known leaf hashes: its root and any leaf's inclusion path.

    Built bottom-up in one pass of n - 1 node hashes. A level of odd length
    promotes its last node unchanged; this yields exactly the RFC 9162 tree.
    ``path(i)`` then costs O(log n) lookups and no hashing, so all n paths
    together cost O(n log n).
    """

    __slots__ = ("levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        """Precondition: at least one leaf hash, each of 32 bytes (checked)."""
        if not leaf_hashes:
            raise ValueError("a tree needs at least one leaf")
        if set(map(len, leaf_hashes)) != {HASH_SIZE}:
            raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
        level = list(leaf_hashes)
        self.levels: list[list[bytes]] = [level]
        sha, prefix = _sha256, NODE_PREFIX
        while len(level) > 1:
            up = [sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
            if len(level) & 1:
                up.append(level[-1])
            self.levels.append(up)
            level = up

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def path(self, index: int) -> list[bytes]:
        """Inclusion path of leaf ``index``, leaf's sibling first (RFC 9162 order)."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} outside tree of size {self.size}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path

    def all_paths(self, as_hex: bool = False) -> list[tuple[Any, ...]]:
        """Every leaf's inclusion path, in leaf order, in O(n) Python steps (hex strings if ``as_hex``).

        Works top-down: a node's path is its sibling followed by its parent's
        path, so each level costs one tuple concatenation per node (done in C).
        """
        levels: list[list[Any]] = [[h.hex() for h in lv] for lv in self.levels[:-1]] if as_hex else self.levels[:-1]
        upper: list[tuple[Any, ...]] = [()]
        for level in reversed(levels):
            paired = len(level) & ~1
            paths = [(level[j ^ 1],) + upper[j >> 1] for j in range(paired)]
            if paired < len(level):  # a promoted last node has no sibling here
                paths.append(upper[-1])
            upper = paths
        return upper

    def node(self, level: int, index: int) -> bytes:
        """A :data:`NodeGetter` over this tree (perfect subtrees only)."""
        if (index + 1) << level > self.size:
            raise IndexError(f"no perfect subtree at level {level} index {index}")
        return self.levels[level][index]


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(get_node: NodeGetter, start: int, end: int) -> bytes:
    """MTH of leaves ``[start, end)``; ``start`` must be aligned as in an RFC 9162 tree."""
    n = end - start
    if n <= 0:
        raise ValueError(f"empty range [{start}, {end})")
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return get_node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(get_node, start, start + k), subtree_hash(get_node, start + k, end))


def inclusion_proof(get_node: NodeGetter, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside tree of size {size}")
    return _path(get_node, index, 0, size)


def _path(get_node: NodeGetter, m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return _path(get_node, m, start, start + k) + [subtree_hash(get_node, start + k, end)]
    return _path(get_node, m - k, start + k, end) + [subtree_hash(get_node, start, start + k)]


def consistency_proof(get_node: NodeGetter, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:new_size]); empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"need 0 < old size <= new size, got {old_size} and {new_size}")
    if old_size == new_size:
        return []
    return _subproof(get_node, old_size, 0, new_size, True)


def _subproof(get_node: NodeGetter, m: int, start: int, end: int, whole: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [subtree_hash(get_node, start, end)]
    k = _split(n)
    if m <= k:
        return _subproof(get_node, m, start, start + k, whole) + [subtree_hash(get_node, start + k, end)]
    return _subproof(get_node, m - k, start + k, end, False) + [subtree_hash(get_node, start, start + k)]


# --- verification -------------------------------------------------------------


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{name} is {len(value)} bytes, want {HASH_SIZE}")


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Split a path for ``index`` in a tree of ``size`` into (inner, border) lengths."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof of leaf hash ``leaf`` at ``index`` in a tree of ``size``.

    Preconditions (checked first): 0 <= index < size, 32-byte leaf and proof
    hashes, and exactly as many proof hashes as the tree shape requires.
    """
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash("leaf hash", leaf)
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise VerificationError(
            f"inclusion proof has {len(proof)} hashes, want {inner + border} for index {index} of {size}"
        )
    for i, h in enumerate(proof):
        _check_hash(f"inclusion proof hash {i}", h)
    return _chain_border_right(_chain_inner(leaf, proof[:inner], index), proof[inner:])


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows ``leaf`` at ``index`` under ``root``."""
    _check_hash("root", root)
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if got != root:
        raise VerificationError(f"inclusion proof leads to root {got.hex()}, want {root.hex()}")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Raise :class:`VerificationError` unless ``proof`` shows the tree grew append-only.

    A proof from size 0 is refused: it proves nothing (every tree extends the
    empty tree), and callers must not mistake it for evidence.
    """
    if new_size < old_size:
        raise VerificationError(f"new size {new_size} is smaller than old size {old_size}")
    if old_size == 0:
        raise VerificationError("a consistency proof from an empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise VerificationError(f"sizes are equal ({old_size}) but the proof is not empty")
        if old_root != new_root:
            raise VerificationError(f"sizes are equal ({old_size}) but the roots differ")
        return
    if not proof:
        raise VerificationError("empty consistency proof for different sizes")
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    for i, h in enumerate(proof):
        _check_hash(f"consistency proof hash {i}", h)
    inner, border = _decompose(old_size - 1, new_size)
    shift = (old_size & -old_size).bit_length() - 1
    inner -= shift
    seed, start = proof[0], 1
    if old_size == 1 << shift:
        seed, start = old_root, 0
    if len(proof) != start + inner + border:
        raise VerificationError(f"consistency proof has {len(proof)} hashes, want {start + inner + border}")
    rest = proof[start:]
    mask = (old_size - 1) >> shift
    got_old = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if got_old != old_root:
        raise VerificationError(f"consistency proof leads to old root {got_old.hex()}, want {old_root.hex()}")
    got_new = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if got_new != new_root:
        raise VerificationError(f"consistency proof leads to new root {got_new.hex()}, want {new_root.hex()}")

"""Every mutation of a real proof must be rejected; known Merkle attacks must fail."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.core import merkle
from pipelines.errors import VerificationError

SIZES = [2, 3, 5, 7, 8, 13, 64, 100]


def _tree(n: int) -> merkle.Tree:
    return merkle.Tree([merkle.leaf_hash(b"leaf %d" % i) for i in range(n)])


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def inclusion_mutations(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes):
    """(name, index, size, leaf, path, root) for every named mutation that applies."""
    yield "index+1", index + 1, size, leaf, path, root
    if index > 0:
        yield "index-1", index - 1, size, leaf, path, root
    yield "size*2", index, size * 2, leaf, path, root
    if size // 2 > index:
        yield "size/2", index, size // 2, leaf, path, root
    yield "wrong leaf", index, size, merkle.leaf_hash(b"other"), path, root
    yield "wrong root", index, size, leaf, path, _flip(root, 0)
    yield "leaf as root", index, size, leaf, path, leaf
    yield "appended element", index, size, leaf, path + [root], root
    yield "prepended element", index, size, leaf, [leaf] + path, root
    for i in range(len(path)):
        yield f"removed {i}", index, size, leaf, path[:i] + path[i + 1:], root
        yield f"inserted at {i}", index, size, leaf, path[:i] + [path[i]] + path[i:], root
        for bit in (0, 7, 255):
            yield f"bit {bit} of {i}", index, size, leaf, path[:i] + [_flip(path[i], bit)] + path[i + 1:], root
        yield f"truncated {i}", index, size, leaf, path[:i] + [path[i][:31]] + path[i + 1:], root
    for i in range(len(path) - 1):
        if path[i] != path[i + 1]:
            yield f"swapped {i},{i+1}", index, size, leaf, path[:i] + [path[i + 1], path[i]] + path[i + 2:], root
    if len(path) > 1:
        yield "reversed", index, size, leaf, path[::-1], root


@pytest.mark.parametrize("size", SIZES)
def test_every_inclusion_mutation_is_rejected(size):
    tree = _tree(size)
    checked = 0
    for index in range(size):
        leaf, path = tree.levels[0][index], tree.path(index)
        merkle.verify_inclusion(index, size, leaf, path, tree.root)
        for _name, *args in inclusion_mutations(index, size, leaf, path, tree.root):
            with pytest.raises(VerificationError):
                merkle.verify_inclusion(*args)
            checked += 1
    assert checked > size * 8


@pytest.mark.parametrize("old,new", [(1, 2), (3, 8), (4, 7), (5, 13), (6, 64), (64, 100), (7, 8)])
def test_every_consistency_mutation_is_rejected(old, new):
    big = _tree(new)
    small = _tree(old)
    proof = merkle.consistency_proof(big.node, old, new)
    merkle.verify_consistency(old, new, proof, small.root, big.root)
    # (size2 + 1 is not a mutation: a root does not authenticate its size, the checkpoint does.)
    bad = [
        (old + 1, new, proof, small.root, big.root),
        (old, new * 2, proof, small.root, big.root),
        (old, new, proof, big.root, small.root),
        (old, new, proof, _flip(small.root, 3), big.root),
        (old, new, proof, small.root, _flip(big.root, 3)),
        (old, new, proof + [big.root], small.root, big.root),
        (old, new, [small.root] + proof, small.root, big.root),
        (old, new, [], small.root, big.root),
    ]
    if old > 1:
        bad.append((old - 1, new, proof, small.root, big.root))
    for i in range(len(proof)):
        bad.append((old, new, proof[:i] + proof[i + 1:], small.root, big.root))
        bad.append((old, new, proof[:i] + [_flip(proof[i], 17)] + proof[i + 1:], small.root, big.root))
    for args in bad:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(*args)


def test_duplicated_odd_tail_does_not_collide():
    """CVE-2012-2459: Bitcoin-style trees give [a,b,c] and [a,b,c,c] the same root; RFC 9162 does not."""
    three = [merkle.leaf_hash(x) for x in (b"a", b"b", b"c")]
    four = three + [three[-1]]
    assert merkle.Tree(three).root != merkle.Tree(four).root
    t4 = merkle.Tree(four)
    # A proof for the duplicated leaf at index 3 must not pass as index 2 in a tree of 3.
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(2, 3, four[3], t4.path(3), t4.root)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(3, 3, four[3], t4.path(3), merkle.Tree(three).root)


def test_inner_node_cannot_pose_as_a_leaf():
    """CVE-2017-12842: a 64-byte leaf equal to left||right must not hash like the inner node."""
    tree = _tree(4)
    left, right = tree.levels[0][0], tree.levels[0][1]
    forged_leaf = merkle.leaf_hash(left + right)
    assert forged_leaf != tree.levels[1][0]
    # Claiming the inner node's children as a leaf in a 2-leaf view of the tree fails.
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(0, 2, forged_leaf, [tree.levels[1][1]], tree.root)
    # And without the prefixes the forgery would have worked: the test can fail.
    plain = hashlib.sha256(left + right).digest()
    assert plain != tree.levels[1][0]


def test_preconditions_are_checked_before_hashing():
    with pytest.raises(VerificationError, match="outside a tree of size 0"):
        merkle.root_from_inclusion_proof(0, 0, b"\x00" * 32, [])
    with pytest.raises(VerificationError, match="leaf hash is 31 bytes"):
        merkle.root_from_inclusion_proof(0, 1, b"\x00" * 31, [])
    with pytest.raises(VerificationError, match="has 1 hashes, want 0"):
        merkle.root_from_inclusion_proof(0, 1, b"\x00" * 32, [b"\x00" * 32])
    with pytest.raises(ValueError):
        merkle.Tree([])

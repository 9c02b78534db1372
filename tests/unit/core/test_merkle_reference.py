"""The fast tree and proof code against the slow recursive reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.core import merkle
from tests.support.reference import ReferenceTree


def _leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") * (i % 3) for i in range(n)]


def test_every_size_to_600_has_the_reference_root():
    leaves = _leaves(600)
    ref = ReferenceTree(leaves)
    hashes = [merkle.leaf_hash(x) for x in leaves]
    for n in range(1, 601):
        assert merkle.Tree(hashes[:n]).root == ref.mth(0, n), n


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=600))
def test_every_inclusion_path_matches_and_verifies(n):
    leaves = _leaves(n)
    ref = ReferenceTree(leaves)
    tree = merkle.Tree([merkle.leaf_hash(x) for x in leaves])
    every = tree.all_paths()
    every_hex = tree.all_paths(as_hex=True)
    for i in range(n):
        path = tree.path(i)
        assert path == ref.path(i, 0, n)
        assert list(every[i]) == path
        assert list(every_hex[i]) == [h.hex() for h in path]
        assert merkle.inclusion_proof(tree.node, i, n) == path
        merkle.verify_inclusion(i, n, tree.levels[0][i], path, tree.root)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=600), st.data())
def test_consistency_proofs_match_and_verify(n, data):
    leaves = _leaves(n)
    ref = ReferenceTree(leaves)
    tree = merkle.Tree([merkle.leaf_hash(x) for x in leaves])
    for m in sorted(set(data.draw(st.lists(st.integers(1, n), min_size=1, max_size=20))) | {1, n}):
        proof = merkle.consistency_proof(tree.node, m, n)
        assert proof == ref.proof(m, n)
        merkle.verify_consistency(m, n, proof, ref.mth(0, m), tree.root)


def test_subtree_hash_of_any_prefix():
    leaves = _leaves(300)
    ref = ReferenceTree(leaves)
    tree = merkle.Tree([merkle.leaf_hash(x) for x in leaves])
    for n in range(1, 301):
        assert merkle.subtree_hash(tree.node, 0, n) == ref.mth(0, n)

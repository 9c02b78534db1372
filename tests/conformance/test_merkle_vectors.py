"""Every RFC 9162 vector from transparency-dev/merkle must agree with ``wantErr``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pipelines.core import merkle
from pipelines.errors import VerificationError
from tests.support import paths

DATA = paths.DATA / "rfc9162-merkle"
INCLUSION = sorted((DATA / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((DATA / "consistency").rglob("*.json"))


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def _outcome(check) -> bool:
    """True when ``check`` raised VerificationError, False when it passed."""
    try:
        check()
    except VerificationError:
        return True
    return False


def test_all_vectors_are_present():
    assert len(INCLUSION) + len(CONSISTENCY) == 196


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: str(p.relative_to(DATA)))
def test_inclusion_vector(path: Path):
    v = json.loads(path.read_text())
    proof = [_b(h) for h in v["proof"] or []]
    got_err = _outcome(lambda: merkle.verify_inclusion(v["leafIdx"], v["treeSize"], _b(v["leafHash"]), proof, _b(v["root"])))
    assert got_err == v["wantErr"], v["desc"]


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: str(p.relative_to(DATA)))
def test_consistency_vector(path: Path):
    v = json.loads(path.read_text())
    proof = [_b(h) for h in v["proof"] or []]
    got_err = _outcome(
        lambda: merkle.verify_consistency(v["size1"], v["size2"], proof, _b(v["root1"]), _b(v["root2"]))
    )
    assert got_err == v["wantErr"], v["desc"]


def test_reference_tree_root():
    """The vectors' 8-leaf tree: leaves are the RFC 6962 test inputs."""
    leaves = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
              b"\x50\x51\x52\x53\x54\x55\x56\x57", b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]
    tree = merkle.Tree([merkle.leaf_hash(x) for x in leaves])
    assert tree.root.hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"

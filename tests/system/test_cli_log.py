"""`anchorpipe log ...`, `seal --log` and `verify --log-vkey`, run as commands."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pipelines.core.checkpoint import Checkpoint
from pipelines.core.note import Signer, sign_note
from tests.system.test_cli_seal_verify import run, write_records

pytestmark = pytest.mark.system  # the CLI runs as a process


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    res = run("log", "keygen", "log.key", "--origin", "records.example.gov/log", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (tmp_path / "log.vkey").write_text(res.stdout)
    assert run("log", "init", "thelog", "--log-key", "log.key", cwd=tmp_path).returncode == 0
    for n in (1, 2):
        write_records(tmp_path / f"in{n}.jsonl", [{"id": f"r{i}", "content": {"n": i, "batch": n}} for i in range(7)])
        res = run("seal", f"in{n}.jsonl", "--agency", "dept-x", "--out", f"out{n}", "--log", "thelog",
                  "--log-key", "log.key", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert f"anchored as entry {n - 1} of log records.example.gov/log" in res.stdout
        if n == 1:
            (tmp_path / "cp1").write_bytes((tmp_path / "thelog" / "checkpoint").read_bytes())
    return tmp_path


def test_keygen_writes_a_private_key_only_its_owner_reads(logged: Path):
    key = logged / "log.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_text().startswith("PRIVATE+KEY+records.example.gov/log+")
    vkey = (logged / "log.vkey").read_text()
    assert vkey.startswith("records.example.gov/log+") and "PRIVATE" not in vkey
    res = run("log", "keygen", "log.key", cwd=logged)
    assert res.returncode != 0 and "not overwriting" in res.stderr
    res = run("log", "keygen", "etc/anchorpipe/log.key", cwd=logged)  # its folder does not exist yet
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(logged / "etc/anchorpipe").st_mode) == 0o700
    res = run("log", "keygen", "log.key/inside", cwd=logged)  # a file where a folder should be
    assert res.returncode == 1 and "cannot write" in res.stderr and "Traceback" not in res.stderr


def test_every_proof_verifies_with_its_log_receipt(logged: Path):
    for n in (1, 2):
        for proof in sorted((logged / f"out{n}").glob("r*.json")):
            res = run("verify", str(proof), "--log-vkey", "log.vkey", cwd=logged)
            assert res.returncode == 0, res.stderr
            assert f"batch is entry {n - 1} of log 'records.example.gov/log'" in res.stdout
            assert res.stdout.endswith("VALID\n")


def test_without_a_pinned_key_the_anchor_is_unchecked_and_the_proof_not_valid(logged: Path):
    res = run("verify", "out1/r0.json", cwd=logged)
    assert res.returncode == 3 and "no log key pinned" in res.stderr and "VALID" not in res.stdout


def test_wrong_key_or_forged_checkpoint_is_invalid(logged: Path):
    other = Signer.generate("records.example.gov/log")
    (logged / "other.vkey").write_text(other.verifier().text())
    res = run("verify", "out1/r0.json", "--log-vkey", "other.vkey", cwd=logged)
    assert res.returncode == 3 and "signed by no pinned key" in res.stderr and "VALID" not in res.stdout
    # The message names the key that did sign and the one pinned: a wrong pin reads as one.
    signed_by, pinned = ("+".join(v.split("+")[:2]) for v in ((logged / "log.vkey").read_text(), other.verifier().text()))
    assert f"its note says it is signed by {signed_by})" in res.stderr and f"pinned log keys: {pinned}" in res.stderr
    # A checkpoint the attacker signs with its own key cannot replace the log's.
    doc = json.loads((logged / "out1/r0.json").read_text())
    doc["anchors"][0]["checkpoint"] = sign_note(Checkpoint("records.example.gov/log", 1, b"\x00" * 32).text(), [other])
    (logged / "forged.json").write_text(json.dumps(doc))
    assert run("verify", "forged.json", "--log-vkey", "log.vkey", cwd=logged).returncode == 3
    # Moving the batch to another log index breaks the inclusion proof.
    doc = json.loads((logged / "out1/r0.json").read_text())
    doc["anchors"][0]["index"] = 1
    (logged / "moved.json").write_text(json.dumps(doc))
    res = run("verify", "moved.json", "--log-vkey", "log.vkey", cwd=logged)
    assert res.returncode == 1


def test_log_show_and_consistency(logged: Path):
    res = run("log", "show", "thelog", "--log-vkey", "log.vkey", cwd=logged)
    assert res.returncode == 0 and "size   2" in res.stdout and "tiles agree" in res.stdout
    res = run("log", "consistency", "thelog", "cp1", "--log-vkey", "log.vkey", cwd=logged)
    assert res.returncode == 0 and "consistent: cp1 size 1 -> 2" in res.stdout
    assert run("log", "show", "thelog", cwd=logged).returncode == 2  # nothing trusted without a key


def test_a_fork_is_detected_by_consistency(logged: Path):
    """A checkpoint of the same size-1 log with another root, even validly signed, is not consistent."""
    key = Signer.parse((logged / "log.key").read_text())
    (logged / "fork").write_text(sign_note(Checkpoint("records.example.gov/log", 1, b"\x07" * 32).text(), [key]))
    res = run("log", "consistency", "thelog", "fork", "--log-vkey", "log.vkey", cwd=logged)
    assert res.returncode == 1 and res.stdout.startswith("FORK")
    assert (logged / "fork").read_text() in res.stdout and (logged / "thelog" / "checkpoint").read_text() in res.stdout
    # Two saved checkpoints of one size with different roots are a fork too, the log's own aside.
    res = run("log", "consistency", "thelog", "cp1", "fork", "--log-vkey", "log.vkey", cwd=logged)
    assert res.returncode == 1 and "two checkpoints of size 1 with different roots" in res.stdout


def test_tampered_tiles_are_refused_by_show_and_by_the_sequencer(logged: Path):
    tile = logged / "thelog" / "tile/0/000.p/2"
    data = bytearray(tile.read_bytes())
    data[0] ^= 0xFF
    tile.write_bytes(bytes(data))
    res = run("log", "show", "thelog", "--log-vkey", "log.vkey", cwd=logged)
    assert res.returncode == 2 and "the checkpoint says" in res.stderr
    res = run("seal", "in1.jsonl", "--agency", "dept-x", "--out", "out3", "--log", "thelog", "--log-key", "log.key",
              cwd=logged)
    assert res.returncode == 2 and not (logged / "out3").exists()


def test_demo_seals_anchors_and_verifies_everything(tmp_path: Path):
    res = run("demo", "--offline", "--records", "450", "--batch-size", "100", "--export", "exp", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sealed 450 records in 5 batches" in res.stdout
    assert "verified 450 proofs with their log receipts: every one VALID" in res.stdout
    assert "consistent from size 1 to 5" in res.stdout
    proofs = sorted((tmp_path / "exp" / "proofs").rglob("*.json"))
    assert len([p for p in proofs if p.name != "_batch.json"]) == 450
    res = run("verify", str(proofs[-1]), "--log-vkey", "exp/log.vkey", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.endswith("VALID\n")
    res = run("log", "show", "exp/log", "--log-vkey", "exp/log.vkey", cwd=tmp_path)
    assert res.returncode == 0 and "size   5" in res.stdout


def test_key_rotation_signs_with_both_keys(logged: Path):
    res = run("log", "keygen", "new.key", "--origin", "records.example.gov/log", cwd=logged)
    (logged / "new.vkey").write_text(res.stdout)
    res = run("seal", "in1.jsonl", "--agency", "dept-x", "--out", "out3", "--log", "thelog",
              "--log-key", "new.key", "--log-key", "log.key", cwd=logged)
    assert res.returncode == 0, res.stderr
    for vkey in ("log.vkey", "new.vkey"):  # auditors pinning either key accept the new proofs
        assert run("verify", "out3/r1.json", "--log-vkey", vkey, cwd=logged).returncode == 0
    assert run("verify", "out1/r1.json", "--log-vkey", "new.vkey", cwd=logged).returncode == 3  # old: unpinned


def test_a_whole_batch_bundle_is_audited(tmp_path: Path):
    """An archived NDJSON bundle verifies as a whole; a dropped or changed record is caught."""
    from pipelines.archive.bundle import build_bundle
    from pipelines.core.batch import seal_records
    from pipelines.core.commitment import RecordInput
    from pipelines.core.note import Signer
    from pipelines.ledger.tlog import TransparencyLog
    from pipelines.storage.local import LocalStore

    signer = Signer.generate("records.example.gov/log")
    (tmp_path / "log.vkey").write_text(signer.verifier().text())
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [signer])
    batch = seal_records("dept-x", [RecordInput(f"r{i}", bytes([i]) * 32) for i in range(9)])
    bundle, _ = build_bundle(batch, list(log.anchor([batch.head]).values()))
    (tmp_path / "b.ndjson").write_bytes(bundle)
    res = run("verify", "b.ndjson", "--log-vkey", "log.vkey", cwd=tmp_path)
    assert res.returncode == 0 and "all 9 records of batch" in res.stdout and res.stdout.endswith("VALID\n")
    lines = bundle.splitlines(keepends=True)
    (tmp_path / "dropped.ndjson").write_bytes(b"".join(lines[:4] + lines[5:]))
    res = run("verify", "dropped.ndjson", "--log-vkey", "log.vkey", cwd=tmp_path)
    assert res.returncode == 1 and "8 of the batch's 9 records: missing leaf 4" in res.stderr  # which one, by index
    (tmp_path / "two-dropped.ndjson").write_bytes(b"".join(lines[1:4] + lines[5:]))
    assert "7 of the batch's 9 records: missing leaves 0, 4" in run("verify", "two-dropped.ndjson", cwd=tmp_path).stderr
    (tmp_path / "doubled.ndjson").write_bytes(b"".join(lines + lines[:1]))
    assert "some are extra" in run("verify", "doubled.ndjson", cwd=tmp_path).stderr
    changed = json.loads(lines[2])
    changed["record"]["content_sha256"] = "00" * 32
    (tmp_path / "changed.ndjson").write_bytes(b"".join(lines[:2] + [json.dumps(changed).encode() + b"\n"] + lines[3:]))
    res = run("verify", "changed.ndjson", cwd=tmp_path)
    assert res.returncode == 1 and "proof 2 (record 'r2')" in res.stderr


def test_the_bundle_verifier_agrees_with_verifying_each_proof_alone(tmp_path: Path):
    """verify_bundle (one tree, paths compared) against verify_proof on every line: the same verdicts on a
    good bundle, a line laid out otherwise (parsed whole), a path hash altered, a path swapped with another
    record's, and anchors that differ on one line."""
    from pipelines.archive.bundle import build_bundle
    from pipelines.core.batch import seal_records
    from pipelines.core.commitment import RecordInput
    from pipelines.core.note import Signer
    from pipelines.core.proof import parse_proof
    from pipelines.core.policy import Policy
    from pipelines.core.verify import verify_bundle, verify_proof
    from pipelines.errors import VerificationError
    from pipelines.ledger.tlog import TransparencyLog
    from pipelines.storage.local import LocalStore

    signer = Signer.generate("records.example.gov/log")
    log = TransparencyLog.create(LocalStore(tmp_path / "log"), [signer])
    policy = Policy.of([signer.verifier()])
    batches = [seal_records("dept-x", [RecordInput(f"{k}-{i}", bytes([i % 256]) * 32) for i in range(n)])
               for k, n in enumerate((1, 2, 7, 64, 300))]
    anchors = log.anchor([b.head for b in batches])
    for batch in batches:
        bundle, _ = build_bundle(batch, [anchors[batch.id]])
        lines = bundle.splitlines()
        assert verify_bundle(bundle, policy).checks
        for line in lines:
            verify_proof(parse_proof(line), policy)
        relaid = json.dumps(json.loads(lines[-1]), indent=1).replace("\n", "").encode()
        assert verify_bundle(b"\n".join(lines[:-1] + [relaid]), policy).checks
        if batch.size < 2:
            continue
        doc = json.loads(lines[1])
        doc["batch"]["path"][0] = doc["batch"]["path"][0][::-1]
        with pytest.raises(VerificationError, match="does not lead") as alone:
            verify_bundle(b"\n".join([lines[0], json.dumps(doc).encode(), *lines[2:]]), policy)
        with pytest.raises(VerificationError):
            verify_proof(parse_proof(json.dumps(doc)), policy)
        assert alone.value.check == "batch-path"
        other = json.loads(lines[0])
        doc = json.loads(lines[1])
        doc["batch"]["path"] = other["batch"]["path"]
        with pytest.raises(VerificationError, match="does not lead"):
            verify_bundle(b"\n".join([lines[0], json.dumps(doc).encode(), *lines[2:]]), policy)
        doc = json.loads(lines[1])
        doc["anchors"] = []
        with pytest.raises(VerificationError, match="other anchors"):
            verify_bundle(b"\n".join([lines[0], json.dumps(doc).encode(), *lines[2:]]), policy)

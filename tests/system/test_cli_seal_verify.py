"""`anchorpipe seal` and `anchorpipe verify`, run as the installed command."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.ledger.keys import load_verifiers
from pipelines.archive.files import proof_filename

pytestmark = pytest.mark.system  # the CLI runs as a process

CLI = [sys.executable, "-m", "pipelines.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_records(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    records = [{"id": f"case/{i}", "content": {"n": i, "text": "é" * i}} for i in range(50)]
    records.append({"id": "raw.pdf", "sha256": hashlib.sha256(b"%PDF-1.7 raw").hexdigest().upper()})
    records.append({"id": "_batch", "content": None})
    write_records(tmp_path / "in.jsonl", records)
    keygen = run("log", "keygen", "log.key", "--origin", "records.example.gov/log", cwd=tmp_path)
    (tmp_path / "log.vkey").write_text(keygen.stdout)
    res = run("seal", "in.jsonl", "--agency", "dept-x", "--out", "out", "--log", "log", "--log-key", "log.key",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "sealed 52 records" in res.stdout
    return tmp_path


def pinned(*args: str) -> tuple[str, ...]:
    return (*args, "--log-vkey", "log.vkey")


def test_seal_writes_one_verifiable_proof_per_record(sealed: Path):
    out = sealed / "out"
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 53 and "_batch.json" in names
    summary = json.loads((out / "_batch.json").read_text())
    proofs = [n for n in names if n != "_batch.json"]
    for name in proofs:
        proof = parse_proof((out / name).read_bytes())
        verify_proof(proof, Policy.of(load_verifiers([str(sealed / "log.vkey")]), ["tlog"]))
        assert proof.batch.root == summary["root"]
    for name in proofs[::10]:  # and through the command itself
        res = run(*pinned("verify", f"out/{name}", "--require", "tlog"), cwd=sealed)
        assert res.returncode == 0 and res.stdout.endswith("VALID\n"), res.stderr


def test_verify_checks_the_record_content(sealed: Path):
    (sealed / "rec.json").write_text(json.dumps({"text": "é" * 7, "n": 7}))
    assert run(*pinned("verify", "out/" + proof_filename("case/7"), "--record", "rec.json"), cwd=sealed).returncode == 0
    res = run(*pinned("verify", "out/" + proof_filename("case/8"), "--record", "rec.json"), cwd=sealed)
    assert res.returncode == 1 and "INVALID" in res.stderr
    (sealed / "raw.pdf").write_bytes(b"%PDF-1.7 raw")
    assert run(*pinned("verify", "out/raw.pdf.json", "--record-bytes", "raw.pdf"), cwd=sealed).returncode == 0


def test_tampered_proof_is_invalid_and_garbage_is_unusable(sealed: Path):
    doc = json.loads((sealed / "out" / "case%2F3.json").read_text())
    doc["batch"]["path"][0] = "0" * 64
    (sealed / "t.json").write_text(json.dumps(doc))
    res = run("verify", "t.json", cwd=sealed)
    assert res.returncode == 1 and "inclusion proof leads to root" in res.stderr
    (sealed / "g.json").write_text("{not json")
    assert run("verify", "g.json", cwd=sealed).returncode == 2
    assert run("verify", "missing.json", cwd=sealed).returncode == 2


def test_bad_lines_are_all_reported_and_nothing_is_written(tmp_path: Path):
    (tmp_path / "in.jsonl").write_text(
        '{"id": "ok", "content": 1}\n'
        '{"id": 5, "content": 1}\n'
        "\n"
        '{"id": "ok", "content": 2}\n'
        '{"id": "x", "sha256": "zz"}\n'
        "{broken\n"
    )
    res = run("seal", "in.jsonl", "--agency", "dept-x", "--out", "out", cwd=tmp_path)
    assert res.returncode == 2
    for fragment in ("line 2: record id must be a string", "line 4: record id 'ok' appears again with other content (first at line 1)",
                     "line 5: field 'sha256'", "line 6: not JSON"):
        assert fragment in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_seal_refuses_a_non_empty_output_folder(sealed: Path):
    before = sorted(p.name for p in (sealed / "out").iterdir())
    res = run("seal", "in.jsonl", "--agency", "dept-x", "--out", "out", cwd=sealed)
    assert res.returncode == 2 and "not empty" in res.stderr
    assert sorted(p.name for p in (sealed / "out").iterdir()) == before


def test_bad_agency_is_refused(tmp_path: Path):
    write_records(tmp_path / "in.jsonl", [{"id": "a", "content": 1}])
    res = run("seal", "in.jsonl", "--agency", "Not Valid", "--out", "out", cwd=tmp_path)
    assert res.returncode == 2 and "agency name" in res.stderr


@pytest.mark.parametrize(
    "record_id,name",
    [("a/b", "a%2Fb.json"), ("..", "%2E..json"), (".hidden", "%2Ehidden.json"), ("_x", "%5Fx.json"),
     ("é", "%C3%A9.json"), ("a b", "a%20b.json")],
)
def test_proof_filenames_are_path_safe(record_id, name):
    assert proof_filename(record_id) == name


def test_long_ids_get_hashed_names():
    name = proof_filename("x" * 256)
    assert name == "_sha256-" + hashlib.sha256(b"x" * 256).hexdigest() + ".json"


def test_the_auditor_side_runs_without_the_worker_stack(sealed: Path):
    """seal and verify with celery, redis, boto3, fastapi and sentry-sdk made unimportable."""
    blocker = (
        "import sys\n"
        "for name in ('celery', 'redis', 'boto3', 'botocore', 'fastapi', 'sentry_sdk', 'kombu', 'sqlalchemy'):\n"
        "    sys.modules[name] = None\n"
        "from pipelines.cli import main\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", blocker, *pinned("verify", "out/case%2F3.json")], cwd=sealed,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.endswith("VALID\n"), res.stderr
    res = subprocess.run([sys.executable, "-c", blocker, "seal", "in.jsonl", "--agency", "dept-x", "--out", "again"],
                         cwd=sealed, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_a_fabricated_proof_without_anchors_is_not_valid(sealed: Path):
    """Anyone can seal a one-record file of their own: its root is just the leaf, anchored nowhere."""
    write_records(sealed / "forged.jsonl", [{"id": "case/3", "content": {"n": 999}}])
    assert run("seal", "forged.jsonl", "--agency", "dept-x", "--out", "forged", cwd=sealed).returncode == 0
    (sealed / "rec.json").write_text(json.dumps({"n": 999}))
    for args in (pinned("verify", "forged/case%2F3.json", "--record", "rec.json"),
                 ("verify", "forged/case%2F3.json", "--record", "rec.json")):
        res = run(*args, cwd=sealed)
        assert res.returncode == 3 and "VALID" not in res.stdout, res.stdout
        assert "not anchored under a pinned key" in res.stderr and "no anchor" in res.stderr
    # The same forgery as a bundle
    proof = (sealed / "forged" / "case%2F3.json").read_text()
    (sealed / "forged.ndjson").write_text(json.dumps(json.loads(proof)) + "\n")
    res = run(*pinned("verify", "forged.ndjson"), cwd=sealed)
    assert res.returncode == 3 and "VALID" not in res.stdout


def test_anchors_nothing_pinned_can_check_are_not_valid(sealed: Path):
    res = run("verify", "out/case%2F3.json", cwd=sealed)
    assert res.returncode == 3 and "no log key pinned" in res.stderr and "VALID" not in res.stdout
    res = run(*pinned("verify", "out/case%2F3.json"), cwd=sealed)
    assert res.returncode == 0 and "NOT CHECKED: the record's content" in res.stdout
    assert "anchored: tlog" in res.stdout and res.stdout.endswith("VALID\n")


def test_a_receipt_moved_onto_another_batch_is_invalid(sealed: Path):
    """Batch B's proof wearing batch A's genuine, signed receipt must not verify."""
    write_records(sealed / "b.jsonl", [{"id": f"b{i}", "content": i} for i in range(3)])
    res = run("seal", "b.jsonl", "--agency", "dept-x", "--out", "outb", "--log", "log", "--log-key", "log.key",
              cwd=sealed)
    assert res.returncode == 0, res.stderr
    a = json.loads((sealed / "out" / "case%2F3.json").read_text())
    b = json.loads((sealed / "outb" / "b1.json").read_text())
    assert run(*pinned("verify", "outb/b1.json"), cwd=sealed).returncode == 0
    b["anchors"] = a["anchors"]
    (sealed / "moved.json").write_text(json.dumps(b))
    res = run(*pinned("verify", "moved.json"), cwd=sealed)
    assert res.returncode == 1 and "INVALID" in res.stderr
    bundle = "".join(json.dumps(json.loads(p.read_text())) + "\n" for p in sorted((sealed / "outb").glob("b*.json")))
    lines = bundle.splitlines(keepends=True)
    lines[1] = json.dumps(b) + "\n"
    (sealed / "moved.ndjson").write_text("".join(lines))
    res = run(*pinned("verify", "moved.ndjson"), cwd=sealed)
    assert res.returncode == 1 and "other anchors" in res.stderr


def test_an_unknown_required_anchor_kind_is_unusable_input(sealed: Path):
    res = run(*pinned("verify", "out/case%2F3.json", "--require", "blockchain"), cwd=sealed)
    assert res.returncode == 2 and "blockchain" in res.stderr

"""`anchorpipe audit` on an archive written as the service writes it (bundles per agency, the log beside them):
a clean pass with its report, and each finding it must make: a dropped bundle, an extra one, an altered
proof, a fork of the log against a saved checkpoint; one agency, a sample, and resuming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.archive.bundle import build_bundle, bundle_key
from pipelines.audit.archive import Pins, audit_archive, sample_confidence
from pipelines.cli import main
from pipelines.core.batch import seal_records
from pipelines.core.commitment import RecordInput
from pipelines.core.note import Signer
from pipelines.ledger.tlog import TransparencyLog
from pipelines.storage.local import LocalStore

pytestmark = pytest.mark.system  # audits run worker processes

SIGNER = Signer.generate("audit.example/log")


def seal(archive: Path, log: TransparencyLog, agency: str, n: int, tag: str) -> str:
    batch = seal_records(agency, [RecordInput(f"{tag}-{i}", bytes([i % 256]) * 32) for i in range(n)])
    receipts = log.anchor([batch.head])
    data, _ = build_bundle(batch, [receipts[batch.id]])
    path = archive / bundle_key(agency, batch.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return batch.id


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    log = TransparencyLog.create(LocalStore(root / "log"), [SIGNER])
    for k in range(6):
        seal(root, log, "dept-a" if k % 2 else "dept-b", 50 + k, f"b{k}")
    (tmp_path / "log.vkey").write_text(SIGNER.verifier().text() + "\n")
    return root


def audit(archive: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["audit", str(archive), "--log-vkey", str(archive.parent / "log.vkey"),
                                    "--workers", "2", *args])
    return res.exit_code, res.output


def test_a_clean_archive_passes_with_its_report(archive: Path, tmp_path: Path):
    code, out = audit(archive, "--report", str(tmp_path / "rep"))
    assert code == 0 and out.rstrip().endswith("PASSED"), out
    assert "agency dept-a: 3 batches, 159 records, 3 valid" in out and "dept-b: 3 batches, 156 records" in out
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["ok"] and doc["log"]["size"] == 6 and len(doc["bundles"]) == 6 and not doc["failures"]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "PASSED" in html and SIGNER.verifier().text() in html and "<script" not in html
    # Resuming: a second run with the same report folder verifies nothing again, and says the same.
    calls = []
    pins = Pins((SIGNER.verifier().text(),))
    again = audit_archive(str(archive), str(archive / "log"), pins, state_file=tmp_path / "rep" / "audit-state.jsonl",
                          progress=lambda done, total: calls.append(total))
    assert again.ok and len(again.bundles) == 6 and calls == [0]


def test_an_interrupted_audit_resumes_where_it_stopped(archive: Path, tmp_path: Path):
    state = tmp_path / "state.jsonl"
    pins = Pins((SIGNER.verifier().text(),))

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        audit_archive(str(archive), str(archive / "log"), pins, state_file=state, progress=stop_after_two, workers=1)
    assert len(state.read_text().splitlines()) == 1 + 2  # the audit's stamp, then one line per bundle
    with state.open("a") as fh:
        fh.write('{"batch": "cut sho')  # the interruption cut a line short
    totals = []
    result = audit_archive(str(archive), str(archive / "log"), pins, state_file=state,
                           progress=lambda done, total: totals.append(total))
    assert result.ok and len(result.bundles) == 6 and totals[0] == 4


def test_each_finding_is_made_with_its_evidence(archive: Path, tmp_path: Path):
    log = TransparencyLog.open(LocalStore(archive / "log"), [SIGNER])
    saved = tmp_path / "saved.checkpoint"
    saved.write_text(log.head().note)
    bundles = sorted(archive.glob("proofs/*/*.ndjson"))
    # An altered proof: a record's salt in one line of one bundle.
    lines = bundles[0].read_bytes().splitlines()
    doc = json.loads(lines[3])
    doc["record"]["salt"] = "00" * 32
    bundles[0].write_bytes(b"\n".join([*lines[:3], json.dumps(doc).encode(), *lines[4:]]) + b"\n")
    # A dropped bundle, and an extra one (a batch of another log of the same key: not in this log).
    dropped = bundles[1].name.removesuffix(".ndjson")
    bundles[1].unlink()
    other = TransparencyLog.create(LocalStore(tmp_path / "other-log"), [SIGNER])
    extra = seal(tmp_path / "elsewhere", other, "dept-a", 3, "x")
    shutil.copy(tmp_path / "elsewhere" / bundle_key("dept-a", extra), archive / bundle_key("dept-a", extra))
    code, out = audit(archive, "--report", str(tmp_path / "rep"))
    assert code == 1 and "FAILED: 4 finding(s)" in out, out  # the extra bundle is also bound to no log root
    assert f"dropped: a batch in the log has no bundle in the archive: {dropped}" in out
    assert f"extra: a bundle whose batch is not in the log: proofs/dept-a/{extra}.ndjson" in out
    assert "bundle invalid (leaf)" in out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert not report["ok"] and len(report["failures"]) == 4
    assert "does not commit to the record" in (tmp_path / "rep" / "report.html").read_text()
    # A fork: the log now served is another history under the same key; the saved checkpoint proves it.
    shutil.rmtree(archive / "log")
    forked = TransparencyLog.create(LocalStore(archive / "log"), [SIGNER])
    for k in range(7):
        seal(tmp_path / "forked", forked, "dept-a", 2, f"f{k}")
    code, out = audit(archive, "--checkpoint", str(saved))
    assert code == 1 and "fork: the log does not extend a checkpoint you saved" in out


def test_one_agency_and_a_sample(archive: Path):
    code, out = audit(archive, "--agency", "dept-a")
    assert code == 0 and "dept-a" in out and "dept-b" not in out
    code, out = audit(archive, "--sample", "40")
    assert code == 0 and "sample: 40 of 315 proofs verified" in out, out
    assert f"{sample_confidence(40):.2%}" in out
    assert abs(sample_confidence(59) - 0.05) < 0.001  # the rule of three: 59 clean draws rule out 5 %


def test_the_log_key_must_be_pinned_and_must_match(archive: Path, tmp_path: Path):
    res = CliRunner().invoke(main, ["audit", str(archive)])
    assert res.exit_code == 2 and "--log-vkey" in res.output
    (tmp_path / "wrong.vkey").write_text(Signer.generate("audit.example/log").verifier().text())
    res = CliRunner().invoke(main, ["audit", str(archive), "--log-vkey", str(tmp_path / "wrong.vkey")])
    assert res.exit_code != 0 and "not signed by any trusted key" in res.output


def test_the_report_prints_to_pdf_and_one_proof_gets_its_own_report(archive: Path, tmp_path: Path):
    code, out = audit(archive, "--report", str(tmp_path / "rep"), "--pdf")
    assert code == 0 and (tmp_path / "rep" / "report.pdf").read_bytes().startswith(b"%PDF"), out
    bundle = next(archive.glob("proofs/dept-a/*.ndjson"))
    (tmp_path / "one.json").write_bytes(bundle.read_bytes().splitlines()[0])
    res = CliRunner().invoke(main, ["verify", str(tmp_path / "one.json"), "--log-vkey", str(tmp_path / "log.vkey"),
                                    "--report", str(tmp_path / "one"), "-q"])
    assert res.exit_code == 0
    doc = json.loads((tmp_path / "one" / "report.json").read_text())
    assert doc["valid"] and doc["outcome"] == "valid" and doc["anchors"][0]["kind"] == "tlog"
    assert "VALID" in (tmp_path / "one" / "report.html").read_text()


def test_an_archive_on_s3_is_audited_with_read_only_access(archive: Path, s3_bucket, tmp_path: Path):
    """The same archive uploaded to an S3 server: audited over HTTP by worker processes, each with its own
    client; the audit only reads (the bucket's objects are the same before and after)."""
    from pipelines.storage import open_store

    endpoint, bucket = s3_bucket
    s3 = open_store(f"s3://{bucket}/agency-archive", s3_endpoint=endpoint)
    for path in archive.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            s3.put_immutable(str(path.relative_to(archive)), path.read_bytes())
    before = {k: s3.get(k) for k in s3.list_keys("")}
    res = CliRunner().invoke(main, ["audit", f"s3://{bucket}/agency-archive", "--s3-endpoint", endpoint,
                                    "--log-vkey", str(tmp_path / "log.vkey"), "--workers", "2"])
    assert res.exit_code == 0 and res.output.rstrip().endswith("PASSED"), res.output
    assert "agency dept-a: 3 batches, 159 records, 3 valid" in res.output
    assert {k: s3.get(k) for k in s3.list_keys("")} == before


def test_a_bundle_swapped_for_another_batchs_is_caught(archive: Path, tmp_path: Path):
    """An archive operator replaces batch A's bundle with a copy of batch B's (genuine, anchored): the names
    still match the log, every proof verifies, and still the audit says A's bundle is not A's."""
    a, b = sorted(archive.glob("proofs/dept-a/*.ndjson"))[:2]
    a.write_bytes(b.read_bytes())
    code, out = audit(archive)
    assert code == 1 and "bundle invalid (batch-path)" in out and f"holds batch {b.stem}" in out, out
    # And a state file of an audit under other pins is not reused.
    state = tmp_path / "rep" / "audit-state.jsonl"
    state.parent.mkdir()
    state.write_text('{"audit": "another"}\n' + json.dumps({"batch": "x", "agency": "dept-a", "key": str(a),
                                                              "upgrade": None, "records": 1, "outcome": "valid"}) + "\n")
    code, _ = audit(archive, "--report", str(tmp_path / "rep"))
    assert code == 1 and json.loads(state.read_text().splitlines()[0])["audit"] != "another"

"""The auditor's side installs alone: `pip install anchorpipe` (no extras) seals, verifies and fetches proofs.

Builds the package into a fresh venv (no server extras: no orjson, Redis, Celery,
boto3 or FastAPI) with the base dependencies at the versions uv.lock pins, hashes
checked, and runs the three commands an auditor needs against a folder.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

from pipelines.archive import bundle, index
from pipelines.core.batch import seal_records
from pipelines.core.commitment import RecordInput, content_sha256
from pipelines.core.note import Signer
from pipelines.ledger.tlog import TransparencyLog
from pipelines.storage.local import LocalStore
from tests.support.paths import ROOT

pytestmark = pytest.mark.system  # it builds a venv and runs the CLI in it



UV = ROOT / ".tools" / "uv" / "bin" / "uv"


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("base-venv")
    venv.EnvBuilder(with_pip=True).create(env)
    pins = env / "base.txt"  # the base dependencies only (no extras), as uv.lock pins them, with their hashes
    res = subprocess.run([str(UV), "export", "--frozen", "--no-dev", "--no-emit-project", "--format",
                          "requirements-txt", "-o", str(pins)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    for args in (["--require-hashes", "-r", str(pins)], ["--no-deps", str(ROOT)]):
        res = subprocess.run([str(env / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *args],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    return env


def run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env / "bin" / "anchorpipe"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_base_install_has_no_server_dependencies(base_venv: Path):
    probe = "import importlib.util as u; print([m for m in ('orjson', 'redis', 'celery', 'boto3', 'fastapi') " \
            "if u.find_spec(m)])"
    res = subprocess.run([str(base_venv / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr
    # The agency's client comes with the base install, and imports nothing of the server's.
    client = "import sys, anchorpipe.client; print(anchorpipe.client.Client, 'fastapi' in sys.modules)"
    res = subprocess.run([str(base_venv / "bin" / "python"), "-c", client], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip().endswith("False"), res.stdout + res.stderr


def test_seal_and_verify_with_the_base_install(base_venv: Path, tmp_path: Path):
    (tmp_path / "in.jsonl").write_text('{"id": "a/1", "content": {"n": 1}}\n{"id": "b", "content": [2]}\n')
    assert run(base_venv, "log", "keygen", "log.key", "--origin", "example.gov/log", cwd=tmp_path).returncode == 0
    res = run(base_venv, "seal", "in.jsonl", "--agency", "dept-x", "--out", "out", "--log", "log",
              "--log-key", "log.key", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (tmp_path / "rec.json").write_text('{"n": 1}')
    vkey = run(base_venv, "log", "show", "log", "--log-vkey", "x", cwd=tmp_path)
    assert vkey.returncode == 2  # a wrong key is refused, not trusted
    signer_text = (tmp_path / "log.key").read_text()
    vkey_text = Signer.parse(signer_text).verifier().text()
    res = run(base_venv, "verify", "out/a%2F1.json", "--record", "rec.json", "--log-vkey", vkey_text, cwd=tmp_path)
    assert res.returncode == 0 and "VALID" in res.stdout, res.stdout + res.stderr


def test_proof_get_from_a_folder_archive_with_the_base_install(base_venv: Path, tmp_path: Path):
    signer = Signer.generate("example.gov/log")
    log = TransparencyLog.create(LocalStore(tmp_path / "archive" / "log"), [signer])
    store = LocalStore(tmp_path / "archive")
    batch = seal_records("dept-x", [RecordInput(f"r{i}", content_sha256({"i": i})) for i in range(5)])
    _, locations, _ = bundle.write_batch(store, batch, list(log.anchor([batch.head]).values()))
    index.add_round(store, "dept-x", [(f"r{i}", loc) for i, loc in enumerate(locations)])
    res = run(base_venv, "proof", "get", "dept-x", "r3", "--archive", "archive", "-o", "r3.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "r3.json").read_text())["record"]["id"] == "r3"
    (tmp_path / "r3.content.json").write_text('{"i": 3}')
    res = run(base_venv, "verify", "r3.json", "--record", "r3.content.json", "--log-vkey", signer.verifier().text(),
              cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    missing = run(base_venv, "proof", "get", "dept-x", "nope", "--archive", "archive", cwd=tmp_path)
    assert missing.returncode == 2 and "no archived proof" in missing.stderr

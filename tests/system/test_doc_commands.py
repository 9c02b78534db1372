"""Every shell block of the README and docs/ runs as written (against local services standing in for the
hosts the docs name), so a doc that fails is a failing test. The few blocks not run here are listed in
NOT_RUN_HERE with the test or job that covers them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.paths import ROOT

DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]

#: (file, first line of the block) → why it is not run here.
NOT_RUN_HERE = {
    ("README.md", "make demo"): "CI runs `make test`, which runs this suite; tests/system/test_stack.py runs "
                                "`anchorpipe demo`, which is what `make demo` runs after installing",
    ("README.md", "cp .env.example .env"): "tests/system/test_stack.py runs the Procfile under honcho; init and config "
                                           "check run in tests/system/test_config_check.py",
    ("README.md", "apt-get install -y postgresql"): "installs system packages and creates system users",
    ("README.md", "apt-get install -y redis-server"): "installs system packages and writes system folders; "
                                                      "tests/system/test_shipped_redis.py runs the shipped redis.conf",
    ("README.md", "make test-latest"): "the upgrade routine re-resolves against PyPI (its result changes with every "
                                       "release): `make test` runs `make lock-check` and the suite; `make "
                                       "test-latest` is run on purpose and its result reported",
    ("docs/operations.md", "anchorpipe db upgrade"): "tests/system/test_schema.py and tests/system/test_redis_import.py run both",
    ("docs/client.md", 'export ANCHORPIPE_API_KEY="$(cat agency.key)"'): "tests/system/test_client_push.py runs this block "
                                                                          "against a running stack",
}


def blocks() -> dict[tuple[str, str], str]:
    out = {}
    for name in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", (ROOT / name).read_text(), flags=re.S):
            out[(name, block.splitlines()[0].split("  ")[0].strip())] = block
    return out


def test_every_block_is_run_or_says_why_not():
    ran = {k for k in blocks() if k not in NOT_RUN_HERE}
    assert ran == set(RUN), sorted(ran ^ set(RUN))


def sh(script: str, cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, f"{script}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
    return res.stdout


def block(key: tuple[str, str], **subs: str) -> str:
    text = blocks()[key]
    for old, new in subs.items():
        text = text.replace(old, new)
    return text


def records(cwd: Path) -> None:
    """The files the README's examples name: records.jsonl, and each record's content."""
    pdf = b"%PDF-1.4 scanned permit\n"
    (cwd / "scan-0042.pdf").write_bytes(pdf)
    (cwd / "permit-0001.json").write_text('{"holder": "A. Smith", "fee": 120}')
    (cwd / "records.jsonl").write_text(
        json.dumps({"id": "permit/2026/0001", "content": {"holder": "A. Smith", "fee": 120}}) + "\n"
        + json.dumps({"id": "scan-0042.pdf", "sha256": hashlib.sha256(pdf).hexdigest()}) + "\n")


@pytest.fixture
def shell_env(s3_bucket):
    endpoint, bucket = s3_bucket
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHORPIPE_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env, endpoint, bucket


def run_quickstart(tmp_path: Path, env: dict, endpoint: str, bucket: str) -> None:
    records(tmp_path)
    sh(block(("README.md", "# records.jsonl: one record a line")), tmp_path, env)


def run_s3_log(tmp_path: Path, env: dict, endpoint: str, bucket: str) -> None:
    records(tmp_path)
    sh(block(("README.md", "anchorpipe log keygen log.key --origin records.example.gov/log > log.vkey"),
             **{"http://minio:9000": endpoint, "s3://records/": f"s3://{bucket}/"}), tmp_path, env)


def run_ledgers(tmp_path: Path, env: dict, endpoint: str, bucket: str) -> None:
    sh("anchorpipe log keygen log.key > log.vkey && anchorpipe log init logdir --log-key log.key", tmp_path, env)
    sh(block(("docs/ledgers.md", "anchorpipe log show LOCATION --log-vkey log.vkey --save saved-2026-11-28"),
             LOCATION="logdir"), tmp_path, env)


def run_examples(tmp_path: Path, env: dict, endpoint: str, bucket: str) -> None:
    out = sh(block(("docs/ledgers.md", "cd docs/examples")), ROOT, env)
    assert out.count("VALID") == 1 and "Verification: OK" in out, out


def run_federation(tmp_path: Path, env: dict, endpoint: str, bucket: str) -> None:
    out = sh(block(("docs/ledgers.md", "anchorpipe demo --federation --records 2000 --export fed")), tmp_path, env)
    assert "all 6,000 proofs VALID" in out and "cosigned by 2 of 3 pinned witnesses" in out, out


RUN = {
    ("README.md", "# records.jsonl: one record a line"): run_quickstart,
    ("README.md", "anchorpipe log keygen log.key --origin records.example.gov/log > log.vkey"): run_s3_log,
    ("docs/ledgers.md", "anchorpipe log show LOCATION --log-vkey log.vkey --save saved-2026-11-28"): run_ledgers,
    ("docs/operations.md", "anchorpipe agency add dept-of-records"): None,  # these four: the service test below
    ("docs/operations.md", "curl -X POST https://anchorpipe.example/v1/records \\"): None,
    ("docs/archive.md", "anchorpipe proof get dept-of-records permit/2026/0001 --archive s3://records-archive/anchorpipe \\"): None,
    ("docs/sources.md", "anchorpipe source list"): None,
    ("docs/ledgers.md", "cd docs/examples"): run_examples,
    ("docs/ledgers.md", "anchorpipe demo --federation --records 2000 --export fed"): run_federation,
}


@pytest.mark.parametrize("key", [k for k, fn in RUN.items() if fn is not None], ids=lambda k: f"{k[0]}:{k[1][:30]}")
def test_a_local_block_runs_as_written(key, tmp_path, shell_env):
    env, endpoint, bucket = shell_env
    RUN[key](tmp_path, env, endpoint, bucket)


@pytest.mark.system
def test_the_service_blocks_run_as_written(tmp_path: Path):
    """Keys, pushing with curl, fetching proofs from the API and from the archive, sources: against a stack."""
    from pipelines.demo.localstack import local_stack
    from pipelines.state.postgres import PostgresState

    (tmp_path / "stack").mkdir()
    with local_stack(tmp_path / "stack", batch_interval="0.3") as stack:
        env = {**stack.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        work = tmp_path / "work"
        work.mkdir()
        records(work)
        (work / "log.vkey").write_text(stack.signer.verifier().text() + "\n")
        sh("anchorpipe agency add dept-of-permits > /dev/null", work, env)  # the auditor block grants it too
        keys = block(("docs/operations.md", "anchorpipe agency add dept-of-records"),
                     **{"4d8530931900": "$(anchorpipe key list | grep auditor | cut -d' ' -f1)"})
        out = sh(keys.replace("anchorpipe agency add dept-of-records ",
                              "anchorpipe agency add dept-of-records > agency.key "), work, env)
        assert "revoked key" in out
        env["KEY"] = (work / "agency.key").read_text().strip()
        host = {"https://anchorpipe.example": stack.api_url,
                "s3://records-archive/anchorpipe": stack.archive, "https://minio.example": stack.s3_endpoint}
        push, rest = block(("docs/operations.md", "curl -X POST https://anchorpipe.example/v1/records \\"),
                           **host).split("@records.jsonl", 1)
        rest = rest.split("\n", 1)[1]
        sh(push + "@records.jsonl", work, env)
        state = PostgresState.connect(stack.database_url)
        deadline = time.monotonic() + 60  # the docs' next lines read the proof once it is archived
        while state.archived_records() < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "VALID" in sh(rest, work, env)
        sh(block(("docs/archive.md", "anchorpipe proof get dept-of-records permit/2026/0001 --archive "
                                     "s3://records-archive/anchorpipe \\"), **host), work, env)
        assert json.loads((work / "proof.json").read_text())["record"]["id"] == "permit/2026/0001"
        inbox = work / "inbox"
        inbox.mkdir()
        (inbox / "a.jsonl").write_text('{"id": "feed-1", "content": 1}\n{"id": "feed-2"}\n{"id": "feed-3"}\n')
        (work / "sources.toml").write_text(f'[[source]]\nname = "permits-feed"\nagency = "dept-of-permits"\n'
                                           f'kind = "folder"\npath = "{inbox}"\nmin_age = 0\n')
        out = sh(block(("docs/sources.md", "anchorpipe source list")),
                 work, {**env, "ANCHORPIPE_SOURCES": str(work / "sources.toml")})
        assert "1 accepted" in out and "dropped 2 quarantined items of permits-feed" in out


def test_the_names_the_docs_use_are_the_ones_replaced():
    """If a doc renames its example hosts, the substitutions above must follow (or the test runs nothing)."""
    text = "".join(blocks().values())
    for name in ("http://minio:9000", "s3://records/", "https://anchorpipe.example", "https://minio.example",
                 "s3://records-archive/anchorpipe", "LOCATION", "4d8530931900"):
        assert name in text, name

"""`anchorpipe init` sets a new deployment up; `anchorpipe config check` says, one line each, what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from pipelines.core.note import Signer
from tests.conftest import sql
from tests.system.test_schema import empty_db  # noqa: F401  (a fixture)


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_init_then_check_from_nothing(empty_db, clean_redis, s3_endpoint, tmp_path):  # noqa: F811
    key_file = tmp_path / "log.key"
    key_file.write_text(Signer.generate("records.example.gov/log").text() + "\n")
    with_password = empty_db.replace("postgresql://postgres@", "postgresql://postgres:pg-s3cret-pw@")
    bucket = f"init-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": with_password, "ANCHORPIPE_REDIS_URL": clean_redis,
           "ANCHORPIPE_ARCHIVE": f"s3://{bucket}/archive", "ANCHORPIPE_S3_ENDPOINT": s3_endpoint,
           "ANCHORPIPE_LOG_KEY_FILE": str(key_file), "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1"}
    before = cli(env, "config", "check")
    assert before.returncode == 2 and "3 checks failed" in before.stderr, before.stdout + before.stderr
    lines = {line.split()[1]: line for line in before.stdout.splitlines() if line.startswith(("ok", "FAIL"))}
    assert lines["database"].startswith("FAIL") and "anchorpipe db upgrade" in lines["database"]
    assert lines["redis"].startswith("ok") and lines["sources"].startswith("ok")
    assert lines["archive"].startswith("FAIL") and lines["log"].startswith("FAIL")
    assert "ANCHORPIPE_DATABASE_URL=postgresql://postgres:***@" in before.stdout
    assert "pg-s3cret-pw" not in before.stdout + before.stderr
    made = cli(env, "init", "--agency", "dept-a")
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"created bucket {bucket}" in made.stderr and "size 0" in made.stderr
    assert made.stdout.startswith("ap_") and len(made.stdout.splitlines()) == 1  # the agency's key alone, once
    assert "dept-a created" in made.stderr and "ap_" not in made.stderr
    env_file = tmp_path / "anchorpipe.env"  # the services' EnvironmentFile: the CLI reads it too
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if k.startswith(("ANCHORPIPE_", "AWS_")))
                        + "OPERATOR_NOTE=read two ways\n")  # honcho would read "readtwoways"
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("ANCHORPIPE_", "AWS_"))}
    after = cli({**bare, "ANCHORPIPE_ENV_FILE": str(env_file)}, "config", "check")
    assert after.returncode == 0, after.stdout + after.stderr
    (warning,) = [line for line in after.stderr.splitlines() if line.startswith("warn")]
    assert f"{env_file}:{len(env_file.read_text().splitlines())}: OPERATOR_NOTE" in warning
    assert "signed by the key in ANCHORPIPE_LOG_KEY_FILE" in after.stdout
    again = cli(env, "init", "--agency", "dept-a")  # safe to repeat, the agency too: no second key
    assert again.returncode == 0 and f"bucket {bucket} exists" in again.stderr, again.stdout + again.stderr
    assert again.stdout == "" and "dept-a exists" in again.stderr
    assert len(sql(empty_db, "SELECT 1 FROM api_keys")) == 1
    key_file.write_text(Signer.generate("records.example.gov/log").text() + "\n")  # the wrong key
    wrong = cli(env, "config", "check")
    assert wrong.returncode == 2
    assert [line for line in wrong.stdout.splitlines() if line.startswith("FAIL")][0].split()[1] == "log"


def test_check_asks_the_tsa_and_the_chain_and_prints_no_secret(db, clean_redis, tsa, evm_node, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    from pipelines.demo.services import fund
    from pipelines.demo.tsa import make_tsa
    from pipelines.ledger.evm import EvmChain

    key_file = tmp_path / "log.key"
    key_file.write_text(Signer.generate("records.example.gov/log").text() + "\n")
    evm_key = "0x" + uuid.uuid4().hex * 2
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"".join(r.public_bytes(Encoding.PEM) for r in tsa[1]))
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_REDIS_URL": clean_redis,
           "ANCHORPIPE_ARCHIVE": str(tmp_path / "archive"), "ANCHORPIPE_LOG_KEY_FILE": str(key_file),
           "ANCHORPIPE_ANCHORS": "tlog,tsa,evm", "ANCHORPIPE_TSA_URLS": tsa[0], "ANCHORPIPE_TSA_ROOTS": str(roots),
           "ANCHORPIPE_EVM_RPC_URL": f"{evm_node}/v3/provider-api-key", "ANCHORPIPE_EVM_KEY": evm_key}
    assert cli(env, "init").returncode == 0
    # A provider's URL carries its key in the path: anvil answers 404 there, and the key is never shown.
    keyed = cli(env, "config", "check")
    assert keyed.returncode == 2 and "FAIL  evm" in keyed.stdout and "404" in keyed.stdout, keyed.stdout
    env["ANCHORPIPE_EVM_RPC_URL"] = evm_node
    broke = cli(env, "config", "check")  # the sender has no funds yet
    assert broke.returncode == 2 and "has no funds for gas" in broke.stdout, broke.stdout + broke.stderr
    fund(evm_node, EvmChain(evm_node, evm_key).address)
    ok = cli(env, "config", "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "its token verified under ANCHORPIPE_TSA_ROOTS" in ok.stdout and "chain 31337 at block" in ok.stdout
    for secret in (evm_key, evm_key[2:], "provider-api-key"):
        assert all(secret not in r.stdout + r.stderr for r in (keyed, broke, ok))
    # A TSA whose roots are not the configured ones fails its check by name.
    roots.write_bytes(make_tsa(tmp_path / "other").read_bytes())
    wrong = cli(env, "config", "check")
    assert wrong.returncode == 2 and f"FAIL  tsa {tsa[0]}" in wrong.stdout, wrong.stdout


def test_check_asks_each_witness_whether_it_witnesses_this_log(db, clean_redis, tmp_path):
    from pipelines.core.cosignature import Cosigner
    from pipelines.demo.services import free_port, witness_server

    signer = Signer.generate("records.example.gov/log")
    (tmp_path / "log.vkey").write_text(signer.verifier().text() + "\n")
    (tmp_path / "log.key").write_text(signer.text() + "\n")
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": db, "ANCHORPIPE_REDIS_URL": clean_redis,
           "ANCHORPIPE_ARCHIVE": str(tmp_path / "archive"), "ANCHORPIPE_LOG_KEY_FILE": str(tmp_path / "log.key")}
    assert cli(env, "init").returncode == 0
    del env["ANCHORPIPE_LOG_KEY_FILE"]  # the witnessing stage needs the public key only
    env["ANCHORPIPE_LOG_VKEY"] = str(tmp_path / "log.vkey")
    with witness_server(tmp_path, "ours.example", [signer.verifier().text()]) as ours, \
            witness_server(tmp_path, "theirs.example", [Signer.generate("x.example/log").verifier().text()]) as theirs:
        dead = f"http://127.0.0.1:{free_port()} {Cosigner.generate('dead.example').verifier().text()}"
        env["ANCHORPIPE_WITNESSES"] = f"{ours.url} {ours.vkey}, {theirs.url} {theirs.vkey}, {dead}"
        res = cli(env, "config", "check")
    lines = {line.split()[2]: line for line in res.stdout.splitlines() if line.split()[1:2] == ["witness"]}
    assert res.returncode == 2 and len(lines) == 3, res.stdout + res.stderr
    assert lines[ours.url].startswith("ok") and "quorum 2 of 3" in lines[ours.url]
    assert lines[theirs.url].startswith("FAIL") and f"--log {signer.verifier().text()}" in lines[theirs.url]
    assert lines[dead.split()[0]].startswith("FAIL") and "unreachable" in lines[dead.split()[0]]
    env["ANCHORPIPE_WITNESSES"] = "127.0.0.1:7380 not-a-key"
    bad = cli(env, "config", "check")
    assert bad.returncode == 2 and "ANCHORPIPE_WITNESSES" in bad.stderr and "URL" in bad.stderr, bad.stderr
    env["ANCHORPIPE_WITNESSES"], env["ANCHORPIPE_WITNESS_QUORUM"] = f"{ours.url} {ours.vkey}", "2"
    bad = cli(env, "config", "check")
    assert bad.returncode == 2 and "ANCHORPIPE_WITNESS_QUORUM is 2, but 1 witnesses" in bad.stderr, bad.stderr

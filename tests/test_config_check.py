"""`anchorpipe init` sets a new deployment up; `anchorpipe config check` says, one line each, what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from pipelines.core.note import Signer
from tests.test_schema import empty_db  # noqa: F401  (a fixture)


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
    assert f"created bucket {bucket}" in made.stdout and "size 0" in made.stdout
    assert made.stdout.strip().splitlines()[-1].startswith("ap_")  # the agency's key, shown once
    env_file = tmp_path / "anchorpipe.env"  # the services' EnvironmentFile: the CLI reads it too
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if k.startswith(("ANCHORPIPE_", "AWS_"))))
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("ANCHORPIPE_", "AWS_"))}
    after = cli({**bare, "ANCHORPIPE_ENV_FILE": str(env_file)}, "config", "check")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "signed by the key in ANCHORPIPE_LOG_KEY_FILE" in after.stdout
    again = cli(env, "init")  # safe to repeat
    assert again.returncode == 0 and f"bucket {bucket} exists" in again.stdout
    key_file.write_text(Signer.generate("records.example.gov/log").text() + "\n")  # the wrong key
    wrong = cli(env, "config", "check")
    assert wrong.returncode == 2
    assert [line for line in wrong.stdout.splitlines() if line.startswith("FAIL")][0].split()[1] == "log"

"""The agency's side against a running stack (PostgreSQL, Redis, S3, the API, workers): the Python client,
sync and async, and `anchorpipe push`, including an API restart in the middle of a push (nothing lost,
nothing doubled), a push killed and resumed, and bad lines and conflicts reported by line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anchorpipe.client import AsyncClient, AuthError, Client, Conflict, ValidationError, verify
from pipelines.demo.localstack import local_stack
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState
from tests.conftest import sql
from tests.support.paths import ROOT

pytestmark = pytest.mark.system  # every test runs a stack (API, workers)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("stack")
    with local_stack(work, batch_interval="0.3") as s:
        yield s


def agency(stack, name: str) -> str:
    return add_agency(PostgresState.connect(stack.database_url), name)


def stored_ids(stack, name: str) -> list[str]:
    return [r[0] for r in sql(stack.database_url, "SELECT id FROM records WHERE agency = %s", (name,))]


def push_cmd(stack, path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "push", str(path), "--api", stack.api_url, *args]


def write_jsonl(path: Path, n: int, tag: str) -> None:
    path.write_text("".join(json.dumps({"id": f"{tag}-{i}", "content": {"n": i}}) + "\n" for i in range(n)))


def test_the_client_submits_waits_fetches_and_verifies(stack):
    key = agency(stack, "client-agency")
    with Client(stack.api_url, key, chunk=1_000) as c:
        records = ({"id": f"c-{i}", "content": {"i": i}} for i in range(3_500))  # a generator: streamed
        first = c.submit(records)
        assert (first.accepted, first.duplicates, len(first.receipts)) == (3_500, 0, 3_500)
        again = c.submit([{"id": "c-7", "content": {"i": 7}}])
        assert again.receipts[0].status == "duplicate" and again.receipts[0].leaf_hash == first.receipts[7].leaf_hash
        done = c.wait(["c-0", "c-3499"], timeout=60, poll=0.2)
        assert all(s.status == "archived" and "tlog" in s.confirmed for s in done.values())
        proof = c.get_proof("c-3499")
        report = verify(proof, {"i": 3499}, log_vkeys=[stack.signer.verifier().text()])
        assert report.content_checked
        with pytest.raises(Conflict) as conflict:
            c.submit([{"id": "c-1", "content": "something else"}])
        assert conflict.value.record_id == "c-1"
        with pytest.raises(ValidationError) as invalid:
            c.submit([{"id": "ok-1", "content": 1}, {"id": "", "content": 2}, {"content": 3}])
        assert [(p.index, p.field) for p in invalid.value.problems] == [(1, "id"), (2, "id")]
        assert "ok-1" not in stored_ids(stack, "client-agency")  # nothing of a refused request is stored
    with pytest.raises(AuthError), Client(stack.api_url, "ap_not-a-key", retries=0) as bad:
        bad.submit([{"id": "x", "content": 1}])
    assert key not in repr(Client(stack.api_url, key))

    async def run_async() -> int:
        async with AsyncClient(stack.api_url, key, chunk=100) as ac:
            sub = await ac.submit({"id": f"a-{i}", "content": i} for i in range(250))
            await ac.wait(["a-0", "a-249"], timeout=60, poll=0.2)
            return sub.accepted

    assert asyncio.run(run_async()) == 250


def test_push_survives_an_api_restart_with_nothing_lost_or_doubled(stack, tmp_path: Path):
    key = agency(stack, "push-agency")
    path = tmp_path / "records.jsonl"
    write_jsonl(path, 30_000, "p")
    env = {**os.environ, "ANCHORPIPE_API_KEY": key}
    proc = subprocess.Popen(push_cmd(stack, path, "--chunk", "500"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not stored_ids(stack, "push-agency") and time.monotonic() < deadline:
        time.sleep(0.05)
    port = int(stack.api_url.rsplit(":", 1)[1])
    stack.kill("api")  # the API dies mid-push ...
    time.sleep(1.0)
    stack.spawn("api", [sys.executable, "-m", "uvicorn", "pipelines.api.app:app", "--host", "127.0.0.1", "--port",
                        str(port), "--log-level", "warning"], port=port)  # ... and comes back
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    accepted, duplicates = (int(n.replace(",", "")) for n in re.search(r"accepted ([\d,]+), duplicates ([\d,]+)",
                                                                       out).groups())
    assert accepted + duplicates == 30_000  # a chunk cut by the restart was sent again: its receipts once
    ids = stored_ids(stack, "push-agency")
    assert len(ids) == len(set(ids)) == 30_000  # nothing lost, nothing doubled


def test_a_killed_push_resumes_and_reports_bad_lines_and_conflicts(stack, tmp_path: Path):
    key = agency(stack, "resume-agency")
    path = tmp_path / "records.jsonl"
    write_jsonl(path, 20_000, "r")
    env = {**os.environ, "ANCHORPIPE_API_KEY": key}
    proc = subprocess.Popen(push_cmd(stack, path, "--chunk", "200"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    state = Path(str(path) + ".push-state.json")
    deadline = time.monotonic() + 60
    while not (state.exists() and json.loads(state.read_text())["accepted"] >= 2_000) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = json.loads(state.read_text())["offset"]
    assert 0 < done_before < path.stat().st_size
    res = subprocess.run(push_cmd(stack, path), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    ids = stored_ids(stack, "resume-agency")
    assert len(ids) == len(set(ids)) == 20_000
    # Bad lines and a conflict: reported by line number, the good records accepted, exit status 1.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "r-5", "content": "changed"}\n{"id": "new-1", "content": 1}\nnot json\n\n'
                   '{"id": "", "content": 2}\n{"id": "new-2", "sha256": "ab"}\n{"id": "new-3", "content": 3}\n')
    res = subprocess.run(push_cmd(stack, bad, "--proofs", str(tmp_path / "proofs")), env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "accepted 2, duplicates 0, conflicts 1, rejected 3" in res.stdout
    assert "line 1: id 'r-5' was accepted before" in res.stdout and "line 3: record: not JSON" in res.stdout
    assert "line 5: id:" in res.stdout and "line 6: sha256:" in res.stdout
    saved = sorted(p.name for p in (tmp_path / "proofs").iterdir())
    assert saved == ["new-1.json", "new-3.json"]
    assert json.loads((tmp_path / "proofs" / "new-1.json").read_text())["record"]["id"] == "new-1"
    missing = subprocess.run(push_cmd(stack, bad), env={k: v for k, v in env.items() if k != "ANCHORPIPE_API_KEY"},
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "ANCHORPIPE_API_KEY" in missing.stderr


def test_the_docs_examples_run_as_written(stack, tmp_path: Path):
    """docs/client.md's ten lines of Python and its push command, against the stack."""
    import re as regex

    text = (ROOT / "docs" / "client.md").read_text()
    python = regex.search(r"```python\n(.*?)```", text, regex.S).group(1)
    shell = regex.search(r"```sh\n(.*?)```", text, regex.S).group(1)
    key = agency(stack, "docs-agency")
    (tmp_path / "agency.key").write_text(key + "\n")
    (tmp_path / "log.vkey").write_text(stack.signer.verifier().text() + "\n")
    script = python.replace("https://anchorpipe.example", stack.api_url)
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "10000 accepted, 0 already there" in res.stdout, res.stdout + res.stderr
    write_jsonl(tmp_path / "records.jsonl", 300, "docs")
    res = subprocess.run(["bash", "-e", "-c", shell.replace("https://anchorpipe.example", stack.api_url)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert res.returncode == 0 and "saved 300 proofs" in res.stdout, res.stdout + res.stderr
    assert len(list((tmp_path / "proofs").iterdir())) == 300


def test_push_reads_csv(stack, tmp_path: Path):
    import hashlib

    key = agency(stack, "csv-agency")
    env = {**os.environ, "ANCHORPIPE_API_KEY": key}
    (tmp_path / "permits.csv").write_text("id,holder,fee\npermit/1,A. Smith,120\npermit/2,B. Jones,80\n")
    digest = hashlib.sha256(b"scan").hexdigest()
    (tmp_path / "scans.csv").write_text(f"id,sha256\nscan-1,{digest}\n")
    for name in ("permits.csv", "scans.csv"):
        res = subprocess.run(push_cmd(stack, tmp_path / name, "--wait"), env=env, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0 and "proofs archived" in res.stdout, res.stdout + res.stderr
    with Client(stack.api_url, key) as c:
        proof = c.get_proof("permit/1")
        verify(proof, {"holder": "A. Smith", "fee": "120"}, log_vkeys=[stack.signer.verifier().text()])
        assert c.get_proof("scan-1")["record"]["content_sha256"] == digest


def test_a_push_state_left_for_another_file_is_not_resumed(tmp_path: Path):
    """The same name, other content: resuming at the old offset would skip records, so push refuses (and
    --restart starts over); a push that went through leaves no state behind."""
    from click.testing import CliRunner

    from pipelines.cli import main
    from pipelines.cli.push import identity

    path = tmp_path / "export.jsonl"
    write_jsonl(path, 10, "old")
    state = Path(str(path) + ".push-state.json")
    state.write_text(json.dumps({"offset": 400, "accepted": 10, "duplicates": 0, "conflicts": [], "rejected": [],
                                 "file": identity(path)}))
    write_jsonl(path, 5, "new")  # regenerated under the same name
    res = CliRunner().invoke(main, ["push", str(path), "--api", "http://127.0.0.1:9"], env={"ANCHORPIPE_API_KEY": "k"})
    assert res.exit_code == 1 and "--restart" in res.output and "not the file" in res.output

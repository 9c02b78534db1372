"""The whole pipeline with real processes: PostgreSQL, Redis, moto S3 over HTTP, the API, Celery workers, beat.

Crash tests kill -9 a worker (its whole process group) at a named point inside
each stage, restart it, and check that every accepted record ends with exactly
one verifiable proof and that no batch was anchored twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipelines.archive import bundle, directory
from pipelines.intake.auth import add_agency
from pipelines.core.commitment import content_sha256
from pipelines.core.logentry import parse_batch_entry
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import verify_proof
from pipelines.demo.localstack import local_stack
from pipelines.state.postgres import PostgresState as State
from pipelines.storage import open_store
from pipelines.ledger.tlog import LogReader
from tests.conftest import sql
from tests.support.paths import ROOT

pytestmark = pytest.mark.system  # every test runs a stack of services

QUEUES = {"stages": ("seal,archive,reconcile", 2), "sequencer": ("anchor", 1)}
FAST = {"batch_interval": "0.3", "visibility_timeout": "10", "unacked_restore_interval": "1",
        "stuck_after": "3", "batch_max": "250"}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def push(api: str, key: str, start: int, count: int) -> None:
    body = "\n".join(json.dumps({"id": f"rec-{i}", "content": {"i": i}}) for i in range(start, start + count))
    resp = httpx.post(f"{api}/v1/records", content=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"})
    assert resp.status_code == 202, resp.text


def check_everything(stack, state: State, records: int) -> None:
    """Exactly one verifiable proof per record; each batch once in the log, and nothing else there."""
    os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AWS_")})
    store = open_store(stack.archive, s3_endpoint=stack.s3_endpoint)
    log_store = open_store(stack.archive + "/log", s3_endpoint=stack.s3_endpoint)
    vkeys = [stack.signer.verifier()]
    reader = LogReader(log_store, vkeys)
    head = reader.head()
    reader.check_tiles(head)
    logged = [parse_batch_entry(e)[0] for e in reader.entries(head.checkpoint.size)]
    batches = sorted(r[0] for r in sql(state.url, "SELECT id FROM batches"))
    assert sorted(logged) == batches, "every batch exactly once in the log"
    seen: dict[str, str] = {}
    for batch_id in batches:
        for line in store.get(bundle.bundle_key("agency-a", batch_id)).splitlines():
            proof = parse_proof(line)
            assert proof.record.id not in seen, f"{proof.record.id} proved twice"
            seen[proof.record.id] = batch_id
            i = int(proof.record.id.split("-")[1])
            verify_proof(proof, Policy.of(vkeys, ["tlog"]), content_sha256=content_sha256({"i": i}))
    assert len(seen) == records
    for i in range(0, records, 97):
        assert directory.fetch_proof(store, "agency-a", f"rec-{i}").batch.id == seen[f"rec-{i}"]


def test_pushed_records_become_verifiable_proofs(tmp_path: Path):
    with local_stack(tmp_path, **FAST) as stack:
        state = State.connect(stack.database_url)
        key = add_agency(state, "agency-a")
        push(stack.api_url, key, 0, 700)
        push(stack.api_url, key, 0, 700)  # the same records again: duplicates, no new work
        wait_for(lambda: state.archived_records() >= 700, 90, "700 archived proofs")
        resp = httpx.get(f"{stack.api_url}/v1/records/rec-5", headers={"Authorization": f"Bearer {key}"})
        assert resp.json()["status"] == "archived"
        verify_proof(parse_proof(json.dumps(resp.json()["proof"])), Policy.of([stack.signer.verifier()]))
        time.sleep(1)
        assert state.archived_records() == 700
        check_everything(stack, state, 700)


@pytest.mark.parametrize("point,victim", [("seal.claimed", "stages"), ("anchor.appended", "sequencer"),
                                          ("archive.bundled", "stages"), ("archive.indexed", "stages")])
def test_kill_9_in_the_middle_of_a_stage_loses_nothing_and_anchors_nothing_twice(tmp_path: Path, point, victim):
    faults = tmp_path / "faults"
    faults.mkdir()
    with local_stack(tmp_path, workers={}, **FAST) as stack:
        fault = {"ANCHORPIPE_FAULT_PAUSE": point, "ANCHORPIPE_FAULT_DIR": str(faults)}
        for name, (queues, concurrency) in QUEUES.items():
            stack.start_worker(name, queues, concurrency, env=fault if name == victim else None)
        state = State.connect(stack.database_url)
        key = add_agency(state, "agency-a")
        push(stack.api_url, key, 0, 400)
        push(stack.api_url, key, 400, 200)
        wait_for(lambda: (faults / point).exists(), 60, f"a worker to reach {point}")
        stack.kill(victim)  # SIGKILL to the worker and its pool children
        stack.start_worker(victim, *QUEUES[victim])
        wait_for(lambda: state.archived_records() >= 600, 120, "every record archived after the crash")
        time.sleep(2)  # let any duplicate work surface before counting
        assert state.archived_records() == 600
        check_everything(stack, state, 600)


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_keys_and_proof_retrieval_commands(tmp_path: Path):
    with local_stack(tmp_path, **FAST) as stack:
        env = dict(stack.env)
        key = cli(env, "agency", "add", "agency-a").stdout.strip()
        assert key.startswith("ap_")
        auditor = cli(env, "auditor", "add", "audit-office", "--agency", "agency-a").stdout.strip()
        assert cli(env, "auditor", "add", "x", "--agency", "nobody").returncode == 2
        push(stack.api_url, key, 0, 50)
        state = State.connect(stack.database_url)
        wait_for(lambda: state.archived_records() >= 50, 90, "50 archived proofs")
        (tmp_path / "log.vkey").write_text(stack.signer.verifier().text())
        for how in (["--api", stack.api_url, "--key", auditor], ["--archive", stack.archive]):
            out = tmp_path / "p.json"
            res = cli(env, "proof", "get", "agency-a", "rec-7", *how, "-o", str(out))
            assert res.returncode == 0, res.stderr
            res = cli(env, "verify", str(out), "--log-vkey", str(tmp_path / "log.vkey"))
            assert res.returncode == 0 and res.stdout.endswith("VALID\n"), res.stdout + res.stderr
        res = cli(env, "proof", "get", "agency-a", "no-such", "--archive", stack.archive)
        assert res.returncode == 2 and "no archived proof" in res.stderr


def test_the_procfile_runs_under_honcho(tmp_path: Path):
    """`honcho start` with a .env, as the README says: records pushed to `web` come out archived."""
    from pipelines.demo.services import free_port, moto_s3, postgres_server, redis_server, wait_for_port
    from pipelines.state.schema import upgrade

    with postgres_server(tmp_path) as database_url, redis_server(tmp_path) as redis_url, moto_s3(tmp_path) as endpoint:
        upgrade(database_url)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="procfile")
        from pipelines.core.note import Signer

        key_file = tmp_path / "log.key"
        key_file.write_text(Signer.generate("procfile.test/log").text())
        port, base = free_port(), _free_ten_ports()
        (tmp_path / ".env").write_text(
            f"ANCHORPIPE_DATABASE_URL={database_url}\nANCHORPIPE_REDIS_URL={redis_url}\nANCHORPIPE_ARCHIVE=s3://procfile/a\nANCHORPIPE_S3_ENDPOINT={endpoint}\n"
            f"ANCHORPIPE_LOG_KEY_FILE={key_file}\nANCHORPIPE_BATCH_INTERVAL=0.3\nAWS_ACCESS_KEY_ID=k\n"
            f"AWS_SECRET_ACCESS_KEY=s\nAWS_DEFAULT_REGION=us-east-1\nANCHORPIPE_API_PORT={port}\n"
            f"ANCHORPIPE_METRICS_BASE={base}\nANCHORPIPE_STATE_DIR={tmp_path / 'state'}\n")
        procfile = ROOT / "Procfile"
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        honcho = subprocess.Popen([sys.executable, "-m", "honcho", "-f", str(procfile), "-d", str(procfile.parent),
                                   "-e", str(tmp_path / ".env"), "start", "web", "sealer", "sequencer", "archiver",
                                   "beat"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            wait_for_port(port, honcho, timeout=60)
            state = State.connect(database_url)
            from pipelines.intake.auth import add_agency

            push(f"http://127.0.0.1:{port}", add_agency(state, "agency-a"), 0, 40)
            wait_for(lambda: state.archived_records() >= 40, 90, "40 proofs archived by the Procfile's processes")
            # Each worker serves its own metrics on its own port (ANCHORPIPE_METRICS_BASE + its queue's number, as
            # in the systemd units): all three stages' counters move, each on one port. The files stay in the
            # deployment's state folder.
            moving: dict[str, int] = {}
            for offset in range(1, 10):
                text = _scrape(f"http://127.0.0.1:{base + offset}/metrics")
                for counter in ("records_sealed_total", "batches_anchored_total", "records_archived_total"):
                    if re.search(rf"^anchorpipe_{counter} [1-9]", text, re.M):
                        moving[counter] = base + offset
            assert moving == {"records_sealed_total": base + 1, "batches_anchored_total": base + 2,
                              "records_archived_total": base + 3}, moving
            assert (tmp_path / "state" / "beat-schedule").exists() or list((tmp_path / "state").glob("beat-schedule*"))
            assert {p.name for p in (tmp_path / "state" / "metrics").iterdir()} == {"sealer", "sequencer", "archiver"}
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            honcho.wait(timeout=30)


def _free_ten_ports() -> int:
    """A base port with base+1..base+9 all free (the Procfile's metrics ports), below the ephemeral range that
    free_port draws from."""
    import random
    import socket
    from contextlib import ExitStack

    for _ in range(50):
        base = random.randrange(20000, 30000, 10)
        try:
            with ExitStack() as held:
                for n in range(1, 10):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", base + n))
            return base
        except OSError:
            continue
    raise AssertionError("no nine free ports in a row")


def _scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return ""


def test_beat_pulls_a_source_and_a_worker_killed_mid_pull_loses_nothing(tmp_path: Path):
    """Beat schedules the source; the pulling worker is killed with SIGKILL between accept and cursor commit."""
    inbox, faults = tmp_path / "inbox", tmp_path / "faults"
    inbox.mkdir()
    faults.mkdir()
    (inbox / "001.jsonl").write_text("".join(json.dumps({"id": f"rec-{i}", "content": {"i": i}}) + "\n"
                                             for i in range(300)))
    (tmp_path / "sources.toml").write_text(f'[[source]]\nname = "inbox"\nagency = "agency-a"\nkind = "folder"\n'
                                           f'path = "{inbox}"\nmin_age = 0\ninterval = 1\npage_size = 120\ncontent_field = "content"\n')
    with local_stack(tmp_path, workers={}, sources=str(tmp_path / "sources.toml"), source_lock_ttl="2",
                     **FAST) as stack:
        fault = {"ANCHORPIPE_FAULT_PAUSE": "pull.accepted", "ANCHORPIPE_FAULT_DIR": str(faults)}
        stack.start_worker("puller", "pull", 1, env=fault)
        stack.start_worker("stages", "seal,archive,reconcile", 2)
        stack.start_worker("sequencer", "anchor", 1)
        wait_for(lambda: (faults / "pull.accepted").exists(), 60, "the puller to reach its fault point")
        stack.kill("puller")
        stack.start_worker("puller", "pull", 1)
        state = State.connect(stack.database_url)
        wait_for(lambda: state.archived_records() >= 300, 120, "every pulled record archived")
        time.sleep(2)
        assert state.archived_records() == 300
        assert (inbox / "done" / "001.jsonl").exists()
        check_everything(stack, state, 300)


def test_workers_serve_prometheus_metrics(tmp_path: Path):
    from pipelines.demo.services import free_port

    with local_stack(tmp_path, workers={}, metrics_token="scrape-token-0123456789", **FAST) as stack:
        port = free_port()
        stack.start_worker("stages", "seal,archive,reconcile", 2, env={
            "ANCHORPIPE_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")})
        stack.start_worker("sequencer", "anchor", 1)
        state = State.connect(stack.database_url)
        push(stack.api_url, add_agency(state, "agency-a"), 0, 120)
        wait_for(lambda: state.archived_records() >= 120, 90, "120 archived proofs")

        def scraped() -> str:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                return ""

        try:
            wait_for(lambda: "anchorpipe_records_archived_total 120.0" in scraped(), 30, "the worker's metrics")
        except AssertionError:
            raise AssertionError(f"metrics: {scraped()[-2000:]!r}\nworker log: "
                                 f"{(tmp_path / 'stages.log').read_text()[-3000:]}") from None
        text = scraped()
        assert "anchorpipe_records_sealed_total 120.0" in text
        assert 'anchorpipe_stage_seconds_count{stage="archive"}' in text
        api = httpx.get(f"{stack.api_url}/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}).text
        assert 'anchorpipe_queue_length{queue="archive"}' in api and "anchorpipe_pending_records 0.0" in api


def test_the_demo_runs_as_the_readme_says(tmp_path: Path):
    """`anchorpipe demo` (what `make demo` runs), smaller: every proof found, verified, and exported."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--records", "300", "--export", "out"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "every record has exactly one, and every one is VALID" in res.stdout
    assert "verified with tlog + witness + tsa + evm required" in res.stdout and "records per transaction" in res.stdout
    assert "tiles match the signed checkpoint" in res.stdout and "stopped everything" in res.stdout
    out = tmp_path / "out"
    firsts = sorted(b for b in (out / "proofs").rglob("*.ndjson") if ".u" not in b.name)
    upgraded = sorted(b for b in (out / "proofs").rglob("*.ndjson") if ".u" in b.name)
    assert firsts and sum(len(b.read_text().splitlines()) for b in firsts) == 301  # and the warm-up record
    assert len(upgraded) == len(firsts)  # each batch upgraded once, the first bundle kept beside it
    pins = ["--log-vkey", str(out / "log.vkey"), "--tsa-root", str(out / "tsa-roots.pem"),
            "--evm-trusted-blocks", str(out / "evm-blocks.json"), "--witness", str(out / "witnesses.vkeys")]
    assert len((out / "witnesses.vkeys").read_text().splitlines()) == 3
    for path in upgraded:  # offline, the node and the witnesses gone: what was exported is all an auditor needs
        check = cli(env, "verify", str(path), *pins, "--witness-quorum", "2", "--require", "tsa", "--require", "evm")
        assert check.returncode == 0 and "VALID" in check.stdout, check.stdout + check.stderr
        assert "cosigned by 3 pinned witness(es)" in check.stdout
    check = cli(env, "verify", str(firsts[-1]), *pins, "--witness-quorum", "1", "--require", "tsa")
    assert check.returncode == 3 and "['tsa', 'witness'] did not verify" in check.stderr  # the first: log only
    # The exported folder is an archive `audit` accepts: every batch with its newest anchors, the log whole.
    audit = cli(env, "audit", str(out), *pins, "--witness-quorum", "2", "--require", "tsa", "--require", "evm",
                "--report", str(tmp_path / "report"))
    assert audit.returncode == 0 and audit.stdout.rstrip().endswith("PASSED"), audit.stdout + audit.stderr
    assert "demo-agency: 2 batches, 301 records, 2 valid" in audit.stdout
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<svg" in html and "tsa" in html and "witness-1.local" in html


def test_the_federation_demo_verifies_every_proof_with_a_witness_quorum(tmp_path: Path):
    """`anchorpipe demo --federation`: three logs witnessed by each other; each exported bundle verifies with
    its log's key and 2 of the 3 witness keys, and not with a quorum of 3 (a log's own agency does not
    witness it)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run([sys.executable, "-m", "pipelines.cli", "demo", "--federation", "--records", "900",
                          "--batch-size", "100", "--export", "fed"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "all 2,700 proofs VALID with the log's key and a quorum of 2 witness cosignatures" in res.stdout
    fed = tmp_path / "fed"
    agencies = sorted(p.name for p in fed.iterdir() if p.is_dir())
    assert len(agencies) == 3 and len((fed / "witnesses.vkeys").read_text().splitlines()) == 3
    for agency in agencies:
        bundles = sorted((fed / agency / "proofs" / agency).glob("*.ndjson"))
        assert sum(len(b.read_text().splitlines()) for b in bundles) == 900
        pins = ["--log-vkey", str(fed / agency / "log.vkey"), "--witness", str(fed / "witnesses.vkeys")]
        check = cli(env, "verify", str(bundles[-1]), *pins, "--witness-quorum", "2")
        assert check.returncode == 0 and f"({agency}/witness" not in check.stdout, check.stdout + check.stderr
        check = cli(env, "verify", str(bundles[0]), *pins, "--witness-quorum", "3")
        assert check.returncode == 3 and "cosigned by 2 of the pinned witnesses" in check.stderr
        show = cli(env, "log", "show", str(fed / agency / "log"), "--log-vkey", str(fed / agency / "log.vkey"))
        assert show.returncode == 0 and "tiles agree" in show.stdout
        audit = cli(env, "audit", str(fed / agency), *pins, "--witness-quorum", "2", "--require", "witness")
        assert audit.returncode == 0 and audit.stdout.rstrip().endswith("PASSED"), audit.stdout + audit.stderr


def test_ticks_never_pile_up_in_a_queue_nobody_consumes(tmp_path: Path):
    """Beat with no worker at all (as with the notifier left out): each tick queue holds one tick, not one per
    second since beat started; once a worker runs, the ticks move on and records flow."""
    from pipelines.state.redis import BrokerQueues

    with local_stack(tmp_path, workers={}, **FAST) as stack:
        queues = BrokerQueues(stack.redis_url)
        ticked = ("seal", "reconcile", "webhooks")
        wait_for(lambda: all(queues.lengths(ticked).values()), 30, "beat's first ticks")
        time.sleep(4)  # four webhooks periods, about fifty seal periods
        assert queues.lengths(ticked) == {q: 1 for q in ticked}
        for name, (queues_, concurrency) in QUEUES.items():
            stack.start_worker(name, queues_, concurrency)
        state = State.connect(stack.database_url)
        push(stack.api_url, add_agency(state, "agency-a"), 0, 50)
        wait_for(lambda: state.archived_records() >= 50, 60, "50 records archived once workers run")

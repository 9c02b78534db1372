"""Three hosts and the network failing between them (`make test-hosts`, as root; docs/operations.md, "More than
one host", has the runbook this follows and the table of the last run).

Host D runs PostgreSQL, Redis, the S3 server and a witness of the log; hosts A and B each run an API, a stage
worker and a sequencer (two consumers of the anchor queue: the standby takes over when the other's host is cut
off), B also the witnesser and beat; all from the same settings. After the heal the witness cosigns the whole log. Both APIs take 10,000 records each while a fault hits one host; then every accepted
record must have exactly one verifying proof, each batch once in one linear log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines.archive import bundle
from pipelines.core.commitment import content_sha256
from pipelines.core.logentry import parse_batch_entry
from pipelines.core.note import Signer
from pipelines.core.policy import Policy
from pipelines.core.proof import parse_proof
from pipelines.core.verify import verify_proof
from pipelines.demo.services import PostgresCluster, redis_command, witness_command
from pipelines.intake.auth import add_agency
from pipelines.ledger.tlog import LogReader
from pipelines.state.postgres import PostgresState
from pipelines.storage import open_store
from tests.hosts.network import HOSTS, POSTGRES, REDIS, S3, WITNESS, Net, three_hosts
from tests.support.paths import ROOT

pytestmark = pytest.mark.hosts

RECORDS_PER_HOST = 10_000
#: Redis answers other hosts only with a password (its protected mode): as docs/operations.md says to set one.
REDIS_PASSWORD = "hosts-test-redis-password"
FAULT_SECONDS = 10.0
SETTINGS = {"ANCHORPIPE_BATCH_INTERVAL": "0.3", "ANCHORPIPE_BATCH_MAX": "1000", "ANCHORPIPE_STUCK_AFTER": "5",
            "ANCHORPIPE_VISIBILITY_TIMEOUT": "10", "ANCHORPIPE_UNACKED_RESTORE_INTERVAL": "1",
            "ANCHORPIPE_DATABASE_WAIT": "0.5", "ANCHORPIPE_ARCHIVE_READ_TIMEOUT": "2"}
#: name -> (host, command after `python -m`)
PROCESSES = {
    **{f"api-{h}": (h, ["uvicorn", "pipelines.api.app:app", "--host", HOSTS[h], "--port", "8000",
                        "--log-level", "warning"]) for h in ("a", "b")},
    **{f"stages-{h}": (h, ["celery", "-A", "workers.app", "worker", "-Q", "seal,archive,reconcile", "-c", "2", "-n",
                           f"stages-{h}@%h", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"])
       for h in ("a", "b")},
    **{f"sequencer-{h}": (h, ["celery", "-A", "workers.app", "worker", "-Q", "anchor", "-c", "1", "-n",
                              f"sequencer-{h}@%h", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"])
       for h in ("a", "b")},
    "witnesser": ("b", ["celery", "-A", "workers.app", "worker", "-Q", "witness", "-c", "1", "-n", "witnesser@%h",
                        "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]),
    "beat": ("b", ["celery", "-A", "workers.app", "beat", "--loglevel", "WARNING"]),
}


@dataclass
class Deployment:
    net: Net
    work: Path
    env: dict[str, str]
    signer: Signer
    witness_vkey: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: int = 0

    @property
    def state(self) -> PostgresState:
        return PostgresState.connect(self.env["ANCHORPIPE_DATABASE_URL"])

    def spawn(self, name: str, host: str, args: list[str]) -> None:
        log = (self.work / f"{name}.log").open("a")
        self.procs[name] = subprocess.Popen([*self.net.run_in(host), *args], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, cwd=self.work)
        log.close()

    def start(self, name: str) -> None:
        host, args = PROCESSES[name]
        extra = ["-s", str(self.work / "beat-schedule")] if name == "beat" else []
        self.spawn(name, host, [sys.executable, "-m", *args, *extra])

    def supervise(self) -> None:
        """What systemd's Restart=always does: a process that exited is started again."""
        for name in PROCESSES:
            if self.procs[name].poll() is not None:
                self.restarts += 1
                self.start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            proc.wait(timeout=30)


@contextmanager
def deployment(net: Net, work: Path) -> Iterator[Deployment]:
    """D's servers, then A's and B's processes, from one set of settings."""
    from pipelines.state.schema import upgrade
    from pipelines.storage.s3 import create_bucket

    signer = Signer.generate("hosts.test/log")
    (work / "log.key").write_text(signer.text() + "\n")
    witness_args, witness_vkey = witness_command(work / "witness", "witness.hosts.test", [signer.verifier().text()],
                                                 7380)
    s3 = f"http://{S3}:9000"
    env = {**os.environ, "ANCHORPIPE_DATABASE_URL": f"postgresql://postgres@{POSTGRES}:5432/postgres",
           "ANCHORPIPE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@{REDIS}:6380/0", "ANCHORPIPE_ARCHIVE": "s3://anchorpipe/archive",
           "ANCHORPIPE_S3_ENDPOINT": s3, "ANCHORPIPE_LOG_KEY_FILE": str(work / "log.key"),
           "AWS_ACCESS_KEY_ID": "anchorpipe", "AWS_SECRET_ACCESS_KEY": "anchorpipe", "AWS_DEFAULT_REGION": "us-east-1",
           "ANCHORPIPE_WITNESSES": f"http://{WITNESS}:7380 {witness_vkey}", "ANCHORPIPE_WITNESS_QUORUM": "1",
           **SETTINGS}
    d = Deployment(net, work, env, signer, witness_vkey)
    cluster = PostgresCluster(work)
    with (cluster.data / "db" / "pg_hba.conf").open("a") as hba:  # the hosts' addresses, inside the namespaces
        hba.write("host all all 10.77.0.0/16 trust\n")
    try:
        d.spawn("postgres", "d", cluster.command(5432, host=POSTGRES))
        d.spawn("redis", "d", redis_command(6380, work / "redis", host=REDIS, password=REDIS_PASSWORD))
        d.spawn("s3", "d", [sys.executable, "-m", "moto.server", "-H", S3, "-p", "9000"])
        d.spawn("witness", "d", [*witness_args, "--host", WITNESS])
        cluster.wait_ready(5432, host=POSTGRES)
        upgrade(env["ANCHORPIPE_DATABASE_URL"])
        _until(lambda: _answers(s3), 30, "the S3 server")
        create_bucket("anchorpipe", endpoint_url=s3, object_lock=True, aws_access_key_id="anchorpipe",
                      aws_secret_access_key="anchorpipe")
        for name in PROCESSES:
            d.start(name)
        for h in ("a", "b"):
            _until(lambda h=h: _answers(f"http://{HOSTS[h]}:8000/healthz"), 60, f"the API on host {h}")
        yield d
    finally:
        d.stop()
        cluster.remove()


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.HTTPError:
        return False


def _until(predicate: Callable[[], bool], timeout: float, what: str, every: Callable[[], None] | None = None) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        if every:
            every()
        time.sleep(0.2)
    return time.monotonic()


@dataclass
class Outcome:
    lost: int
    doubled: int
    settle_s: float
    slowest_healthy_s: float
    restarts: int
    anchored_by_healthy: int  # batches the healthy host's sequencer appended during the fault


def _anchored_between(log: Path, start: float, end: float) -> int:
    """Batches a sequencer's log says it anchored between two times (its lines carry whole seconds)."""
    from datetime import datetime

    n = 0
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"event": "anchored"' in line:
            when = datetime.strptime(json.loads(line)["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
            n += int(start - 1 <= when <= end + 1)
    return n


def run_scenario(fault: Callable[[Net], None], heal: Callable[[Net], None], faulty: str) -> Outcome:
    healthy = "b" if faulty == "a" else "a"
    with three_hosts() as net, tempfile.TemporaryDirectory(prefix="anchorpipe-hosts-") as tmp, \
            deployment(net, Path(tmp)) as d:
        key = add_agency(d.state, "agency-a")
        pushers = {}
        for n, h in enumerate(("a", "b")):
            out = d.work / f"pushed-{h}.json"
            pushers[h] = (subprocess.Popen([*net.run_in(h), sys.executable, "-m", "tests.hosts.pusher",
                                            f"http://{HOSTS[h]}:8000", key, str(n * RECORDS_PER_HOST),
                                            str((n + 1) * RECORDS_PER_HOST), str(out)], cwd=ROOT, env=d.env), out)
        state = d.state
        _until(lambda: state.archived_records() >= 3_000, 120, "the first 3,000 proofs", d.supervise)
        fault_at = time.time()
        fault(net)
        _until(lambda: time.time() - fault_at >= FAULT_SECONDS, FAULT_SECONDS + 5, "the fault's end", d.supervise)
        heal(net)
        healed = time.time()
        total = 2 * RECORDS_PER_HOST
        for proc, _ in pushers.values():
            _until(lambda proc=proc: proc.poll() is not None, 300, "the pushers", d.supervise)
        _until(lambda: state.archived_records() >= total, 300, "every record archived", d.supervise)
        settled = time.time()
        time.sleep(3)  # a duplicate would surface now
        answers = {h: json.loads(out.read_text()) for h, (_, out) in pushers.items()}
        last_accept = max(when + took for a in answers.values() for when, took, status in a if status == 202)
        during = [took for when, took, _ in answers[healthy] if fault_at <= when <= healed]
        assert during, "the healthy host's agency pushed nothing during the fault: the load ended too soon"
        lost, doubled = _count(d, state, total)
        standby = _anchored_between(d.work / f"sequencer-{healthy}.log", fault_at, healed)
        # Settled: from the heal (or the last record accepted, if later) until every record is archived.
        return Outcome(lost, doubled, round(settled - max(healed, last_accept), 1), round(max(during), 2), d.restarts,
                       standby)


def _count(d: Deployment, state: PostgresState, total: int) -> tuple[int, int]:
    """(records without a verifying proof, batches in the log twice + records proved twice); each proof is
    verified against the log key."""
    os.environ.update({k: v for k, v in d.env.items() if k.startswith("AWS_")})  # open_store's S3 credentials
    archive, s3 = d.env["ANCHORPIPE_ARCHIVE"], d.env["ANCHORPIPE_S3_ENDPOINT"]
    store, log_store = open_store(archive, s3_endpoint=s3), open_store(archive + "/log", s3_endpoint=s3)
    vkeys = [d.signer.verifier()]
    reader = LogReader(log_store, vkeys)
    head = reader.head()
    reader.check_tiles(head)  # one linear log: the signed checkpoint covers every tile
    _witnessed(reader, head.checkpoint.size, d.witness_vkey)
    logged = Counter(parse_batch_entry(e)[0] for e in reader.entries(head.checkpoint.size))
    proved: Counter[str] = Counter()
    policy = Policy.of(vkeys, ["tlog"])
    for batch_id in logged:
        for line in store.get(bundle.bundle_key("agency-a", batch_id)).splitlines():
            proof = parse_proof(line)
            verify_proof(proof, policy, content_sha256=content_sha256({"i": int(proof.record.id.split("-")[1])}))
            proved[proof.record.id] += 1
    lost = sum(1 for i in range(total) if proved[f"rec-{i}"] == 0)
    doubled = sum(n - 1 for n in logged.values()) + sum(n - 1 for n in proved.values())
    return lost, doubled


def _witnessed(reader: LogReader, size: int, vkey: str) -> None:
    """After the heal the witness (on D) cosigns the whole log: one history, seen whole by an outsider."""
    from pipelines.core.cosignature import WitnessKey, verify_cosignatures

    def cosigned_whole() -> bool:
        head = reader.cosigned()
        return head is not None and head.checkpoint.size == size and \
            len(verify_cosignatures(head.note, [WitnessKey.parse(vkey)])) == 1

    _until(cosigned_whole, 60, f"the witness's cosignature on the log at size {size}")


SCENARIOS = {
    "A cut off mid-archive, then healed": ("a", lambda net: net.cut("a"), lambda net: net.heal("a")),
    "A partitioned from S3 only": ("a", lambda net: net.partition("a", S3), lambda net: net.unpartition("a", S3)),
    "B partitioned from PostgreSQL only": ("b", lambda net: net.partition("b", POSTGRES),
                                           lambda net: net.unpartition("b", POSTGRES)),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_network_fault_between_hosts_loses_nothing_and_doubles_nothing(scenario: str):
    faulty, fault, heal = SCENARIOS[scenario]
    outcome = run_scenario(fault, heal, faulty)
    print(f"\n| {scenario} | {outcome.lost} | {outcome.doubled} | {outcome.settle_s} | {outcome.slowest_healthy_s} "
          f"| {outcome.anchored_by_healthy} | {outcome.restarts} |")
    assert outcome.lost == 0 and outcome.doubled == 0, outcome
    assert outcome.anchored_by_healthy > 0, outcome  # the log grew during the fault: no single sequencer host


def test_latency_and_loss_between_a_and_d():
    """200 ms and 5 % loss on A's link (tc netem): needs the kernel's sch_netem, which some kernels lack."""
    with three_hosts() as net:
        res = subprocess.run([*net.run_in("a"), "tc", "qdisc", "add", "dev", net.link("a"), "root", "netem",
                              "delay", "200ms", "loss", "5%"], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"tc netem is not available on this kernel: {res.stderr.strip()}")
    outcome = run_scenario(lambda n: _netem(n, "add"), lambda n: _netem(n, "del"), "a")
    print(f"\n| 200 ms + 5 % loss A-D | {outcome.lost} | {outcome.doubled} | {outcome.settle_s} | "
          f"{outcome.slowest_healthy_s} | {outcome.anchored_by_healthy} | {outcome.restarts} |")
    assert outcome.lost == 0 and outcome.doubled == 0, outcome


def _netem(net: Net, op: str) -> None:
    args = ["delay", "200ms", "loss", "5%"] if op == "add" else []
    subprocess.run([*net.run_in("a"), "tc", "qdisc", op, "dev", net.link("a"), "root", "netem", *args], check=True)

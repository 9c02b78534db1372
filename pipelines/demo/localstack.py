"""The whole pipeline on one machine: PostgreSQL, Redis, an S3 server, the API, workers and beat.

Used by ``anchorpipe demo``, the end-to-end tests and the benchmarks. Every
process is our child in its own process group (so a kill takes its pool
children too), listens on a free port, and keeps its data in ``workdir``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.core.note import Signer
from pipelines.demo.services import PostgresCluster, free_port, moto_s3, redis_command, wait_for_port

BUCKET = "anchorpipe"

#: name → (queues, concurrency). The anchor queue has exactly one consumer: the log's sequencer.
DEFAULT_WORKERS = {"stages": ("seal,archive,reconcile,pull,webhooks", 2), "sequencer": ("anchor", 1)}
#: With external anchors and witnesses: the rounds in a process of their own (a tick never waits behind an
#: upgrade), and the witnessing in another (a slow witness never delays a round).
EXTERNAL_WORKERS = {"anchorer": ("external", 1), "upgrader": ("upgrade", 1), "witnesser": ("witness", 1)}


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    database_url: str
    redis_url: str
    s3_endpoint: str
    api_url: str
    signer: Signer
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    postgres: PostgresCluster | None = None

    @property
    def archive(self) -> str:
        return self.env["ANCHORPIPE_ARCHIVE"]

    def spawn(self, name: str, args: list[str], port: int | None = None) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("a")
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        if port is not None:
            wait_for_port(port, proc)
        return proc

    def start_worker(self, name: str, queues: str, concurrency: int, env: dict[str, str] | None = None) -> None:
        args = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues, "-c", str(concurrency),
                "-n", f"{name}@%h", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
        if env:
            saved, self.env = self.env, {**self.env, **env}
            try:
                self.spawn(name, args)
            finally:
                self.env = saved
        else:
            self.spawn(name, args)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group of ``name`` and reap it."""
        self._kill_together([name], sig)

    def stop(self) -> None:
        """SIGTERM to every process at once (each finishes its task meanwhile), then the servers last: workers
        may still be finishing with them."""
        self._kill_together([n for n in self.procs if n not in ("postgres", "redis")], signal.SIGTERM)
        self._kill_together([n for n in ("redis", "postgres") if n in self.procs], signal.SIGTERM)

    def _kill_together(self, names: list[str], sig: int) -> None:
        """``sig`` to each process group of ``names``, then reap each (SIGKILL after 15 s)."""
        procs = [self.procs.pop(name) for name in names]
        for proc in procs:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def start_redis(self, *, empty: bool = False) -> None:
        """(Re)start the stack's Redis on its port; ``empty`` deletes its data first (a new, blank server)."""
        import shutil

        port = _port(self.redis_url)
        data = self.workdir / "redis-data"
        if empty:
            shutil.rmtree(data, ignore_errors=True)
        self.spawn("redis", redis_command(port, data), port=port)

    def start_postgres(self) -> None:
        """(Re)start the stack's PostgreSQL on its port and data folder."""
        assert self.postgres is not None
        self.postgres.wait_released()  # after a kill, the old postmaster's pid must be gone first
        port = _port(self.database_url)
        self.spawn("postgres", self.postgres.command(port), port=port)
        self.postgres.wait_ready(port)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@contextmanager
def local_stack(workdir: Path, *, workers: dict[str, tuple[str, int]] | None = None, beat: bool = True,
                signer: Signer | None = None, **settings: str) -> Iterator[Stack]:
    """Start everything; ``settings`` are extra ANCHORPIPE_* values (e.g. BATCH_INTERVAL="0.5"); ``signer``:
    the log's key (a new one by default)."""
    from pipelines.storage.s3 import create_bucket

    from pipelines.state.schema import upgrade

    with ExitStack() as stack:
        cluster = PostgresCluster(workdir)
        stack.callback(cluster.remove)
        database_url, redis_url = cluster.url(free_port()), f"redis://127.0.0.1:{free_port()}/0"
        endpoint = stack.enter_context(moto_s3(workdir))
        signer = signer or Signer.generate("anchorpipe.local/log")
        key_file = workdir / "log.key"
        key_file.write_text(signer.text() + "\n")
        key_file.chmod(0o600)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "anchorpipe", "AWS_SECRET_ACCESS_KEY": "anchorpipe",
               "AWS_DEFAULT_REGION": "us-east-1", "ANCHORPIPE_REDIS_URL": redis_url,
               "ANCHORPIPE_DATABASE_URL": database_url,
               "ANCHORPIPE_ARCHIVE": f"s3://{BUCKET}/archive", "ANCHORPIPE_S3_ENDPOINT": endpoint,
               "ANCHORPIPE_LOG_KEY_FILE": str(key_file)}
        env.update({f"ANCHORPIPE_{k.upper()}": str(v) for k, v in settings.items()})
        create_bucket(BUCKET, endpoint_url=endpoint, object_lock=True, aws_access_key_id="anchorpipe",
                      aws_secret_access_key="anchorpipe")
        api_port = free_port()
        stack_ = Stack(workdir, env, database_url, redis_url, endpoint, f"http://127.0.0.1:{api_port}", signer,
                       postgres=cluster)
        stack.callback(stack_.stop)
        stack_.start_postgres()
        upgrade(database_url)
        stack_.start_redis()
        stack_.spawn("api", [sys.executable, "-m", "uvicorn", "pipelines.api.app:app", "--host", "127.0.0.1",
                             "--port", str(api_port), "--log-level", "warning"], port=api_port)
        for name, (queues, concurrency) in (DEFAULT_WORKERS if workers is None else workers).items():
            stack_.start_worker(name, queues, concurrency)
        if beat:
            stack_.spawn("beat", [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel",
                                  "WARNING", "-s", str(workdir / "beat-schedule")])
        yield stack_

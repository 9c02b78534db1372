"""Starting local services as child processes (for the demo, benchmarks and tests).

Each service runs in the foreground as our child on a free port, with its data
in a folder we own, so stopping it is a kill of one PID.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with status {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


@contextmanager
def child(args: list[str], port: int, log_file: Path) -> Iterator[subprocess.Popen]:
    """Run ``args`` as a child until the block ends; wait until it listens on ``port``."""
    with log_file.open("w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def redis_command(port: int, data: Path, *, appendonly: bool = True, host: str = "127.0.0.1",
                  password: str | None = None) -> list[str]:
    """redis-server in the foreground on ``port`` with its files in ``data`` (AOF, fsync on every write); on an
    address other than loopback it needs a ``password`` (Redis's protected mode refuses other hosts without)."""
    import shutil

    from pipelines.errors import ConfigError

    if shutil.which("redis-server") is None:
        raise ConfigError("redis-server is not installed (Debian: apt-get install -y redis-server)")
    data.mkdir(parents=True, exist_ok=True)
    return ["redis-server", "--bind", host, "--port", str(port), "--dir", str(data), "--save", "",
            "--appendonly", "yes" if appendonly else "no", "--appendfsync", "always", "--daemonize", "no",
            *(["--requirepass", password] if password else [])]


@contextmanager
def redis_server(workdir: Path, *, appendonly: bool = True) -> Iterator[str]:
    """A private redis-server (AOF, fsync on every write) on a free port; yields its URL."""
    port = free_port()
    with child(redis_command(port, workdir / f"redis-{port}", appendonly=appendonly), port,
               workdir / f"redis-{port}.log"):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def moto_s3(workdir: Path) -> Iterator[str]:
    """moto's standalone S3 server on a free port; yields its endpoint URL."""
    port = free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with child(args, port, workdir / "moto.log"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def tsa_server(workdir: Path) -> Iterator[tuple[str, Path]]:
    """A local RFC 3161 TSA (OpenSSL, see pipelines.demo.tsa) on a free port; yields its URL and root file."""
    from pipelines.demo.tsa import make_tsa

    folder = workdir / "tsa"
    root = make_tsa(folder)
    port = free_port()
    with child([sys.executable, "-m", "pipelines.demo.tsa", str(folder), "--port", str(port)], port,
               workdir / "tsa.log"):
        yield f"http://127.0.0.1:{port}/", root


@dataclass(frozen=True)
class LocalWitness:
    """A witness made by :func:`witness_server`: its URL, verifier key text, and what restarts it."""

    name: str
    url: str
    vkey: str
    command: list[str]
    port: int


def witness_command(workdir: Path, name: str, log_vkeys: list[str], port: int, rate: float = 0) -> tuple[list[str], str]:
    """The command running witness ``name`` (key and state kept in ``workdir/<name>``; the key made on first
    use) for the logs of ``log_vkeys``, and its verifier key."""
    from pipelines.core.cosignature import Cosigner

    folder = workdir / name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "witness.key"
    if not key_file.exists():
        key_file.write_text(Cosigner.generate(name).text() + "\n")
        key_file.chmod(0o600)
    vkey = Cosigner.parse(key_file.read_text().strip()).verifier().text()
    args = [sys.executable, "-m", "pipelines.cli", "witness", "serve", "--key", str(key_file),
            "--state", str(folder / "state.db"), "--port", str(port), "--rate", str(rate)]
    if not (folder / "state.db").exists():  # a new witness (a restart runs the same command: the file is there)
        args.append("--init")
    for v in log_vkeys:
        args += ["--log", v]
    return args, vkey


@contextmanager
def witness_server(workdir: Path, name: str, log_vkeys: list[str], rate: float = 0) -> Iterator[LocalWitness]:
    """A witness (``anchorpipe witness serve``) on a free port for the logs of ``log_vkeys`` (``rate``: its
    per-client request limit, none by default)."""
    port = free_port()
    args, vkey = witness_command(workdir, name, log_vkeys, port, rate)
    with child(args, port, workdir / f"{name.replace('/', '_')}.log"):
        yield LocalWitness(name, f"http://127.0.0.1:{port}", vkey, args, port)


ANVIL_PACKAGE = "@foundry-rs/anvil@1.7.1"


def anvil_binary() -> str:
    """anvil from ``make``'s npm install (.tools/), ANCHORPIPE_ANVIL, or the PATH."""
    import os
    import shutil

    from pipelines.errors import ConfigError

    here = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "anvil"
    for candidate in (os.environ.get("ANCHORPIPE_ANVIL"), str(here), shutil.which("anvil")):
        if candidate and Path(candidate).exists():
            return candidate
    raise ConfigError(f"anvil is not installed: `make` installs it (npm install --prefix .tools {ANVIL_PACKAGE})")


def anvil_command(port: int, *, block_time: float | None = None, state: Path | None = None) -> list[str]:
    """A local EVM node (chain id 31337): mines a block per transaction, or every ``block_time`` seconds;
    with ``state``, keeps its chain in that file across restarts."""
    args = [anvil_binary(), "--host", "127.0.0.1", "--port", str(port), "--silent"]
    if block_time:
        args += ["--block-time", str(block_time)]
    if state:
        args += ["--state", str(state)]
    return args


@contextmanager
def anvil_node(workdir: Path, *, block_time: float | None = None) -> Iterator[str]:
    """anvil on a free port; yields its JSON-RPC URL."""
    port = free_port()
    with child(anvil_command(port, block_time=block_time), port, workdir / f"anvil-{port}.log"):
        yield f"http://127.0.0.1:{port}"


def fund(rpc_url: str, address: str, wei: int = 10**21) -> None:
    """Give a dev-node account ``wei`` (anvil_setBalance: local nodes only)."""
    import httpx

    httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance",
                              "params": [address, hex(wei)]}, timeout=10).raise_for_status()


class PostgresCluster:
    """A private PostgreSQL data folder made by ``initdb`` (fsync on), and how to run a server on it.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user
    (which Debian's package creates) with its data folder, outside root-only
    folders, owned by that user. :meth:`remove` deletes the folder.
    """

    def __init__(self, workdir: Path) -> None:
        import glob
        import os
        import shutil
        import tempfile

        from pipelines.errors import ConfigError

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not bins:
            raise ConfigError("PostgreSQL server binaries are missing (Debian: apt-get install -y postgresql)")
        self.bin = bins[-1]
        self.as_user: list[str] = []
        self.data = Path(tempfile.mkdtemp(prefix="anchorpipe-pg-", dir=None if os.geteuid() == 0 else workdir))
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, f"{self.bin}/initdb", "-D", str(self.data / "db"), "-A", "trust", "-U",
                        "postgres", "-E", "UTF8", "--no-locale"], check=True, capture_output=True)

    def command(self, port: int, host: str = "127.0.0.1") -> list[str]:
        return [*self.as_user, f"{self.bin}/postgres", "-D", str(self.data / "db"), "-p", str(port), "-k",
                str(self.data), "-h", host, "-c", "fsync=on", "-c", "synchronous_commit=on",
                "-c", "max_connections=200", "-c", "shared_buffers=512MB"]

    def wait_ready(self, port: int, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
        """Wait until the server on ``port`` accepts connections: it listens a moment before it does, and
        answers "the database system is starting up" meanwhile (and during crash recovery)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run([f"{self.bin}/pg_isready", "-q", "-h", host, "-p", str(port)]).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"PostgreSQL on port {port} did not accept connections within {timeout:.0f} s")

    def wait_released(self, timeout: float = 30.0) -> None:
        """Wait until a killed server's processes are gone (a new one refuses to start while its pid lives)."""
        import os

        deadline = time.monotonic() + timeout
        try:
            pid = int((self.data / "db" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(0.1)

    @staticmethod
    def url(port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.data, ignore_errors=True)


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A private PostgreSQL (``initdb`` in a fresh folder) on a free port; yields its URL."""
    cluster = PostgresCluster(workdir)
    try:
        port = free_port()
        with child(cluster.command(port), port, workdir / f"postgres-{port}.log"):
            cluster.wait_ready(port)
            yield cluster.url(port)
    finally:
        cluster.remove()

"""The systemd units' processes under a supervisor with their restart semantics (supervisord, as systemd cannot
run here): killing any one process leaves the others serving, and the killed one comes back on its own."""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import httpx
import pytest

from pipelines.core.note import Signer
from pipelines.demo.services import free_port, moto_s3, postgres_server, redis_server, wait_for_port
from pipelines.intake.auth import add_agency
from pipelines.state.postgres import PostgresState
from pipelines.state.schema import upgrade
from tests.system.test_stack import push, wait_for
from tests.support.paths import ROOT

pytestmark = pytest.mark.system  # it runs the Procfile's processes

UNITS = ROOT / "infra" / "systemd"
#: The instances of the worker template a machine runs (docs/operations.md).
WORKER_INSTANCES = ("seal", "archive", "reconcile")


def units(key_dir: Path, api_port: int, tmp: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """name → (command, environment) for every unit, as systemd would start it here."""
    out = {}
    for path in sorted(UNITS.glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read(path)
        service = parser["Service"]
        assert service["Restart"] == "always", path.name  # what the supervisor below mirrors
        names = [path.stem.replace("@", f"@{i}") for i in WORKER_INSTANCES] if "@" in path.stem else [path.stem]
        for name in names:
            instance = name.split("@")[1] if "@" in name else ""
            command = (service["ExecStart"].replace("/opt/anchorpipe/.venv/bin/", f"{Path(sys.executable).parent}/")
                       .replace("%i", instance).replace("%H", socket.gethostname())
                       .replace("--host 0.0.0.0", "--host 127.0.0.1")
                       .replace("--port 8000", f"--port {api_port}")
                       .replace("/var/lib/anchorpipe/beat-schedule", str(tmp / "beat-schedule")))
            env = {}
            for assignment in service.get("Environment", "").split():
                k, v = assignment.split("=", 1)
                env[k] = v.replace("%d", str(key_dir)).replace("%i", instance).replace("/run/", f"{tmp}/run/")
            if "ANCHORPIPE_METRICS_PORT" in env:  # the unit's port may be taken on this machine
                env["ANCHORPIPE_METRICS_PORT"] = str(free_port())
            if "ANCHORPIPE_LOG_KEY_FILE" in service.get("UnsetEnvironment", ""):
                env.setdefault("ANCHORPIPE_LOG_KEY_FILE", "")
            out[name.replace("@", "-")] = (command, env)
    return out


def supervisord_conf(programs: dict[str, tuple[str, dict[str, str]]], tmp: Path) -> Path:
    lines = ["[supervisord]", f"logfile={tmp / 'supervisord.log'}", f"pidfile={tmp / 'supervisord.pid'}",
             "nodaemon=true", "[unix_http_server]", f"file={tmp / 'supervisor.sock'}",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface"]
    for name, (command, env) in programs.items():
        environment = ",".join(f'{k}="{v}"' for k, v in env.items())
        lines += [f"[program:{name}]", f"command={command.replace('%', '%%')}", "autorestart=true",
                  "startsecs=1", "startretries=100", "stopasgroup=true", "killasgroup=true", "redirect_stderr=true",
                  f"stdout_logfile={tmp / (name + '.log')}"]
        if environment:
            lines.append(f"environment={environment.replace('%', '%%')}")
    path = tmp / "supervisord.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host):  # type: ignore[no-untyped-def]
        import http.client
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(conn) -> None:
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.connect(self.path)

        return Conn("localhost")


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_killing_any_one_process_leaves_the_others_serving(tmp_path: Path):
    pytest.importorskip("supervisor")
    with postgres_server(tmp_path) as database_url, redis_server(tmp_path) as redis_url, moto_s3(tmp_path) as s3:
        upgrade(database_url)
        import boto3

        boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="supervised")
        key_dir = tmp_path / "credentials"
        key_dir.mkdir()
        (key_dir / "log.key").write_text(Signer.generate("supervised.test/log").text())
        api_port = free_port()
        programs = units(key_dir, api_port, tmp_path)
        assert set(programs) == {"anchorpipe-api", "anchorpipe-beat", "anchorpipe-sequencer",
                                 *(f"anchorpipe-worker-{i}" for i in WORKER_INSTANCES)}
        env = {**os.environ, "ANCHORPIPE_DATABASE_URL": database_url, "ANCHORPIPE_REDIS_URL": redis_url,
               "ANCHORPIPE_ARCHIVE": "s3://supervised/a", "ANCHORPIPE_S3_ENDPOINT": s3,
               "ANCHORPIPE_BATCH_INTERVAL": "0.3", "ANCHORPIPE_STUCK_AFTER": "3", "AWS_ACCESS_KEY_ID": "k",
               "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
        env.pop("ANCHORPIPE_METRICS_PORT", None)
        conf = supervisord_conf(programs, tmp_path)
        sup = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(api_port, sup, timeout=60)
            rpc = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(str(tmp_path / "supervisor.sock")))
            state = PostgresState.connect(database_url)
            key = add_agency(state, "agency-a")
            api = f"http://127.0.0.1:{api_port}"
            push(api, key, 0, 50)
            wait_for(lambda: state.archived_records() >= 50, 90, "the first proofs")
            archived, start = 50, 50
            for victim in ("anchorpipe-sequencer", "anchorpipe-worker-archive", "anchorpipe-api"):
                pid = rpc.supervisor.getProcessInfo(victim)["pid"]
                os.killpg(pid, signal.SIGKILL)  # the process and its pool children, as the OOM killer might
                if victim != "anchorpipe-api":  # the others keep serving: intake answers at once
                    push(api, key, start, 50)
                    start += 50
                wait_for(lambda v=victim, p=pid: rpc.supervisor.getProcessInfo(v)["statename"] == "RUNNING"
                         and rpc.supervisor.getProcessInfo(v)["pid"] != p, 30, f"{victim} restarted")
                wait_for(lambda: _healthy(api), 30, f"the API answering after killing {victim}")
                archived = start
                wait_for(lambda n=archived: state.archived_records() >= n, 90, f"every proof after killing {victim}")
            assert state.archived_records() == archived == 150
        finally:
            os.killpg(sup.pid, signal.SIGTERM)
            sup.wait(timeout=60)

"""The README's Redis, from the shipped infra/redis/redis.conf (but for its port and folder): it starts, keeps an append-only file, never evicts a message in
flight, and saves no snapshots."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from pipelines.demo.services import free_port, wait_for_port
from tests.support.paths import ROOT

pytestmark = pytest.mark.system


def test_a_redis_from_the_shipped_config_runs_as_documented(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is needed (Debian's redis-server: make system-deps)")
    shipped = (ROOT / "infra" / "redis" / "redis.conf").read_text()
    assert "port 6380" in shipped and "bind 127.0.0.1" in shipped  # what the README's .env line names
    port = free_port()
    config = shipped.replace("port 6380", f"port {port}").replace("dir /var/lib/anchorpipe-redis", f"dir {tmp_path}")
    assert config.count(str(tmp_path)) == 1  # Redis enters its folder as it reads the line: it must exist
    (tmp_path / "redis.conf").write_text(config)
    proc = subprocess.Popen([server, str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        r = redis.Redis(port=port, socket_timeout=5)
        assert r.ping()
        settings = {k: r.config_get(k)[k] for k in ("appendonly", "maxmemory-policy", "save", "appendfsync")}
        assert settings == {"appendonly": "yes", "maxmemory-policy": "noeviction", "save": "",
                            "appendfsync": "everysec"}
        r.lpush("seal", "a tick")
        assert r.llen("seal") == 1 and any(tmp_path.rglob("*.aof"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

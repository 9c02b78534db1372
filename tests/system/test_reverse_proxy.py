"""The documented nginx in front of the API (infra/nginx/anchorpipe.conf), run as shipped but for its ports:
it parses, it closes connections that never finish their headers (slowloris) at its header timeout while the
API stays reachable through it, it caps requests per address, and it passes the client's address on."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pipelines.demo.services import free_port, wait_for_port
from tests.support.paths import ROOT

pytestmark = pytest.mark.system

SHIPPED = (ROOT / "infra" / "nginx" / "anchorpipe.conf").read_text()
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Upstream(ThreadingHTTPServer):
    """Stands in for the API: answers every GET 200, after ``delay`` seconds, with the X-Forwarded-For it got."""

    daemon_threads = True
    request_queue_size = 256  # nginx opens its 64 connections at once (the default backlog, 5, drops SYNs)

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.seen = delay, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.seen.append(self.headers.get("X-Forwarded-For"))
                time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def proxy(tmp_path):
    """nginx running the shipped server block, on a free port, in front of an Upstream; yields (url, upstream)."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is needed (Debian's nginx-light: make system-deps)")
    upstream = Upstream(delay=3.0)
    port = free_port()
    site = SHIPPED.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace(
        "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream.server_address[1]};")
    assert site != SHIPPED
    (tmp_path / "anchorpipe.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(f"""
        user root; worker_processes 1; daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;
        worker_rlimit_nofile 8192;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
            fastcgi_temp_path {tmp_path}/fastcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
            include {tmp_path}/anchorpipe.conf;
        }}""")
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}", upstream
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        upstream.shutdown()


def test_connections_that_never_finish_their_headers_are_closed_and_the_api_stays_reachable(proxy):
    url, upstream = proxy
    port = int(url.rsplit(":", 1)[1])
    upstream.delay = 0.0
    slow = []
    for _ in range(1500):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the end of the headers
        slow.append(s)
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # 1,500 slow clients cost the API nothing
    assert upstream.seen and len(upstream.seen) == 1  # none of them reached it
    def closed(s: socket.socket) -> bool:  # by nginx, at its header timeout: end of stream (or a 408)
        s.settimeout(max(0.1, started + 20 - time.monotonic()))
        try:
            data = s.recv(1024)
        except (TimeoutError, ConnectionResetError):
            return False
        return data == b"" or data.startswith(b"HTTP/1.1 408")

    assert all(closed(s) for s in slow)
    took = time.monotonic() - started
    assert 8 < took < 20, f"closed after {took:.1f} s, the shipped header timeout is 10 s"
    for s in slow:
        s.close()


def test_requests_per_address_are_capped_and_the_address_passed_on(proxy):
    url, upstream = proxy  # the upstream answers after 3 s: requests pile up
    port = int(url.rsplit(":", 1)[1])
    # 80 connections opened, then 80 requests written in a few milliseconds, all in flight while the upstream
    # sleeps: how many overlap does not depend on how fast this machine starts threads or clients.
    conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(80)]
    for c in conns:
        c.sendall(b"GET /v1/records/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    results = []
    for c in conns:
        with c, c.makefile("rb") as answer:
            results.append(int(answer.readline().split()[1]))
    assert results.count(429) == 16 and results.count(200) == 64, sorted(set(results))
    assert set(upstream.seen) == {"127.0.0.1"}

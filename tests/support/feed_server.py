"""A real HTTP server playing an agency's JSON feed, with faults a test can schedule."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Feed:
    """Serves ``records`` after ``?after=<index>`` in pages of ``?limit=``; ``faults`` is a queue of
    actions for the next requests: ("status", code[, retry_after]), ("slow", seconds), ("truncate",),
    ("body", raw bytes)."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records
        self.faults: list[tuple] = []
        self.requests = 0
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                feed.requests += 1
                if self.headers.get("X-Token") != "s3cret":
                    return self._send(401, b'{"error": "unauthorized"}')
                fault = feed.faults.pop(0) if feed.faults else None
                if fault and fault[0] == "status":
                    headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                    return self._send(fault[1], b"{}", headers)
                if fault and fault[0] == "slow":
                    time.sleep(fault[1])
                query = parse_qs(urlparse(self.path).query)
                after = int(query.get("after", ["-1"])[0])
                limit = int(query.get("limit", ["100"])[0])
                items = feed.records[after + 1:after + 1 + limit]
                nxt = after + len(items)
                body = json.dumps({"data": {"items": items, "next": str(nxt)}}).encode()
                if fault and fault[0] == "truncate":
                    body = body[: len(body) // 2]
                if fault and fault[0] == "body":  # a page exactly as given
                    body = fault[1]
                self._send(200, body)

            def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/records"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

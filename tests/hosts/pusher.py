"""An agency system on one host: pushes records rec-START..rec-END to its API in chunks, retrying what is not
accepted (the API down, 503s, a link cut), and writes what it saw: each answer's time and how long it took.

    python -m tests.hosts.pusher API_URL KEY START END OUT.json
"""

from __future__ import annotations

import json
import sys
import time

import httpx

CHUNK = 500
RATE = 500  # records a second, each host: 10,000 take about 20 s, so a fault lands with the stream under way


def main(api: str, key: str, start: int, end: int, out: str) -> None:
    answers: list[tuple[float, float, int]] = []  # (when, seconds, status; 0: no answer)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
        for first in range(start, end, CHUNK):
            body = "\n".join(json.dumps({"id": f"rec-{i}", "content": {"i": i}})
                             for i in range(first, min(first + CHUNK, end)))
            while True:
                t = time.time()
                try:
                    status = client.post(f"{api}/v1/records", content=body, headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                answers.append((t, time.time() - t, status))
                if status == 202:
                    break
                time.sleep(0.2)
            time.sleep(CHUNK / RATE)  # an agency's steady flow, not a flood: the faults land mid-stream
    with open(out, "w") as f:
        json.dump(answers, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

"""The agency's Python client of the intake API (``from anchorpipe.client import Client``), sync and async.

Submitting is idempotent (a record sent twice gets a ``duplicate`` receipt, never a
second commitment), so every transient failure (the network, 429 with its
``Retry-After``, 502/503/504) is retried with exponential backoff and jitter.
Records are sent in chunks from any iterable, never all held in memory. Errors
the caller must act on are raised as :class:`ClientError` subclasses naming what
is wrong: :class:`AuthError`, :class:`Conflict` (the id),
:class:`ValidationError` (each record's index and field), :class:`NotFound`,
:class:`Unavailable` (still failing after the retries).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

#: Records per request (the server's ANCHORPIPE_MAX_RECORDS_PER_REQUEST is 50,000 by default).
CHUNK = 2_000
#: Bytes per request at most (the server's ANCHORPIPE_MAX_BODY_BYTES is 64 MiB by default).
CHUNK_BYTES = 8 << 20
RETRY_STATUSES = (429, 502, 503, 504)


class ClientError(Exception):
    """An answer the caller must act on; ``problem`` is the server's RFC 9457 object, if any."""

    def __init__(self, message: str, problem: dict[str, Any] | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.problem, self.status = problem or {}, status


class AuthError(ClientError):
    """The key is missing, unknown, revoked or expired (401), or may not do this (403)."""


class Conflict(ClientError):
    """``record_id`` was accepted before with other content; nothing of the request was stored."""

    @property
    def record_id(self) -> str:
        return str(self.problem.get("id", ""))


@dataclass(frozen=True)
class FieldProblem:
    index: int  # the record's index in the submitted iterable
    field: str
    message: str


class ValidationError(ClientError):
    """Records are not valid (``problems``, by index in the iterable and field); nothing of their chunk was
    stored."""

    def __init__(self, message: str, problems: list[FieldProblem], problem: dict[str, Any] | None = None) -> None:
        super().__init__(message, problem, 422)
        self.problems = problems


class NotFound(ClientError):
    """No such record (or one this key may not read)."""


class Unavailable(ClientError):
    """The API kept failing (network, 5xx, 429) through every retry."""


@dataclass(frozen=True)
class Receipt:
    id: str
    leaf_hash: str
    status: str  # accepted or duplicate
    proof_url: str


@dataclass
class Submission:
    accepted: int = 0
    duplicates: int = 0
    receipts: list[Receipt] = field(default_factory=list)

    def add(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        self.accepted += receipt.status == "accepted"
        self.duplicates += receipt.status == "duplicate"


@dataclass(frozen=True)
class RecordStatus:
    id: str
    status: str  # pending, sealing, sealed, anchored, archived
    batch: str | None
    confirmed: tuple[str, ...]  # anchor kinds its newest proof carries
    pending: tuple[str, ...]  # kinds still to come
    proof: dict[str, Any] | None


def chunks(records: Iterable[dict[str, Any]], size: int = CHUNK, max_bytes: int = CHUNK_BYTES
           ) -> Iterator[tuple[int, list[bytes]]]:
    """(index of the chunk's first record, its NDJSON lines), read lazily from ``records``."""
    start, nbytes, n = 0, 0, 0
    lines: list[bytes] = []
    for n, record in enumerate(records):
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        if lines and (len(lines) >= size or nbytes + len(line) > max_bytes):
            yield start, lines
            start, lines, nbytes = n, [], 0
        lines.append(line)
        nbytes += len(line) + 1
    if lines:
        yield start, lines


class _Attempts:
    """One request's attempts, decided without I/O so that the sync and async clients share every decision:
    which answer is final, which error the caller must act on, how long to wait, when to give up."""

    def __init__(self, client: _Base, method: str, path: str, start: int) -> None:
        self.client, self.what, self.start = client, f"{method} {path}", start
        self.attempt, self.last = 0, "no attempt"
        self.retry_after: str | None = None

    def settled(self, resp: httpx.Response) -> bool:
        """True when ``resp`` is the answer; raises the ClientError of a final refusal; False to retry."""
        if resp.status_code < 400:
            return True
        if resp.status_code not in RETRY_STATUSES or _too_big(resp):
            raise _error(resp, self.start)
        self.last, self.retry_after = f"{resp.status_code}", resp.headers.get("retry-after")
        return False

    def failed(self, exc: httpx.TransportError) -> None:
        self.last, self.retry_after = type(exc).__name__, None

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; Unavailable once every retry is spent."""
        c = self.client
        if self.attempt >= c.retries:
            raise Unavailable(f"{self.what}: still failing after {c.retries + 1} attempts ({self.last})")
        self.attempt += 1
        if self.retry_after and self.retry_after.strip().isdigit():
            return min(float(self.retry_after), c.max_backoff)  # as the server asks, within reason
        return min(c.max_backoff, c.backoff * 2.0 ** (self.attempt - 1)) * random.uniform(0.5, 1.0)


def _too_big(resp: httpx.Response) -> bool:
    """A 429 for a request that alone is over the agency's rate limit: waiting never helps (send smaller
    chunks: ``Client(..., chunk=N)``)."""
    return resp.status_code == 429 and "request-over-rate-limit" in resp.text


def _error(resp: httpx.Response, start: int = 0) -> ClientError:
    try:
        problem = resp.json()
    except ValueError:
        problem = {"detail": resp.text[:300]}
    detail = str(problem.get("detail", resp.reason_phrase))
    if resp.status_code in (401, 403):
        return AuthError(detail, problem, resp.status_code)
    if resp.status_code == 404:
        return NotFound(detail, problem, 404)
    if resp.status_code == 409:
        return Conflict(detail, problem, 409)
    if resp.status_code == 422 and "problems" in problem:
        problems = [FieldProblem(start + p["index"], p["field"], p["message"]) for p in problem["problems"]]
        return ValidationError(detail + "".join(f"; record {p.index} {p.field}: {p.message}" for p in problems[:5]),
                               problems, problem)
    return ClientError(f"{resp.status_code}: {detail}", problem, resp.status_code)


def _receipts(resp: httpx.Response) -> list[Receipt]:
    return [Receipt(**r) for r in resp.json()["receipts"]]


def _status(doc: dict[str, Any]) -> RecordStatus:
    anchors = doc.get("anchors", {})
    return RecordStatus(doc["id"], doc["status"], doc.get("batch"), tuple(anchors.get("confirmed", ())),
                        tuple(anchors.get("pending", ())), doc.get("proof"))


def _done(status: RecordStatus, anchors: Iterable[str]) -> bool:
    return status.status == "archived" and set(anchors) <= set(status.confirmed)


class _Base:
    def __init__(self, api_url: str, key: str, *, retries: int = 8, backoff: float = 0.5, max_backoff: float = 30.0,
                 chunk: int = CHUNK, chunk_bytes: int = CHUNK_BYTES) -> None:
        if not key:
            raise AuthError("an API key is required")
        self.api_url = api_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.chunk, self.chunk_bytes = chunk, chunk_bytes

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.api_url!r})"

    @staticmethod
    def _record_path(record_id: str) -> str:
        return f"/v1/records/{quote(record_id, safe='')}"

    @staticmethod
    def _proof_of(status: RecordStatus) -> dict[str, Any]:
        if status.proof is None:
            raise NotFound(f"record {status.id!r} has no proof yet (status {status.status})")
        return status.proof

    @staticmethod
    def _timed_out(waiting: list[str], wanted: tuple[str, ...], timeout: float) -> TimeoutError:
        return TimeoutError(f"{len(waiting)} record(s) still without {', '.join(wanted)} after {timeout:.0f} s "
                            f"(first: {waiting[0]!r})")


class Client(_Base):
    """The synchronous client. ``with Client(url, key) as c: c.submit(records)``."""

    def __init__(self, api_url: str, key: str, *, timeout: float = 60.0, **options: Any) -> None:
        super().__init__(api_url, key, **options)
        self.http = httpx.Client(timeout=timeout, headers=self.headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, start: int = 0, **kwargs: Any) -> httpx.Response:
        attempts = _Attempts(self, method, path, start)
        while True:
            try:
                resp = self.http.request(method, self.api_url + path, **kwargs)
            except httpx.TransportError as exc:
                attempts.failed(exc)
            else:
                if attempts.settled(resp):
                    return resp
            time.sleep(attempts.next_delay())

    def send_chunk(self, start: int, lines: list[bytes]) -> list[Receipt]:
        """One request of NDJSON ``lines`` (records ``start``.. of the caller's iterable)."""
        resp = self._request("POST", "/v1/records", start, content=b"\n".join(lines),
                             headers={"Content-Type": "application/x-ndjson"})
        return _receipts(resp)

    def enqueue(self, records: Iterable[dict[str, Any]]) -> Iterator[Receipt]:
        """Submit ``records`` (dicts ``{"id", "content"}`` or ``{"id", "sha256"}``) in chunks, yielding each
        receipt as its chunk is accepted."""
        for start, lines in chunks(records, self.chunk, self.chunk_bytes):
            yield from self.send_chunk(start, lines)

    def submit(self, records: Iterable[dict[str, Any]]) -> Submission:
        """Submit every record; the receipts and counts."""
        out = Submission()
        for r in self.enqueue(records):
            out.add(r)
        return out

    def status(self, record_id: str) -> RecordStatus:
        return _status(self._request("GET", self._record_path(record_id)).json())

    def get_proof(self, record_id: str) -> dict[str, Any]:
        """The record's newest proof (JSON); NotFound while it is not archived yet."""
        return self._proof_of(self.status(record_id))

    def wait(self, ids: Iterable[str], *, anchors: Iterable[str] = ("tlog",), timeout: float = 600.0,
             poll: float = 1.0) -> dict[str, RecordStatus]:
        """Return once every record of ``ids`` is archived with at least ``anchors`` confirmed (e.g.
        ``("tlog", "witness", "tsa", "evm")``); TimeoutError naming how many are still waiting."""
        wanted, waiting = tuple(anchors), list(dict.fromkeys(ids))
        done: dict[str, RecordStatus] = {}
        deadline = time.monotonic() + timeout
        while waiting:
            still = []
            for record_id in waiting:
                s = self.status(record_id)
                (done.__setitem__(record_id, s) if _done(s, wanted) else still.append(record_id))
            waiting = still
            if waiting:
                if time.monotonic() > deadline:
                    raise self._timed_out(waiting, wanted, timeout)
                time.sleep(poll)
        return done


class AsyncClient(_Base):
    """The asynchronous client (asyncio, httpx.AsyncClient), with the same methods as :class:`Client`."""

    def __init__(self, api_url: str, key: str, *, timeout: float = 60.0, **options: Any) -> None:
        super().__init__(api_url, key, **options)
        self.http = httpx.AsyncClient(timeout=timeout, headers=self.headers)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, start: int = 0, **kwargs: Any) -> httpx.Response:
        attempts = _Attempts(self, method, path, start)
        while True:
            try:
                resp = await self.http.request(method, self.api_url + path, **kwargs)
            except httpx.TransportError as exc:
                attempts.failed(exc)
            else:
                if attempts.settled(resp):
                    return resp
            await asyncio.sleep(attempts.next_delay())

    async def enqueue(self, records: Iterable[dict[str, Any]]) -> AsyncIterator[Receipt]:
        for start, lines in chunks(records, self.chunk, self.chunk_bytes):
            resp = await self._request("POST", "/v1/records", start, content=b"\n".join(lines),
                                       headers={"Content-Type": "application/x-ndjson"})
            for r in _receipts(resp):
                yield r

    async def submit(self, records: Iterable[dict[str, Any]]) -> Submission:
        out = Submission()
        async for r in self.enqueue(records):
            out.add(r)
        return out

    async def status(self, record_id: str) -> RecordStatus:
        return _status((await self._request("GET", self._record_path(record_id))).json())

    async def get_proof(self, record_id: str) -> dict[str, Any]:
        return self._proof_of(await self.status(record_id))

    async def wait(self, ids: Iterable[str], *, anchors: Iterable[str] = ("tlog",), timeout: float = 600.0,
                   poll: float = 1.0) -> dict[str, RecordStatus]:
        wanted, waiting = tuple(anchors), list(dict.fromkeys(ids))
        done: dict[str, RecordStatus] = {}
        deadline = time.monotonic() + timeout
        while waiting:
            statuses = await asyncio.gather(*(self.status(i) for i in waiting))
            done.update({s.id: s for s in statuses if _done(s, wanted)})
            waiting = [i for i in waiting if i not in done]
            if waiting:
                if time.monotonic() > deadline:
                    raise self._timed_out(waiting, wanted, timeout)
                await asyncio.sleep(poll)
        return done


def verify(proof: dict[str, Any] | str | bytes, record: Any = None, *, log_vkeys: Iterable[str],
           witness_vkeys: Iterable[str] = (), witness_quorum: int | None = None,
           require: Iterable[str] = ()) -> Any:
    """Verify a proof locally (pipelines.core.verify): the record's content (any JSON value) against it if
    given, under the pinned keys; the report, or VerificationError / NotAnchored saying why not."""
    from pipelines.core.commitment import content_sha256
    from pipelines.core.cosignature import WitnessKey
    from pipelines.core.note import Verifier
    from pipelines.core.proof import parse_proof
    from pipelines.core.policy import Policy
    from pipelines.core.verify import verify_proof

    raw = json.dumps(proof) if isinstance(proof, dict) else proof
    policy = Policy.of([Verifier.parse(v) for v in log_vkeys], require,
                       witnesses=[WitnessKey.parse(w) for w in witness_vkeys], witness_quorum=witness_quorum)
    digest = content_sha256(record) if record is not None else None
    return verify_proof(parse_proof(raw), policy, content_sha256=digest)

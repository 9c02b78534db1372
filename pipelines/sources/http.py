"""A JSON feed over HTTP(S), paged by a cursor parameter."""

from __future__ import annotations

import json

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from pipelines.core import jsontext
from pipelines.errors import AnchorpipeError, StorageError
from pipelines.ops.redact import redact
from pipelines.sources import Mapping, Page, dig
from pipelines.sources.config import HttpSource

MAX_RETRY_AFTER = 120.0


class FeedError(StorageError):
    """The feed answered badly; ``retry_after`` carries a 429's Retry-After in seconds."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message, transient=transient)
        self.retry_after = retry_after


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, FeedError) and exc.retry_after is not None:
        return min(exc.retry_after, MAX_RETRY_AFTER)
    return wait_random_exponential(multiplier=0.2, max=10)(state)


class HttpFeed:
    def __init__(self, cfg: HttpSource, transport: httpx.BaseTransport | None = None) -> None:
        self.cfg = cfg
        self.mapping = Mapping(cfg.id_field, cfg.content_field, cfg.sha256_field)
        headers = {}
        if cfg.auth_header:
            headers[cfg.auth_header] = cfg.auth_value() or ""
        self.client = httpx.Client(timeout=cfg.timeout, verify=cfg.verify_tls, headers=headers, transport=transport)
        self.url = redact(cfg.url)  # for messages and quarantine positions: never the URL's credentials

    def fetch(self, cursor: str | None, limit: int) -> Page:
        retrying = Retrying(stop=stop_after_attempt(self.cfg.retries + 1), wait=_wait, reraise=True,
                            retry=retry_if_exception(lambda e: isinstance(e, AnchorpipeError) and e.transient))
        doc = retrying(self._get, cursor, limit)
        try:
            items = dig(doc, self.cfg.items_path)
        except KeyError:
            raise FeedError(f"{self.cfg.name}: page has no {self.cfg.items_path!r}", transient=False) from None
        if not isinstance(items, list):
            raise FeedError(f"{self.cfg.name}: {self.cfg.items_path!r} is not a list", transient=False)
        try:
            next_cursor = dig(doc, self.cfg.next_cursor_path)
        except KeyError:
            next_cursor = None
        where = f"{self.url} {self.cfg.cursor_param}={cursor or ''}"
        pulled = [self.mapping.pulled(f"{where} item {i}", item) for i, item in enumerate(items)]
        more = next_cursor is not None and str(next_cursor) != (cursor or "") and len(items) > 0
        return Page(pulled, str(next_cursor) if next_cursor is not None else cursor, more)

    def _get(self, cursor: str | None, limit: int) -> object:
        params: dict[str, str | int] = {}
        if cursor is not None:
            params[self.cfg.cursor_param] = cursor
        if self.cfg.limit_param:
            params[self.cfg.limit_param] = limit
        try:
            with self.client.stream("GET", self.cfg.url, params=params) as resp:
                self._check_status(resp)
                body = self._read_capped(resp)
        except httpx.HTTPError as exc:  # connection refused, timeouts, broken transfers
            raise FeedError(f"{self.cfg.name}: {type(exc).__name__} from {self.url}", transient=True) from None
        return self._parse(body)

    def _check_status(self, resp: httpx.Response) -> None:
        if resp.status_code == 429:
            raise FeedError(f"{self.cfg.name}: 429 Too Many Requests", transient=True,
                            retry_after=_retry_after(resp.headers.get("retry-after")))
        if resp.status_code >= 500:
            raise FeedError(f"{self.cfg.name}: {resp.status_code} from {self.url}", transient=True)
        if resp.status_code != 200:
            raise FeedError(f"{self.cfg.name}: {resp.status_code} from {self.url}", transient=False)

    def _read_capped(self, resp: httpx.Response) -> bytes:
        """The body, refused once it grows past ``max_page_bytes`` (whatever Content-Length claims)."""
        cap = self.cfg.max_page_bytes
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise FeedError(f"{self.cfg.name}: page from {self.url} is larger than {cap} bytes "
                                "(max_page_bytes; lower page_size or raise the limit)", transient=False)
        return bytes(body)

    def _parse(self, body: bytes) -> object:
        """The page's JSON. Number, depth and Unicode rules are left to each item's validation (an item
        breaking them is quarantined alone); duplicate keys or NaN fail the whole page, which cannot be
        read unambiguously."""
        try:
            return jsontext.loads(body, walk=False)
        except jsontext.JSONTextError as exc:
            try:
                json.loads(body)
            except (ValueError, RecursionError):
                # A truncated or garbled page: retrying may get a whole one.
                raise FeedError(f"{self.cfg.name}: page is not JSON ({exc})", transient=True) from None
            raise FeedError(f"{self.cfg.name}: page breaks anchorpipe's JSON rules: {exc}", transient=False) from None

    def finish(self, units: list[str]) -> None:
        pass


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

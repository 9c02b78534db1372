"""New JSONL or CSV objects under an S3 prefix, each read once (by key and ETag), streamed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from pipelines.errors import StorageError
from pipelines.sources import Mapping, Page
from pipelines.sources.config import S3PrefixSource
from pipelines.sources.lines import parse_lines
from pipelines.storage.s3 import S3Store

CHUNK = 1 << 16


class _Stream:
    """readline()/tell() over an S3 body read in chunks, starting at byte ``offset``."""

    def __init__(self, chunks: Iterator[bytes], offset: int) -> None:
        self.chunks, self.pos, self.buf = chunks, offset, b""

    def tell(self) -> int:
        return self.pos

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.buf += chunk
        cut = self.buf.find(b"\n") + 1 or len(self.buf)
        line, self.buf = self.buf[:cut], self.buf[cut:]
        self.pos += len(line)
        return line


class S3Prefix:
    def __init__(self, cfg: S3PrefixSource, is_finished: Callable[[str], bool]) -> None:
        self.cfg = cfg
        self.is_finished = is_finished
        self.mapping = Mapping(cfg.id_field, cfg.content_field, cfg.sha256_field)
        self.bucket = S3Store.connect(cfg.bucket, endpoint_url=cfg.endpoint_url)

    def _candidates(self) -> list[tuple[str, str, int]]:
        return [(key, etag, size) for key, etag, size in self.bucket.list_objects(self.cfg.prefix)
                if self._format(key) and not self.is_finished(f"{key}@{etag}")]

    def _format(self, key: str) -> str | None:
        if self.cfg.format:
            return self.cfg.format
        return {"jsonl": "jsonl", "ndjson": "jsonl", "csv": "csv"}.get(key.rsplit(".", 1)[-1])

    def fetch(self, cursor: str | None, limit: int) -> Page:
        """Cursor: ``{"key", "etag", "offset", "header"}`` of the object being read."""
        try:
            return self._fetch(json.loads(cursor) if cursor else {}, limit)
        except StorageError as exc:
            raise StorageError(f"{self.cfg.name}: {exc}", transient=exc.transient) from exc

    def _fetch(self, state: dict[str, Any], limit: int) -> Page:
        candidates = self._candidates()
        if not candidates:
            return Page([], json.dumps(state) if state else None, False)
        key, etag, size = next((c for c in candidates if (c[0], c[1]) == (state.get("key"), state.get("etag"))),
                               candidates[0])
        same = (key, etag) == (state.get("key"), state.get("etag"))
        offset, header = (state["offset"], state.get("header")) if same else (0, None)
        if self._format(key) == "csv" and header is None:
            first = b"".join(self.bucket.stream(key, etag, 0, 65535)).split(b"\n", 1)[0] + b"\n"
            header, offset = first.decode("utf-8", "replace"), max(offset, len(first))
        items, end = [], offset
        if offset < size:
            chunks = self.bucket.stream(key, etag, offset, chunk=CHUNK)
            try:
                items, end = parse_lines(_Stream(chunks, offset), limit, header.encode() if header else None,
                                         self.mapping, f"s3://{self.cfg.bucket}/{key} byte")
            finally:
                chunks.close()
        finished = end >= size
        cursor = json.dumps({"key": key, "etag": etag, "offset": end, "header": header})
        return Page(items, cursor, len(candidates) > 1 or not finished, [f"{key}@{etag}"] if finished else [])

    def finish(self, units: list[str]) -> None:
        pass  # the pull stage records finished units; S3 objects stay where the agency put them

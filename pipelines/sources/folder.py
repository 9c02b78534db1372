"""A drop folder: JSONL or CSV files that an agency system writes into a folder.

A file is read only once it is complete: names starting with ``.`` or ending in
``.tmp`` or ``.part`` are skipped (write, then rename), and so is a file changed
less than ``min_age`` seconds ago. Files are read in name order; once all of a
file's records are durable it is moved to the done folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pipelines.errors import StorageError
from pipelines.sources import Mapping, Page
from pipelines.sources.config import FolderSource
from pipelines.sources.lines import parse_lines

SKIP_SUFFIXES = (".tmp", ".part")


class DropFolder:
    def __init__(self, cfg: FolderSource) -> None:
        self.cfg = cfg
        self.done = cfg.done_path or cfg.path / "done"
        self.mapping = Mapping(cfg.id_field, cfg.content_field, cfg.sha256_field)

    def _ready(self) -> list[Path]:
        now = time.time()
        try:
            entries = sorted(self.cfg.path.iterdir())
        except OSError as exc:
            raise StorageError(f"{self.cfg.name}: cannot list {self.cfg.path}: {exc.strerror}", transient=True) from exc
        return [p for p in entries if p.is_file() and not p.name.startswith(".")
                and not p.name.endswith(SKIP_SUFFIXES) and p.suffix in (".jsonl", ".csv", ".ndjson")
                and now - p.stat().st_mtime >= self.cfg.min_age]

    def fetch(self, cursor: str | None, limit: int) -> Page:
        """Cursor: ``{"file": name, "offset": byte offset}`` of the file being read."""
        state = json.loads(cursor) if cursor else {}
        files = self._ready()
        if not files:
            return Page([], cursor, False)
        path = next((p for p in files if p.name == state.get("file")), files[0])
        offset = state.get("offset", 0) if path.name == state.get("file") else 0
        with path.open("rb") as fh:
            header = fh.readline() if path.suffix == ".csv" else None
            fh.seek(max(offset, fh.tell()))
            items, end = parse_lines(fh, limit, header, self.mapping, f"{path.name} byte")
        finished = end >= path.stat().st_size
        new_cursor = json.dumps({"file": path.name, "offset": end})
        return Page(items, new_cursor, len(files) > 1 or not finished, [path.name] if finished else [])

    def finish(self, units: list[str]) -> None:
        self.done.mkdir(parents=True, exist_ok=True)
        for name in units:
            src = self.cfg.path / name
            if src.exists():
                os.replace(src, self.done / name)

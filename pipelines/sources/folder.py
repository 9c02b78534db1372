"""A drop folder: JSONL or CSV files that an agency system writes into a folder.

A file is read only once it is complete: names starting with ``.`` or ending in
``.tmp`` or ``.part`` are skipped (write, then rename), and so is a file changed
less than ``min_age`` seconds ago. Only regular files directly in the folder are
read: symlinks, devices, FIFOs and folders are ignored, and a file is opened
without following links, so writing the folder never makes the worker read
elsewhere. Files are read in name order; once all of a file's records are
durable it is moved to the done folder, under a new name if that one is taken.

A file is known by its identity (device, inode, size, modification time), not
its name: a new file reusing a name (a nightly ``export.jsonl``) is read from
its first byte, never from an older file's offset.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import StorageError
from pipelines.sources import Mapping, Page
from pipelines.sources.config import FolderSource
from pipelines.sources.lines import parse_lines

SKIP_SUFFIXES = (".tmp", ".part")
SUFFIXES = (".jsonl", ".csv", ".ndjson")


@dataclass(frozen=True)
class _File:
    name: str
    identity: str  # device:inode:size:mtime_ns
    size: int

    @property
    def unit(self) -> str:
        return f"{self.name}@{self.identity}"


def _identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


class DropFolder:
    def __init__(self, cfg: FolderSource) -> None:
        self.cfg = cfg
        self.done = cfg.done_path or cfg.path / "done"
        self.mapping = Mapping(cfg.id_field, cfg.content_field, cfg.sha256_field)

    def _ready(self) -> list[_File]:
        now = time.time()
        try:
            with os.scandir(self.cfg.path) as entries:
                found = []
                for e in entries:
                    if e.name.startswith(".") or e.name.endswith(SKIP_SUFFIXES) or not e.name.endswith(SUFFIXES):
                        continue
                    st = e.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and now - st.st_mtime >= self.cfg.min_age:
                        found.append(_File(e.name, _identity(st), st.st_size))
        except OSError as exc:
            raise StorageError(f"{self.cfg.name}: cannot list {self.cfg.path}: {exc.strerror}", transient=True) from exc
        return sorted(found, key=lambda f: f.name)

    def _open(self, f: _File) -> Any:
        """Open ``f`` without following links, and only if it is still the file that was listed."""
        try:
            fd = os.open(self.cfg.path / f.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise StorageError(f"{self.cfg.name}: cannot open {f.name}: {exc.strerror}", transient=True) from exc
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"{self.cfg.name}: cannot stat {f.name}: {exc.strerror}", transient=True) from exc
        if not stat.S_ISREG(st.st_mode) or _identity(st) != f.identity:
            os.close(fd)
            raise StorageError(f"{self.cfg.name}: {f.name} changed while being read", transient=True)
        return os.fdopen(fd, "rb")

    def fetch(self, cursor: str | None, limit: int) -> Page:
        """Cursor: ``{"file": name, "identity": ..., "offset": byte offset}`` of the file being read."""
        state = json.loads(cursor) if cursor else {}
        files = self._ready()
        if not files:
            return Page([], cursor, False)
        current = next((f for f in files if (f.name, f.identity) == (state.get("file"), state.get("identity"))),
                       files[0])
        same = (current.name, current.identity) == (state.get("file"), state.get("identity"))
        offset = state.get("offset", 0) if same else 0
        with self._open(current) as fh:
            header = fh.readline() if current.name.endswith(".csv") else None
            fh.seek(max(offset, fh.tell()))
            items, end = parse_lines(fh, limit, header, self.mapping, f"{current.name} byte")
        finished = end >= current.size
        new_cursor = json.dumps({"file": current.name, "identity": current.identity, "offset": end})
        return Page(items, new_cursor, len(files) > 1 or not finished, [current.unit] if finished else [])

    def finish(self, units: list[str]) -> None:
        """Move each fully read file to the done folder, if it is still the same file; never overwrite there."""
        try:
            self._finish(units)
        except OSError as exc:  # e.g. done_path on another file system (no hard link across devices)
            raise StorageError(f"{self.cfg.name}: cannot move a read file to {self.done}: {exc.strerror}",
                               transient=exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES)) from exc

    def _finish(self, units: list[str]) -> None:
        self.done.mkdir(parents=True, exist_ok=True)
        for unit in units:
            name, _, identity = unit.rpartition("@")
            src = self.cfg.path / name
            try:
                st = os.stat(src, follow_symlinks=False)
            except FileNotFoundError:
                continue  # moved by an earlier, interrupted finish
            if _identity(st) == identity:
                self._move_aside(src)

    def _move_aside(self, src: Path) -> None:
        stem, suffix = os.path.splitext(src.name)
        for n in range(10_000):
            target = self.done / (src.name if n == 0 else f"{stem}.{n}{suffix}")
            try:
                os.link(src, target)  # fails if the name is taken: nothing in done/ is ever replaced
            except FileExistsError:
                continue
            os.unlink(src)
            return
        raise StorageError(f"{self.cfg.name}: no free name in {self.done} for {src.name}", transient=False)

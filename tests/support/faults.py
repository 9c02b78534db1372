"""An in-memory ObjectStore with fault hooks, for crash and ordering tests only.

A fault names a key pattern and a mode: ``"lost"`` fails the write before it
persists, ``"persisted"`` persists it and then fails (the reply was lost).
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading

from pipelines.errors import ConflictError, StorageError
from pipelines.storage import MAX_OBJECT_BYTES, too_large


class Crash(StorageError):
    """An injected failure."""


class FaultyStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes: list[tuple[str, bytes]] = []  # every persisted write, in order
        self.faults: list[tuple[str, str, int]] = []  # (pattern, mode, skip count)
        self.before_write = None  # optional callable(key), run before each write (to stage races)
        self.lock = threading.RLock()

    def describe(self) -> str:
        return "memory"

    def fail(self, pattern: str, mode: str, skip: int = 0) -> None:
        """Fail the (skip+1)-th write whose key matches ``pattern``, in ``mode``."""
        assert mode in ("lost", "persisted")
        self.faults.append((pattern, mode, skip))

    def _fault(self, key: str) -> str | None:
        for i, (pattern, mode, skip) in enumerate(self.faults):
            if fnmatch.fnmatch(key, pattern):
                if skip:
                    self.faults[i] = (pattern, mode, skip - 1)
                    return None
                del self.faults[i]
                return mode
        return None

    def copy(self) -> FaultyStore:
        other = FaultyStore()
        other.objects = dict(self.objects)
        return other

    def get(self, key: str, limit: int = MAX_OBJECT_BYTES) -> bytes | None:
        data = self.objects.get(key)
        if data is not None and len(data) > limit:
            raise too_large(key, "memory", len(data), limit)
        return data

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        data = self.objects.get(key)
        return None if data is None else data[start:start + length]

    def get_versioned(self, key: str, limit: int = MAX_OBJECT_BYTES) -> tuple[bytes, str] | None:
        data = self.get(key, limit)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def _write(self, key: str, data: bytes, check) -> None:
        if self.before_write is not None:
            self.before_write(key)
        with self.lock:
            mode = self._fault(key)
            if mode == "lost":
                raise Crash(f"injected: {key} not persisted", transient=True)
            check()
            self.objects[key] = data
            self.writes.append((key, data))
            if mode == "persisted":
                raise Crash(f"injected: {key} persisted, reply lost", transient=True)

    def put_immutable(self, key: str, data: bytes) -> None:
        def check() -> None:
            if key in self.objects and self.objects[key] != data:
                raise ConflictError(f"{key} exists with different content")

        self._write(key, data, check)

    def put_if_version(self, key: str, data: bytes, version: str | None) -> str:
        def check() -> None:
            current = self.get_versioned(key)
            if (current[1] if current else None) != version:
                raise ConflictError(f"{key} changed")

        self._write(key, data, check)
        return hashlib.sha256(data).hexdigest()
